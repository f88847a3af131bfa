"""The training loop, in one process.

One optimizer step = `train.grad_accum` micro-batches. Its task loss L_t is the
token-weighted mean over all their completion tokens; that is what FINCH reads.
With replay, every micro-batch also carries `round(replay_ratio * batch_size)`
context-free samples (and `batch_size` minus that many task rows), and the step
minimises  L_task + replay_weight * L_replay (+ replay_kl_weight * KL(base || model)
on the replay tokens), each a token-weighted mean.
Every step appends one line to history.jsonl as it happens, so a crash keeps
the curve up to that point.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from tqdm.auto import tqdm

from .. import models
from ..data import IGNORE_INDEX, Example, iterate_batches
from ..evaluate.scoring import mean_token_nll, sequence_nll
from ..losses import token_kl_to_reference, token_nll
from ..schedules import make_schedule
from . import controls


@dataclass
class TrainResult:
    model_dir: Path
    history_path: Path
    steps: int
    final_loss: float
    wall_seconds: float
    ema0: float | None  # FINCH's starting EMA (None for other schedules)
    trainable_parameters: int
    frozen_layers: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rows_per_batch(train_config) -> tuple[int, int]:
    """(task rows, replay rows) of every micro-batch."""
    replay = round(train_config.replay_ratio * train_config.batch_size) if train_config.replay_dir else 0
    return train_config.batch_size - replay, replay


def total_steps(train_config, num_examples: int) -> int:
    task_rows, _ = rows_per_batch(train_config)
    per_epoch = max(1, math.ceil(num_examples / task_rows) // train_config.grad_accum)
    planned = max(1, math.ceil(train_config.epochs * per_epoch))
    return min(planned, train_config.max_steps) if train_config.max_steps else planned


def endless_batches(examples: list[Example], batch_size: int, pad_token_id: int, seed: int) -> Iterator[tuple[int, dict]]:
    """(epoch, batch) forever, reshuffled every epoch (seed + epoch)."""
    epoch = 0
    while True:
        for batch in iterate_batches(examples, batch_size, pad_token_id, seed=seed + epoch):
            yield epoch, batch
        epoch += 1


def count_labels(batch: dict | None) -> int:
    return 0 if batch is None else int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def mean_loss(model, examples: list[Example], batch_size: int, pad_token_id: int, chunk_size: int,
              max_batches: int | None = None) -> float:
    """Token-weighted mean CE; FINCH's ema_0 when run on the training set before any step."""
    subset = examples if max_batches is None else examples[: max_batches * batch_size]
    nll, counts = sequence_nll(model, subset, batch_size, pad_token_id, chunk_size, desc="FINCH ema_0")
    return mean_token_nll(nll, counts)


def prepare_model(model, train_config):
    """Freeze, then wrap in LoRA; returns (model, frozen layer count)."""
    frozen = controls.freeze_bottom_layers(model, train_config.freeze_bottom) if train_config.freeze_bottom else 0
    if train_config.lora.enabled:
        model = controls.apply_lora(model, train_config.lora)
    return model, frozen


def train_in_process(model, tokenizer, examples: list[Example], config, out_dir: Path,
                     replay: list[Example] | None = None) -> TrainResult:
    tc = config.train
    seed_everything(tc.seed)
    pad = models.pad_token_id(tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    history_path = out_dir / "history.jsonl"
    steps = total_steps(tc, len(examples))
    task_rows, replay_rows = rows_per_batch(tc)
    if replay_rows and not replay:
        raise ValueError("train.replay_ratio > 0 but the replay dataset is empty")

    ema0 = None
    if tc.schedule == "finch":
        ema0 = mean_loss(model, examples, tc.batch_size, pad, tc.loss_chunk_size, tc.finch_init_batches)
    # The frozen base model, kept only when the loss compares whole distributions with it.
    reference = copy.deepcopy(model).eval().requires_grad_(False) if tc.replay_kl_weight > 0 else None
    model, frozen = prepare_model(model, tc)
    schedule = make_schedule(tc, steps, ema0)
    optimizer = torch.optim.AdamW(controls.param_groups(model, tc.llrd, tc.weight_decay), lr=tc.lr)
    trainable = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    model.train()
    task_stream = endless_batches(examples, task_rows, pad, tc.seed)
    replay_stream = endless_batches(replay, replay_rows, pad, tc.seed + 10_000) if replay_rows else None
    started = time.time()
    loss_value = math.nan
    with open(history_path, "w") as history, tqdm(total=steps, desc="train", unit="step") as bar:
        for step in range(1, steps + 1):
            step_start = time.time()
            micro = [(next(task_stream), next(replay_stream)[1] if replay_stream else None)
                     for _ in range(tc.grad_accum)]
            task_tokens = sum(count_labels(b) for (_, b), _ in micro)
            replay_tokens = sum(count_labels(r) for _, r in micro)
            task_sum = replay_sum = kl_sum = 0.0
            for (_, batch), replay_batch in micro:
                nll, _, _ = token_nll(model, batch["input_ids"], batch["labels"], batch["attention_mask"],
                                      tc.loss_chunk_size)
                # Dividing by the step's token count makes the accumulated gradient the token-weighted mean.
                objective = nll / task_tokens
                task_sum += nll.item()
                if replay_batch is not None:
                    replay_nll, _, _ = token_nll(model, replay_batch["input_ids"], replay_batch["labels"],
                                                 replay_batch["attention_mask"], tc.loss_chunk_size)
                    objective = objective + tc.replay_weight * replay_nll / replay_tokens
                    replay_sum += replay_nll.item()
                    if reference is not None:
                        kl, _ = token_kl_to_reference(model, reference, replay_batch["input_ids"],
                                                      replay_batch["labels"], replay_batch["attention_mask"],
                                                      tc.loss_chunk_size)
                        objective = objective + tc.replay_kl_weight * kl / replay_tokens
                        kl_sum += kl.item()
                objective.backward()
            loss_value = task_sum / task_tokens
            lr = schedule.next_lr(loss_value)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]  # FINCH scales every group by the same factor
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], tc.grad_clip or float("inf")
            ).item()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seen_tokens = sum(int(b["attention_mask"].sum()) + (int(r["attention_mask"].sum()) if r is not None else 0)
                              for (_, b), r in micro)
            record = {"step": step, "epoch": micro[-1][0][0], "loss": loss_value, "lr": lr,
                      "grad_norm": grad_norm, "tokens_per_second": seen_tokens / (time.time() - step_start)}
            if tc.schedule == "finch":
                record["ema_loss"] = schedule.ema_loss
            if replay_stream:
                record["replay_loss"] = replay_sum / replay_tokens
            if reference is not None:
                record["replay_kl"] = kl_sum / replay_tokens
            history.write(json.dumps(record) + "\n")
            history.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_second']:.0f}")
    wall = time.time() - started

    model_dir = out_dir / "model"
    controls.export_model(model).save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    return TrainResult(model_dir, history_path, steps, loss_value, wall, ema0, trainable, frozen)
