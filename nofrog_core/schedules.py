"""Learning-rate schedules: FINCH (loss-adaptive) and the constant / cosine baselines.

All schedules share one call, ``next_lr(loss)``, made once per optimizer step
after the backward pass and before ``optimizer.step()``. Baselines ignore the
loss; FINCH needs it. See ../shared/methods.md section 1 for FINCH.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup: step 1 of N gets 1/N of the LR; 1.0 once past warmup."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


@dataclass
class ConstantSchedule:
    lr: float
    warmup_steps: int = 0
    step: int = 0

    def next_lr(self, loss: float | None = None) -> float:
        self.step += 1
        return self.lr * warmup_factor(self.step, self.warmup_steps)


@dataclass
class CosineSchedule:
    """Linear warmup to `lr`, then cosine decay to `min_lr` at `total_steps`."""

    lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0
    step: int = 0

    def next_lr(self, loss: float | None = None) -> float:
        self.step += 1
        if self.step <= self.warmup_steps:
            return self.lr * warmup_factor(self.step, self.warmup_steps)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (self.step - self.warmup_steps) / decay_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


@dataclass
class FinchSchedule:
    """eta_t = min(base_lr / sqrt(ema_t), lr_max), ema_t = alpha * ema_{t-1} + (1 - alpha) * L_t.

    The EMA takes the current batch's loss before its step, so a batch with a
    high loss is taken with a smaller step. `ema_loss` starts at the base
    model's mean loss over the training set (ema_0).
    """

    base_lr: float
    lr_max: float
    ema_loss: float
    alpha: float = 0.9
    warmup_steps: int = 0  # optional, off by default as in the authors' code
    step: int = 0

    def next_lr(self, loss: float | None = None) -> float:
        if loss is None or not math.isfinite(loss):
            raise ValueError(f"FINCH needs the finite loss of the current batch, got {loss}")
        self.step += 1
        self.ema_loss = self.alpha * self.ema_loss + (1.0 - self.alpha) * loss
        lr = min(self.base_lr / math.sqrt(max(self.ema_loss, 1e-12)), self.lr_max)
        return lr * warmup_factor(self.step, self.warmup_steps)

    def state_dict(self) -> dict:
        return {"ema_loss": self.ema_loss, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.ema_loss, self.step = float(state["ema_loss"]), int(state["step"])


def make_schedule(train_config, total_steps: int, ema0: float | None = None):
    """The schedule named by `train.schedule`; FINCH needs ema_0 from the base model."""
    name = train_config.schedule
    if name == "constant":
        return ConstantSchedule(train_config.lr, train_config.warmup_steps)
    if name == "cosine":
        return CosineSchedule(train_config.lr, total_steps, train_config.warmup_steps)
    if ema0 is None:
        raise ValueError("train.schedule=finch needs ema_0, the base model's mean training loss")
    return FinchSchedule(train_config.lr, train_config.lr_max, ema0, train_config.ema_alpha,
                         train_config.warmup_steps)
