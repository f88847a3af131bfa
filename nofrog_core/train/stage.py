"""The fine-tuning stage: base model + task data in, a plain HF model directory out.

Writes into OUT: model/ (safetensors), history.jsonl, metadata.json,
loss_lr.png. The stage can be rerun alone with `nofrog train`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from .. import models
from ..data import load_examples, load_replay_examples, split_train_validation, task_files
from ..plots import plot_loss_and_lr
from .loop import train_in_process

log = logging.getLogger(__name__)


def check_output_dir(out_dir: Path) -> None:
    """Never train over an earlier run's results."""
    if (out_dir / "metadata.json").exists() or (out_dir / "model").exists():
        raise FileExistsError(f"{out_dir} already holds a training run; choose another --out")


def load_replay(config, base: models.ModelRef, bos_token_id: int | None):
    """Replay examples and what to record about them; (None, None) without replay."""
    replay_dir = config.train.replay_dir
    if config.train.replay_ratio == 0:
        return None, None
    meta = json.loads((replay_dir / "metadata.json").read_text())
    if meta.get("base_model_hash") != base.content_hash:
        log.warning("train.replay_dir %s was sampled from model %s, not from this base model %s",
                    replay_dir, str(meta.get("base_model_hash"))[:12], base.content_hash[:12])
    examples = load_replay_examples(replay_dir, bos_token_id, config.data.max_length)
    return examples, {"dir": str(replay_dir), "samples": len(examples), "request_key": meta.get("request_key"),
                      "base_model_hash": meta.get("base_model_hash")}


def run_training(config, out_dir: Path) -> dict:
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    if config.compute.num_workers > 0:
        raise NotImplementedError(
            "compute.num_workers > 0 (Ray Train) is not available yet; use compute.num_workers=0"
        )
    if config.compute.torch_threads:
        torch.set_num_threads(config.compute.torch_threads)
    if config.train.replay_ratio > 0 and config.train.replay_dir is None:
        raise ValueError("train.replay_ratio > 0 needs train.replay_dir (a `nofrog replay` output directory)")
    started = time.time()
    base = models.resolve_model(config.model)
    model, tokenizer = models.load_model_and_tokenizer(base, config.model)
    bos = models.resolve_bos(tokenizer, config.model.bos_token_id)
    files = task_files(config)
    examples, report = load_examples(files.train, tokenizer, bos.token_id, config.data.max_length,
                                     config.data.format, config.data.on_invalid_row)
    train_examples, validation = split_train_validation(examples, config.data.validation_fraction, config.data.seed)
    log.info("training on %d examples (%d held back for validation)", len(train_examples), len(validation))
    replay, replay_info = load_replay(config, base, bos.token_id)
    result = train_in_process(model, tokenizer, train_examples, config, out_dir, replay)
    plot_loss_and_lr(result.history_path, out_dir / "loss_lr.png")
    metadata = {
        "kind": "nofrog-checkpoint",
        "config": config.model_dump(mode="json"),
        "base_model": base.as_dict(),
        "bos": {"token_id": bos.token_id, "source": bos.source},
        "data": {"train": files.train, "heldout": files.heldout, "data_hash": files.data_hash,
                 "report": report.as_dict(), "train_examples": len(train_examples),
                 "validation_examples": len(validation)},
        "replay": replay_info,
        "trainable_parameters": result.trainable_parameters,
        "frozen_layers": result.frozen_layers,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "finch": {"ema0": result.ema0, "init_batches_cap": config.train.finch_init_batches}
        if config.train.schedule == "finch" else None,
        "train_wall_seconds": round(result.wall_seconds, 2),
        "wall_seconds": round(time.time() - started, 2),
    }
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return {"model_dir": str(result.model_dir), "history": str(result.history_path),
            "metadata": str(out_dir / "metadata.json"), "loss_lr_png": str(out_dir / "loss_lr.png"),
            "final_loss": result.final_loss, "steps": result.steps}
