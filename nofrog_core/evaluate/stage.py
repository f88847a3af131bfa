"""The evaluation stage: one model, a list of tasks, a results JSON on disk."""

from __future__ import annotations

from pathlib import Path

from .. import models
from ..data import task_files
from .runner import evaluate_model, write_results


def model_config_for(config, model: str | None):
    """The configured base model, or another model (a checkpoint directory, a Hub id) with the same settings."""
    return config.model if model is None else config.model.model_copy(update={"name_or_path": str(model)})


def run_evaluation(config, out_file: Path, model: str | None = None, tasks: list[str] | None = None) -> dict:
    out_file = Path(out_file)
    if out_file.exists():
        raise FileExistsError(f"{out_file} already exists; choose another --out (results are never overwritten)")
    tasks = tasks or config.eval.tasks
    ref = models.resolve_model(model_config_for(config, model))
    heldout = task_files(config).heldout if "demo_task" in tasks else None
    results = evaluate_model(ref, config, tasks, Path(heldout) if heldout else None)
    write_results(results, out_file)
    return results
