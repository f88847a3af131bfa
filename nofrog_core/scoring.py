"""Log-likelihood scoring on an HF causal LM, batched and without full logits."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .data import Example, iterate_batches
from .losses import chunked_losses, token_nll
from .trunk import decoder


@torch.no_grad()
def sequence_nll(
    model, examples: list[Example], batch_size: int, pad_token_id: int, chunk_size: int = 1024,
    desc: str = "scoring",
) -> tuple[list[float], list[int]]:
    """Summed NLL of the labelled tokens of each example, and its token count, in input order."""
    model.eval()
    device = next(model.parameters()).device
    # Sorting by length keeps padding (wasted compute) small; results go back in input order.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids), reverse=True)
    ordered = [examples[i] for i in order]
    sums: list[float] = []
    for batch in tqdm(iterate_batches(ordered, batch_size, pad_token_id), desc=desc,
                      total=math.ceil(len(ordered) / batch_size), leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        _, per_sequence, _ = token_nll(model, batch["input_ids"], batch["labels"], batch["attention_mask"], chunk_size)
        sums.extend(per_sequence.tolist())
    nll = [0.0] * len(examples)
    for position, index in enumerate(order):
        nll[index] = sums[position]
    counts = [e.num_loss_tokens for e in examples]
    return nll, counts


def mean_token_nll(nll: list[float], counts: list[int]) -> float:
    return sum(nll) / max(1, sum(counts))


@torch.no_grad()
def shared_context_nll(model, groups: list[tuple[list[int], list[list[int]]]], batch_size: int, pad_token_id: int,
                       chunk_size: int = 1024, desc: str = "scoring") -> list[list[float]]:
    """Summed NLL of each continuation given its group's context, the context run once per group.

    A group (a multiple-choice question) is packed into one row: the context, then every
    continuation after it. Each continuation sees the context and itself only (a block mask),
    and its positions restart where the context ends, so it is scored exactly as if it
    followed the context alone; the first token of every continuation is predicted from the
    context's last position. With four choices this runs the context once instead of four times.
    """
    model.eval()
    device = next(model.parameters()).device
    backbone = decoder(model)
    order = sorted(range(len(groups)), key=lambda i: -_packed_length(groups[i]))
    out: list[list[float]] = [[] for _ in groups]
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        rows = [_pack(*groups[i]) for i in order[start:start + batch_size]]
        width = max(len(row["ids"]) for row in rows)
        input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        allowed = torch.zeros((len(rows), 1, width, width), dtype=torch.bool)
        for b, row in enumerate(rows):
            n = len(row["ids"])
            input_ids[b, :n] = torch.tensor(row["ids"])
            positions[b, :n] = torch.tensor(row["positions"])
            segment = torch.tensor(row["segments"])
            same_or_context = (segment[None, :] == 0) | (segment[None, :] == segment[:, None])
            allowed[b, 0, :n, :n] = torch.ones(n, n, dtype=torch.bool).tril() & same_or_context
            allowed[b, 0, range(n, width), range(n, width)] = True  # padding sees itself: no empty softmax row
        dtype = next(model.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        hidden = backbone(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                          position_ids=positions.to(device)).last_hidden_state
        rows_index = torch.cat([torch.full((len(row["sources"]),), b) for b, row in enumerate(rows)])
        sources = torch.cat([torch.tensor(row["sources"]) for row in rows])
        targets = torch.cat([torch.tensor(row["targets"]) for row in rows]).to(device)
        nll, _ = chunked_losses(model, hidden[rows_index.to(device), sources.to(device)], targets, chunk_size)
        nll = nll.tolist()
        offset = 0
        for b, row in enumerate(rows):
            group = order[start + b]
            for length in row["lengths"]:
                out[group].append(sum(nll[offset:offset + length]))
                offset += length
    return out


def _packed_length(group) -> int:
    context, continuations = group
    return len(context) + sum(len(c) for c in continuations)


def _pack(context: list[int], continuations: list[list[int]]) -> dict:
    """One row: ids, position ids, segment of each token (0 = context, j = continuation j), and for each
    scored token the row position whose hidden state predicts it."""
    ids, positions, segments = list(context), list(range(len(context))), [0] * len(context)
    sources, targets, lengths = [], [], []
    for j, continuation in enumerate(continuations, start=1):
        first = len(ids)
        ids += continuation
        positions += range(len(context), len(context) + len(continuation))
        segments += [j] * len(continuation)
        sources += [len(context) - 1] + list(range(first, first + len(continuation) - 1))
        targets += continuation
        lengths.append(len(continuation))
    return {"ids": ids, "positions": positions, "segments": segments, "sources": sources, "targets": targets,
            "lengths": lengths}
