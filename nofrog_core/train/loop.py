"""The training loop, in one process.

One optimizer step = `train.grad_accum` micro-batches; its loss L_t is the
token-weighted mean over all their completion tokens, which is what FINCH
reads. Every step appends one line to history.jsonl as it happens, so a crash
keeps the curve up to that point.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import models
from ..data import IGNORE_INDEX, Example, iterate_batches
from ..evaluate.scoring import mean_token_nll, sequence_nll
from ..losses import token_nll
from ..schedules import make_schedule


@dataclass
class TrainResult:
    model_dir: Path
    history_path: Path
    steps: int
    final_loss: float
    wall_seconds: float
    ema0: float | None  # FINCH's starting EMA (None for other schedules)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def steps_per_epoch(num_examples: int, batch_size: int, grad_accum: int) -> int:
    return max(1, math.ceil(num_examples / batch_size) // grad_accum)


def total_steps(train_config, num_examples: int) -> int:
    per_epoch = steps_per_epoch(num_examples, train_config.batch_size, train_config.grad_accum)
    planned = max(1, math.ceil(train_config.epochs * per_epoch))
    return min(planned, train_config.max_steps) if train_config.max_steps else planned


def micro_batches(examples: list[Example], train_config, pad_token_id: int):
    """Endless stream of micro-batches, reshuffled every epoch (seed + epoch)."""
    epoch = 0
    while True:
        yield from ((epoch, b) for b in iterate_batches(
            examples, train_config.batch_size, pad_token_id, seed=train_config.seed + epoch))
        epoch += 1


def mean_loss(model, examples: list[Example], batch_size: int, pad_token_id: int, chunk_size: int,
              max_batches: int | None = None) -> float:
    """Token-weighted mean CE; FINCH's ema_0 when run on the training set before any step."""
    subset = examples if max_batches is None else examples[: max_batches * batch_size]
    nll, counts = sequence_nll(model, subset, batch_size, pad_token_id, chunk_size, desc="FINCH ema_0")
    return mean_token_nll(nll, counts)


def train_in_process(model, tokenizer, examples: list[Example], config, out_dir: Path) -> TrainResult:
    tc = config.train
    seed_everything(tc.seed)
    pad = models.pad_token_id(tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    history_path = out_dir / "history.jsonl"
    steps = total_steps(tc, len(examples))

    ema0 = None
    if tc.schedule == "finch":
        ema0 = mean_loss(model, examples, tc.batch_size, pad, tc.loss_chunk_size, tc.finch_init_batches)
    schedule = make_schedule(tc, steps, ema0)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=tc.lr, weight_decay=tc.weight_decay
    )
    model.train()
    stream = micro_batches(examples, tc, pad)
    started = time.time()
    loss_value = math.nan
    with open(history_path, "w") as history, tqdm(total=steps, desc="train", unit="step") as bar:
        for step in range(1, steps + 1):
            step_start = time.time()
            micro = [next(stream) for _ in range(tc.grad_accum)]
            num_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for _, b in micro)
            loss_sum = 0.0
            for _, batch in micro:
                nll_sum, _, _ = token_nll(model, batch["input_ids"], batch["labels"], batch["attention_mask"],
                                          tc.loss_chunk_size)
                # Dividing by the step's token count makes the accumulated gradient the token-weighted mean.
                (nll_sum / num_tokens).backward()
                loss_sum += nll_sum.item()
            loss_value = loss_sum / num_tokens
            lr = schedule.next_lr(loss_value)
            for group in optimizer.param_groups:
                group["lr"] = lr
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), tc.grad_clip if tc.grad_clip else float("inf")
            ).item()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seen_tokens = sum(int(b["attention_mask"].sum()) for _, b in micro)
            record = {"step": step, "epoch": micro[-1][0], "loss": loss_value, "lr": lr,
                      "grad_norm": grad_norm, "tokens_per_second": seen_tokens / (time.time() - step_start)}
            if tc.schedule == "finch":
                record["ema_loss"] = schedule.ema_loss
            history.write(json.dumps(record) + "\n")
            history.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_second']:.0f}")
    wall = time.time() - started

    model_dir = out_dir / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    return TrainResult(model_dir, history_path, steps, loss_value, wall, ema0)
