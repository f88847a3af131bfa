"""Anchored Learning's task term: KL(anchor || student) on the completion tokens, no CE.

The anchor mixes the student's periodic snapshot with the stage-1 SFT reference
(docs/methods.md section 3); the loop refreshes the snapshot every K epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...losses import anchor_logprobs
from . import LossTerm, register_term


@register_term
@dataclass(frozen=True)
class AnchoredKl(LossTerm):
    name = "anchored_kl"
    rows = "task"
    frozen = ("snapshot", "reference")
    sets_target = True

    alpha: float = 0.5
    temperature: float = 1.0
    interpolation: str = "logit"

    def target(self, rows, frozen):
        return anchor_logprobs(frozen["snapshot"], frozen["reference"], rows.input_ids, rows.attention_mask,
                               rows.labels, self.alpha, self.temperature, self.interpolation,
                               rows.trunk_for("snapshot"), rows.trunk_for("reference"))

    def __call__(self, nll, kl):
        return kl.sum()
