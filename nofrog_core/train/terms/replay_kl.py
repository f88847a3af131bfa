"""Replay KL: KL(base || model) over the whole vocabulary at every replay token.

The full-distribution version of the replay NLL: it compares whole next-token
distributions instead of the one sampled token, a lower-variance pull toward the base.
"""

from __future__ import annotations

from ...losses import frozen_logprobs
from . import LossTerm, register_term


@register_term
class ReplayKl(LossTerm):
    name = "replay_kl"
    rows = "replay"
    frozen = ("base",)
    sets_target = True

    def target(self, rows, frozen):
        return frozen_logprobs(frozen["base"], rows.input_ids, rows.attention_mask, rows.labels,
                               trunk=rows.trunk_for("base"))

    def __call__(self, nll, kl):
        return kl.sum()
