"""Task NLL: the cross-entropy of the completion tokens of the task rows (plain SFT)."""

from __future__ import annotations

from . import LossTerm, register_term


@register_term
class TaskNll(LossTerm):
    name = "task_nll"
    rows = "task"

    def __call__(self, nll, kl):
        return nll.sum()
