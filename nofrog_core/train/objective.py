"""What one training step minimises, as an nn.Module so DDP can wrap it.

A micro-batch holds `task_rows` task rows first, then replay rows. One forward
pass of the student over the whole batch gives every term:

- task term: completion-token cross-entropy (SFT), or for Anchored Learning
  the forward KL to the moving anchor (methods.md section 3), no CE;
- replay NLL on all tokens of the context-free samples;
- optional KL(base || student) on the replay tokens.

Everything comes back as sums over tokens, so the caller can weight by the
token counts of the whole step across all workers. Frozen models (the base
for replay KL, the snapshot and SFT reference for Anchored Learning) are kept
outside the module's parameters: DDP must not see them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import anchor_logprobs, chunked_losses, frozen_logprobs, labelled_hidden


@dataclass
class FrozenModels:
    base: torch.nn.Module | None = None  # replay KL target
    snapshot: torch.nn.Module | None = None  # Anchored Learning: the student every K epochs
    reference: torch.nn.Module | None = None  # Anchored Learning: the stage-1 SFT model


@dataclass
class AnchorSettings:
    alpha: float = 0.5
    temperature: float = 1.0
    interpolation: str = "logit"


class TrainingObjective(torch.nn.Module):
    def __init__(self, model, chunk_size: int, anchored: AnchorSettings | None = None):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.anchored = anchored
        self.frozen = FrozenModels()

    def forward(self, input_ids, labels, attention_mask, task_rows: int) -> dict[str, torch.Tensor]:
        hidden, targets, rows = labelled_hidden(self.model, input_ids, attention_mask, labels)
        on_task = int((rows < task_rows).sum())  # row-major order: task positions come first
        terms = self._task_terms(hidden[:on_task], targets[:on_task], input_ids[:task_rows],
                                 attention_mask[:task_rows], labels[:task_rows])
        if task_rows < input_ids.shape[0]:
            terms.update(self._replay_terms(hidden[on_task:], targets[on_task:], input_ids[task_rows:],
                                            attention_mask[task_rows:], labels[task_rows:]))
        return terms

    def _task_terms(self, hidden, targets, input_ids, attention_mask, labels) -> dict[str, torch.Tensor]:
        if self.anchored is None:
            nll, _ = chunked_losses(self.model, hidden, targets, self.chunk_size)
            return {"task": nll.sum(), "task_nll": nll.detach().sum()}
        a = self.anchored
        anchor = anchor_logprobs(self.frozen.snapshot, self.frozen.reference, input_ids, attention_mask, labels,
                                 a.alpha, a.temperature, a.interpolation)
        nll, kl = chunked_losses(self.model, hidden, targets, self.chunk_size, anchor, a.temperature)
        return {"task": kl.sum(), "task_nll": nll.detach().sum()}

    def _replay_terms(self, hidden, targets, input_ids, attention_mask, labels) -> dict[str, torch.Tensor]:
        base = self.frozen.base
        target = frozen_logprobs(base, input_ids, attention_mask, labels) if base is not None else None
        nll, kl = chunked_losses(self.model, hidden, targets, self.chunk_size, target)
        return {"replay_nll": nll.sum(), "replay_kl": kl.sum()}
