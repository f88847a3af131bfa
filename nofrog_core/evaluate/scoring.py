"""Log-likelihood scoring on an HF causal LM, batched and without full logits."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..data import Example, iterate_batches
from ..losses import token_nll


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


def standard_error(values: list[float]) -> float:
    """Standard error of the mean (sample std / sqrt(n)), as lm-eval reports it."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
