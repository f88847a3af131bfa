"""Replay NLL: the cross-entropy of context-free samples of the base model, on all their tokens.

In expectation over the samples this is KL(base || model) plus a constant (docs/methods.md section 2).
"""

from __future__ import annotations

from . import LossTerm, register_term


@register_term
class ReplayNll(LossTerm):
    name = "replay_nll"
    rows = "replay"

    def __call__(self, nll, kl):
        return nll.sum()
