"""Faults the tests inject into training from outside the library, as step hooks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nofrog_core.train.hooks import StepHook


@dataclass
class KillWorkerAt(StepHook):
    """Kills one worker's process once, as one step begins: how the fault-tolerance test loses a
    worker mid-run. The marker is written first, so the restarted worker goes on."""

    rank: int
    step: int
    marker: Path

    def before_step(self, step: int, rank: int) -> None:
        if rank == self.rank and step == self.step and not self.marker.exists():
            self.marker.write_text(f"worker {rank} killed at step {step}\n")
            os._exit(1)


@dataclass
class RaiseAt(StepHook):
    """Raises as one step begins: a crash of the in-process run that the test catches."""

    step: int

    def before_step(self, step: int, rank: int) -> None:
        if step == self.step:
            raise RuntimeError("simulated crash")


@dataclass
class InterruptAt(StepHook):
    """Ctrl-C as one step begins (KeyboardInterrupt, which no retry catches)."""

    step: int

    def before_step(self, step: int, rank: int) -> None:
        if step == self.step:
            raise KeyboardInterrupt
