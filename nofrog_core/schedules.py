"""Learning-rate schedules: FINCH (loss-adaptive) and the constant / cosine baselines.

Every schedule has one protocol:

- ``next_lr(loss)``, called once per optimizer step after the backward pass and before
  ``optimizer.step()``; baselines ignore the loss, FINCH needs it;
- ``state_dict()`` / ``load_state_dict()``, what a checkpoint keeps;
- ``logged()``, what the history records beside the LR (FINCH: its EMA loss).

Schedules are registered by name; `build_schedule` makes one from plain values. A
schedule with ``needs_initial_loss`` starts from the base model's mean training loss.
See docs/methods.md section 1 for FINCH.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from .registries import Registry

SCHEDULES: Registry = Registry("LR schedule")


def register_schedule(name: str):
    def register(cls):
        SCHEDULES[name] = cls
        return cls

    return register


class Schedule:
    needs_initial_loss: ClassVar[bool] = False
    step: int

    def next_lr(self, loss: float | None = None) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

    def logged(self) -> dict:
        return {}


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup: step 1 of N gets 1/N of the LR; 1.0 once past warmup."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


@register_schedule("constant")
@dataclass
class ConstantSchedule(Schedule):
    lr: float
    warmup_steps: int = 0
    step: int = 0

    def next_lr(self, loss: float | None = None) -> float:
        self.step += 1
        return self.lr * warmup_factor(self.step, self.warmup_steps)


@register_schedule("cosine")
@dataclass
class CosineSchedule(Schedule):
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


@register_schedule("finch")
@dataclass
class FinchSchedule(Schedule):
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
    needs_initial_loss: ClassVar[bool] = True

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

    def logged(self) -> dict:
        return {"ema_loss": self.ema_loss}


def build_schedule(name: str, **values) -> Schedule:
    """The schedule registered as `name`, from the values among `values` that it takes
    (total_steps, warmup_steps, its LR settings, and ema_loss = ema_0 for FINCH)."""
    if name not in SCHEDULES:
        raise KeyError(f"unknown schedule {name!r}; registered: {sorted(SCHEDULES)}")
    cls = SCHEDULES[name]
    if cls.needs_initial_loss and values.get("ema_loss") is None:
        raise ValueError(f"schedule {name} needs the base model's mean training loss (ema_loss)")
    accepted = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "step"}
    return cls(**{k: v for k, v in values.items() if k in accepted})
