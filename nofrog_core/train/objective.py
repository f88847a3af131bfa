"""What one training step minimises, as an nn.Module so DDP can wrap it.

A micro-batch holds `task_rows` task rows first, then replay rows. One forward pass
of the model over the whole batch gives the hidden states; then each group of rows
runs the output projection once (chunked, never a full logits tensor) and every
registered term of that group reads the same per-token NLL and KL (terms/).

Everything comes back as sums over tokens, keyed by term name, so the caller can
weight by the token counts of the whole step across all workers. Frozen models are
kept in a plain dict, outside the module's parameters: DDP must not see them.
"""

from __future__ import annotations

import torch

from ..losses import chunked_losses, labelled_hidden
from .terms import Rows, WeightedTerm


class TrainingObjective(torch.nn.Module):
    def __init__(self, model, chunk_size: int, terms: list[WeightedTerm]):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.terms = terms
        self.frozen: dict[str, torch.nn.Module] = {}
        for group in ("task", "replay"):
            with_target = [w.term.name for w in terms if w.term.rows == group and w.term.sets_target]
            if len(with_target) > 1:
                raise ValueError(f"loss terms {with_target} each set a KL target on the {group} rows; at most one may")

    def frozen_needed(self) -> set[str]:
        return {name for w in self.terms for name in w.term.frozen}

    def forward(self, input_ids, labels, attention_mask, task_rows: int) -> dict[str, torch.Tensor]:
        hidden, targets, rows = labelled_hidden(self.model, input_ids, attention_mask, labels)
        on_task = int((rows < task_rows).sum())  # row-major order: task positions come first
        groups = {"task": (slice(0, task_rows), slice(0, on_task)),
                  "replay": (slice(task_rows, None), slice(on_task, None))}
        sums = {}
        for group, (batch_rows, positions) in groups.items():
            terms = [w.term for w in self.terms if w.term.rows == group]
            if not terms or (group == "replay" and task_rows == input_ids.shape[0]):
                continue
            selected = Rows(input_ids[batch_rows], attention_mask[batch_rows], labels[batch_rows])
            target, temperature = None, 1.0
            for term in terms:
                if term.sets_target:
                    target, temperature = term.target(selected, self.frozen), term.temperature
            nll, kl = chunked_losses(self.model, hidden[positions], targets[positions], self.chunk_size, target,
                                     temperature)
            sums.update({term.name: term(nll, kl) for term in terms})
        return sums
