"""What one training step minimises, as an nn.Module so DDP can wrap it.

A micro-batch holds task rows and, with replay, replay rows, each collated apart (short
task rows are not padded to the length of a replay sample). Each group of rows runs one
forward pass and the output projection once (chunked, never a full logits tensor), and
every registered term of that group reads the same per-token NLL and KL (terms/).

Everything comes back as sums over tokens, keyed by term name, so the caller can
weight by the token counts of the whole step across all workers. Frozen models are
kept in a plain dict, outside the module's parameters: DDP must not see them.
"""

from __future__ import annotations

import weakref

import torch

from ..losses import chunked_losses, labelled_hidden
from ..trunk import same_trunk, trunk_depth, trunk_states
from .terms import Rows, WeightedTerm


class TrainingObjective(torch.nn.Module):
    def __init__(self, model, chunk_size: int, terms: list[WeightedTerm], autocast_dtype: torch.dtype | None = None,
                 keep_logits_up_to: int = 0, share_trunk: bool = True):
        super().__init__()
        self.model = model
        self.keep_logits_up_to = keep_logits_up_to  # chunks this small keep their logits for the backward pass
        self.autocast_dtype = autocast_dtype  # bf16: matmuls in bfloat16, weights and losses stay fp32
        self.chunk_size = chunk_size
        self.terms = terms
        self.frozen: dict[str, torch.nn.Module] = {}
        self.share_trunk = share_trunk
        self._trunk_depth: int | None = None  # set at the first step: the trainable set is final by then
        self._sharing = weakref.WeakKeyDictionary()  # frozen model -> its bottom checked to be the model's
        for group in ("task", "replay"):
            with_target = [w.term.name for w in terms if w.term.rows == group and w.term.sets_target]
            if len(with_target) > 1:
                raise ValueError(f"loss terms {with_target} each set a KL target on the {group} rows; at most one may")

    def weighted(self, values: dict, group: str):
        """The weighted sum of one row group's optimised terms (weight > 0), from forward()'s sums."""
        return sum(w.weight * values[w.term.name] for w in self.terms if w.term.rows == group and w.weight > 0)

    def frozen_needed(self) -> set[str]:
        return {name for w in self.terms for name in w.term.frozen}

    def forward(self, task: dict[str, torch.Tensor], replay: dict[str, torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
        """`task` and `replay`: collated batches (input_ids, labels, attention_mask) of each kind of row,
        padded apart: short task rows never pad to the length of a replay sample."""
        if self.autocast_dtype is None:
            return self._terms(task, replay)
        with torch.autocast(task["input_ids"].device.type, dtype=self.autocast_dtype):
            return self._terms(task, replay)

    def _terms(self, task, replay) -> dict[str, torch.Tensor]:
        sums = {}
        for group, batch in (("task", task), ("replay", replay)):
            terms = [w.term for w in self.terms if w.term.rows == group]
            if not terms or batch is None:
                continue
            rows = self._rows(batch)
            hidden, targets, _ = labelled_hidden(self.model, rows.input_ids, rows.attention_mask, rows.labels,
                                                 rows.trunk)
            target, temperature = None, 1.0
            for term in terms:
                if term.sets_target:
                    target, temperature = term.target(rows, self.frozen), term.temperature
            nll, kl = chunked_losses(self.model, hidden, targets, self.chunk_size, target, temperature,
                                     self.keep_logits_up_to)
            sums.update({term.name: term(nll, kl) for term in terms})
        return sums

    def _rows(self, batch) -> Rows:
        """The group's rows, with the frozen trunk computed once for the model and every frozen model
        whose bottom is the model's (the replay KL's base: its 14 frozen layers of Gemma's 18)."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if self._trunk_depth is None:
            self._trunk_depth = trunk_depth(self.model) if self.share_trunk else 0
        if not self._trunk_depth:
            return Rows(ids, mask, batch["labels"])
        shared = frozenset(name for name, frozen in self.frozen.items() if self._shares(frozen))
        return Rows(ids, mask, batch["labels"], trunk_states(self.model, ids, mask, self._trunk_depth), shared)

    def _shares(self, frozen) -> bool:
        # Checked once per frozen model: the snapshot is replaced every K epochs, and is checked anew.
        if frozen not in self._sharing:
            self._sharing[frozen] = same_trunk(self.model, frozen, self._trunk_depth)
        return self._sharing[frozen]
