"""Training checkpoints: trainable weights, optimizer, schedule, step and RNG state.

Written every `train.checkpoint_every` optimizer steps, so a crashed or
preempted run resumes where it was instead of starting over. One directory per
checkpoint:

  trainable.safetensors  the parameters being trained (all of them, or only
                         the LoRA adapter; frozen layers come back from the base)
  extra.safetensors      other tensors the objective needs (the anchored snapshot)
  optimizer.pt           AdamW state (loaded with weights_only=True)
  state.json             step, schedule state, monitor state, RNG state
  tokenizer files

In-process runs keep them under OUT/checkpoints/; Ray runs hand them to
`ray.train.report`, which stores them under the run's storage path.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def write_checkpoint(directory: Path, model, optimizer, tokenizer, state: dict,
                     extra: dict[str, torch.Tensor] | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), directory / "trainable.safetensors")
    if extra:
        save_file({k: v.detach().cpu().contiguous() for k, v in extra.items()}, directory / "extra.safetensors")
    torch.save(optimizer.state_dict(), directory / "optimizer.pt")
    tokenizer.save_pretrained(directory)
    state = {**state, "rng": {"python": random.getstate()[1], "torch": torch.get_rng_state().tolist()}}
    (directory / STATE_FILE).write_text(json.dumps(state))


def read_checkpoint(directory: Path, model, optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    """Loads weights and optimizer in place; returns (state, extra tensors)."""
    weights = load_file(directory / "trainable.safetensors")
    missing = set(weights) - {name for name, p in model.named_parameters() if p.requires_grad}
    if missing:
        raise ValueError(f"checkpoint {directory} does not fit this model: unexpected {sorted(missing)[:3]}")
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    state = json.loads((directory / STATE_FILE).read_text())
    random.setstate((3, tuple(state["rng"]["python"]), None))
    torch.set_rng_state(torch.tensor(state["rng"]["torch"], dtype=torch.uint8))
    extra_path = directory / "extra.safetensors"
    return state, (load_file(extra_path) if extra_path.exists() else {})


def unreadable(directory: Path) -> str | None:
    """Why a checkpoint cannot be loaded, or None: its state parses and its tensor files are whole."""
    from safetensors import safe_open

    try:
        json.loads((directory / STATE_FILE).read_text())
        for path in directory.glob("*.safetensors"):
            with safe_open(path, "pt") as tensors:
                for name in tensors.keys():
                    tensors.get_slice(name)
        torch.load(directory / "optimizer.pt", weights_only=True, mmap=True)
    except Exception as err:  # json, safetensors and torch each raise their own types
        return f"{type(err).__name__}: {err}"
    return None


class LocalCheckpoints:
    """OUT/checkpoints/step-000123, the newest `keep` of them."""

    def __init__(self, root: Path, keep: int = 2):
        self.root, self.keep = Path(root), keep

    @contextmanager
    def latest(self) -> Iterator[Path | None]:
        """The newest readable checkpoint; a corrupt one (a disk error, a copy cut short) is skipped, and
        the run resumes from the one before it, saying so."""
        done = sorted(p for p in self.root.glob("step-*") if (p / STATE_FILE).exists()) if self.root.exists() else []
        for directory in reversed(done):
            problem = unreadable(directory)
            if problem is None:
                yield directory
                return
            log.warning("checkpoint %s is unreadable (%s); falling back to the one before it", directory, problem)
        yield None

    def save(self, step: int, write, metrics: dict, is_main: bool) -> None:
        final = self.root / f"step-{step:07d}"
        partial = self.root / f".partial-{step:07d}"
        shutil.rmtree(partial, ignore_errors=True)
        write(partial)
        shutil.rmtree(final, ignore_errors=True)  # a corrupt checkpoint of this step, skipped on resume
        partial.rename(final)  # a crash mid-write never leaves a checkpoint that looks complete
        for old in sorted(self.root.glob("step-*"))[: -self.keep]:
            shutil.rmtree(old)


class RayCheckpoints:
    """Checkpoints through Ray Train: every worker reports, the main worker attaches the files."""

    @contextmanager
    def latest(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
        else:
            with checkpoint.as_directory() as directory:
                yield Path(directory)

    def save(self, step: int, write, metrics: dict, is_main: bool) -> None:
        import ray.train

        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if is_main:
                write(Path(directory))
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"step-{step:07d}")
