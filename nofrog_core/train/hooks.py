"""Step hooks: what the training loop does around each optimizer step, besides the step.

A hook sees the step number before it runs and the step's record after it. The loop
installs its own (history file, per-worker log, Anchored Learning's snapshots); a
caller adds more through `run_training(..., hooks=[...])`, which is how the tests
inject faults without any test code in the library. Under Ray Train the hooks are
pickled into every worker.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..history import read_history


class StepHook:
    def before_step(self, step: int, rank: int) -> None:
        """Called on every worker as an optimizer step begins."""

    def after_step(self, step: int, record: dict) -> None:
        """Called on every worker with the step's record (loss, LR, terms, monitor scores)."""

    def close(self) -> None:
        """Called once when the phase ends."""


class HistoryFile(StepHook):
    """The main worker's history: one JSON line per step, flushed as it happens, so a crash keeps
    the curve up to that point; a resumed run keeps only the lines up to its checkpoint's step."""

    def __init__(self, path: Path, start_step: int):
        kept = [r for r in read_history(path) if r["step"] <= start_step] if start_step and path.exists() else []
        self.handle = open(path, "w")
        self.handle.writelines(json.dumps(record) + "\n" for record in kept)

    def after_step(self, step: int, record: dict) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class WorkerLog(StepHook):
    """With several workers, each keeps its own view of every step in OUT/workers/: the LR it set
    and the loss it read, to check that all workers agree."""

    def __init__(self, path: Path):
        path.parent.mkdir(exist_ok=True)
        self.handle = open(path, "a")

    def after_step(self, step: int, record: dict) -> None:
        self.handle.write(json.dumps({"step": step, "lr": record["lr"], "loss": record["loss"],
                                      "ema_loss": record.get("ema_loss")}) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class AnchorSnapshots(StepHook):
    """Anchored Learning: the frozen snapshot takes the student's weights every `every` steps."""

    def __init__(self, model, frozen: dict, every: int, last_step: int):
        self.model, self.frozen, self.every, self.last_step = model, frozen, every, last_step

    def after_step(self, step: int, record: dict) -> None:
        if step % self.every == 0 and step < self.last_step:
            self.frozen["snapshot"].load_state_dict(self.model.state_dict())
