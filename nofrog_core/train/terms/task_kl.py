"""Task KL: KL(base || model) over the whole vocabulary at every completion token of the task rows.

The replay KL pulls toward the base where the base's own samples are; this term pulls toward it on
the new task's tokens, where fine-tuning moves the model most: forgetting tracks the KL to the base
measured on the new task's distribution (Shenfeld et al., "RL's Razor", arXiv 2509.04259). It is
ASFT's anchor (arXiv 2509.23753: `F.kl_div(log_softmax(student), softmax(base))` per response token,
weight 0.1 in the authors' code) and the "sft+kl" baseline of the same code.
"""

from __future__ import annotations

from . import register_term
from .replay_kl import ReplayKl


@register_term
class TaskKl(ReplayKl):
    """The replay KL's target and sum, on the task rows."""

    name = "task_kl"
    rows = "task"
