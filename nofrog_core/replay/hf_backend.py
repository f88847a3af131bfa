"""Replay generation with HF transformers `generate` (batched, KV cache)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class RawSample:
    token_ids: list[int]  # generated tokens, up to and including EOS when the model stopped
    finish_reason: str  # "stop" (EOS) or "length" (max_new_tokens)


def batch_seed(run_seed: int, batch_index: int) -> int:
    # Each batch gets its own seed derived from the run seed, so batch k is the same
    # draw whether or not earlier batches ran in this process.
    return (run_seed * 1_000_003 + batch_index) % (2**63)


def batch_count(count: int, batch_size: int) -> int:
    return math.ceil(count / batch_size)


@torch.no_grad()
def generate(model, tokenizer, bos_token_id: int, count: int, params, seed: int,
             batches: range | None = None) -> list[RawSample]:
    """`count` samples from [BOS]; samples in a batch are independent draws of one RNG stream.
    `batches`: generate only these batch indices of the `count` samples (one engine's shard)."""
    model.eval()
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    sampling = params.temperature > 0
    samples: list[RawSample] = []
    if batches is None:
        batches = range(batch_count(count, params.batch_size))
    for index in tqdm(batches, desc="replay (hf)", unit="batch"):
        size = min(params.batch_size, count - index * params.batch_size)
        torch.manual_seed(batch_seed(seed, index))
        prompt = torch.full((size, 1), bos_token_id, dtype=torch.long)
        output = model.generate(
            input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=sampling,
            temperature=params.temperature if sampling else None, top_p=params.top_p if sampling else None,
            top_k=(params.top_k or 0) if sampling else None, max_new_tokens=params.max_new_tokens,
            min_new_tokens=params.min_new_tokens, pad_token_id=pad, eos_token_id=eos,
        )
        for row in output[:, 1:].tolist():
            if eos in row:
                samples.append(RawSample(row[: row.index(eos) + 1], "stop"))
            else:
                samples.append(RawSample(row, "length"))
    return samples
