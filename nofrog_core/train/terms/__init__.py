"""Loss terms: what one training step can minimise, each registered by name.

A term reads the per-token values of one forward pass of the model over one group of
rows of the batch (``task`` rows or ``replay`` rows): the NLL of the labels and, when a
term asks for a target distribution, KL(target || model). It returns a sum over tokens,
so the loop can weight it by the token count of the whole step on all workers.

A term declares the frozen models it reads (``frozen``): the loop builds each one once
per phase and keeps it outside the trained module, where DDP does not see it.

Adding a term is one file in this package with ``@register_term``, plus its import
below. Which terms run, and with what weight, is the fine-tune recipe's choice
(`train/recipe.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...losses import TargetLogprobs
from ...registries import Registry
from ...trunk import Trunk

# The frozen models a term may ask for:
#   base       the model as the phase starts (the replay KL target)
#   snapshot   Anchored Learning's student, copied every K epochs
#   reference  Anchored Learning's stage-1 SFT model
FROZEN_MODELS = ("base", "snapshot", "reference")


@dataclass(frozen=True)
class Rows:
    """The rows of a batch that one group of terms reads, and, where the bottom of the model does not
    train, the hidden states entering its first trained layer (`trunk`) with the frozen models whose
    bottom was checked to be the same (`shared`): those run only their top layers from it."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    trunk: Trunk | None = None
    shared: frozenset[str] = frozenset()

    def trunk_for(self, frozen_name: str) -> Trunk | None:
        return self.trunk if frozen_name in self.shared else None


class LossTerm:
    name: ClassVar[str]
    rows: ClassVar[str]  # "task" or "replay"
    frozen: ClassVar[tuple[str, ...]] = ()
    sets_target: ClassVar[bool] = False  # True: the group's KL is computed against this term's target()
    temperature: float = 1.0  # of the KL, when the term sets a target

    def target(self, rows: Rows, frozen: dict[str, torch.nn.Module]) -> TargetLogprobs:
        """The distribution the KL compares the model with on these rows (terms with sets_target)."""
        raise NotImplementedError

    def __call__(self, nll: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        """The term's sum over the group's labelled tokens, from their per-token NLL and KL."""
        raise NotImplementedError


TERMS: Registry = Registry("loss term")


def register_term(cls: type[LossTerm]) -> type[LossTerm]:
    if cls.rows not in ("task", "replay"):
        raise ValueError(f"loss term {cls.name}: rows must be 'task' or 'replay', got {cls.rows!r}")
    unknown = set(cls.frozen) - set(FROZEN_MODELS)
    if unknown:
        raise ValueError(f"loss term {cls.name}: unknown frozen models {sorted(unknown)}; known: {FROZEN_MODELS}")
    TERMS[cls.name] = cls
    return cls


def build_term(name: str, **settings) -> LossTerm:
    if name not in TERMS:
        raise KeyError(f"unknown loss term {name!r}; registered: {sorted(TERMS)}")
    return TERMS[name](**settings)


@dataclass(frozen=True)
class WeightedTerm:
    """A term and its weight in the loss; weight 0 = computed and logged, never optimised."""

    term: LossTerm
    weight: float


# The registrations: one import per term file.
from . import anchored_kl, replay_kl, replay_nll, task_dft, task_kl, task_nll  # noqa: E402,F401
