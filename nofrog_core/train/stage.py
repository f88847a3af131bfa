"""The fine-tuning stage: base model + task data in, a plain HF model directory out.

Writes into OUT: model/ (safetensors), history.jsonl (history_reference.jsonl
too for Anchored Learning), metadata.json, loss_lr.png, and checkpoints
(OUT/checkpoints/ in process, OUT/ray/ under Ray Train). The stage can be
rerun alone with `nofrog train`; rerun on the same OUT after a crash, it
resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from .. import models
from ..outputs import check_writable_dir, write_json
from ..plots import plot_loss_and_lr
from .checkpoints import LocalCheckpoints
from .distributed import in_process_world
from .inputs import check_controls, load_training_data, load_worker_inputs
from .loop import SUMMARY_FILE, Trainer

log = logging.getLogger(__name__)


RUN_CONFIG_FILE = "run_config.json"  # the config a run started with; a resumed run must match it
RUN_MARKER = "nofrog_training_run"  # in that file: what tells nofrog's own runs from a user's files


def refuse_finished_run(out_dir: Path) -> None:
    """Never train over an earlier run's results (metadata.json is the last file a run writes)."""
    if (out_dir / "metadata.json").exists():
        raise FileExistsError(f"{out_dir} already holds a training run; choose another --out")


def has_progress(out_dir: Path) -> bool:
    """Whether an unfinished run got anywhere: a checkpoint, or the exported model itself."""
    return (out_dir / "model").exists() or any(
        any(d.iterdir()) for d in (out_dir / "checkpoints", out_dir / "ray") if d.is_dir())


def exported_summary(out_dir: Path) -> dict | None:
    """The training summary of a run that exported its model and stopped before its metadata.json
    (the loop writes the summary, then renames the finished model into place)."""
    if (out_dir / "model").is_dir() and (out_dir / SUMMARY_FILE).is_file():
        return json.loads((out_dir / SUMMARY_FILE).read_text())
    return None


def finished_training(config, out_dir: Path) -> dict | None:
    """The result of a finished run of this same config in `out_dir` (for a resumed pipeline), else None."""
    out_dir = Path(out_dir)
    if not (out_dir / "metadata.json").exists() or started_config(out_dir / RUN_CONFIG_FILE) != config.model_dump(
            mode="json"):
        return None
    meta = json.loads((out_dir / "metadata.json").read_text())
    return training_result(out_dir, meta["training"])


def training_result(out_dir: Path, summary: dict) -> dict:
    return {"model_dir": str(out_dir / "model"), "history": str(out_dir / "history.jsonl"),
            "metadata": str(out_dir / "metadata.json"), "loss_lr_png": str(out_dir / "loss_lr.png"),
            "final_loss": summary["final_loss"], "steps": summary["steps"]}


def claim_output_dir(out_dir: Path, config) -> None:
    """A crashed run's directory is fine (training resumes from its checkpoints), but only with
    the config it started with. A directory nofrog did not write is never trained into, and a run
    that died before its first checkpoint left nothing worth protecting: it is reused."""
    wanted = config.model_dump(mode="json")
    started = out_dir / RUN_CONFIG_FILE
    ours = started_config(started)
    if ours is None and out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty and holds no nofrog training run (no {RUN_CONFIG_FILE} that "
                              "nofrog wrote); choose another --out")
    if ours is not None and ours != wanted:
        if has_progress(out_dir):
            raise FileExistsError(f"{out_dir} holds an unfinished run with another config ({started}); "
                                  "rerun with that config to resume it, or choose another --out")
        log.warning("%s holds a run that stopped before its first checkpoint; starting over in it", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started.write_text(json.dumps({RUN_MARKER: 1, "config": wanted}, indent=2) + "\n")


def started_config(path: Path) -> dict | None:
    """The config a nofrog training run started with, or None where `path` is not a file nofrog
    wrote (a user's own run_config.json is never taken for a run to resume or start over in)."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return content.get("config") if isinstance(content, dict) and content.get(RUN_MARKER) == 1 else None


def train_in_process(config, out_dir: Path, hooks=()) -> tuple[dict, object]:
    if config.compute.torch_threads:
        torch.set_num_threads(config.compute.torch_threads)
    inputs, data = load_worker_inputs(config)
    checkpoints = LocalCheckpoints(out_dir / "checkpoints", keep=config.train.checkpoints_to_keep)
    summary = Trainer(config, inputs, out_dir, in_process_world(config.compute.use_gpu), checkpoints,
                      hooks=hooks).run()
    return summary, data


def run_training(config, out_dir: Path, hooks=()) -> dict:
    """Fine-tunes into `out_dir`; `hooks` (train/hooks.py StepHook) run around every step, on every worker."""
    out_dir = Path(out_dir)
    refuse_finished_run(out_dir)
    if config.replay.mix.ratio > 0 and config.replay.mix.dir is None:
        raise ValueError("replay.mix.ratio > 0 needs replay.mix.dir (a `nofrog replay` output directory)")
    started = time.time()
    base = models.resolve_model(config.model)
    check_controls(config, base)  # bad controls fail here, before any worker starts
    check_writable_dir(out_dir)  # and a read-only --out, not after the training
    claim_output_dir(out_dir, config)
    summary = exported_summary(out_dir)
    if summary is not None:
        log.info("%s holds the exported model of a run stopped before its metadata; finishing it", out_dir)
        data = load_training_data(config, base, models.load_tokenizer(base, config.model))
    elif config.compute.num_workers > 0:
        from .ray_runner import train_with_ray

        # The driver reads the data too: bad rows fail before Ray starts, and metadata records them.
        data = load_training_data(config, base, models.load_tokenizer(base, config.model))
        summary = train_with_ray(config, out_dir, hooks)
    else:
        summary, data = train_in_process(config, out_dir, hooks)
    history = out_dir / "history.jsonl"
    plot_loss_and_lr(history, out_dir / "loss_lr.png")
    metadata = {
        "kind": "nofrog-checkpoint",
        "config": config.model_dump(mode="json"),
        "base_model": base.as_dict(),
        "bos": {"token_id": data.bos.token_id, "source": data.bos.source},
        "data": {"train": data.files.train, "heldout": data.files.heldout, "data_hash": data.files.data_hash,
                 "report": data.report.as_dict(), "train_examples": len(data.examples),
                 "validation_examples": len(data.validation)},
        "replay": data.replay_info,
        "training": {**summary, "engine": "ray" if config.compute.num_workers > 0 else "in_process"},
        "trainable_parameters": summary["trainable_parameters"],
        "frozen_layers": summary["frozen_layers"],
        "steps": summary["steps"],
        "final_loss": summary["final_loss"],
        "finch": {"ema0": summary["ema0"], "init_batches_cap": config.train.finch.init_batches}
        if config.train.schedule == "finch" else None,
        "train_wall_seconds": summary["wall_seconds"],
        "wall_seconds": round(time.time() - started, 2),
    }
    write_json(out_dir / "metadata.json", metadata)
    return training_result(out_dir, summary)
