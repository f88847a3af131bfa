"""Run evaluation tasks on one model and write lm-eval-style results JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import models
from . import builtin

KNOWN_TASKS = ("demo_task", "general_text")


def evaluate_model(model_ref: models.ModelRef, config, tasks: list[str], heldout_path: Path | None) -> dict:
    """Results dict in lm-eval's schema: results.<task>."<metric>,none"."""
    unknown = [t for t in tasks if t not in KNOWN_TASKS]
    if unknown:
        raise ValueError(f"eval.tasks: unknown task(s) {unknown}; available: {list(KNOWN_TASKS)}")
    if "demo_task" in tasks and heldout_path is None:
        raise ValueError("eval.tasks: demo_task needs held-out rows (data.eval_file or the built-in demo task)")
    started = time.time()
    model, tokenizer = models.load_model_and_tokenizer(model_ref, config.model)
    bos = models.resolve_bos(tokenizer, config.model.bos_token_id).token_id
    pad = models.pad_token_id(tokenizer)
    args = (model, tokenizer, bos, config.eval, pad, config.train.loss_chunk_size)
    results, n_samples = {}, {}
    for task in tasks:
        if task == "demo_task":
            metrics, n = builtin.demo_task(*args, heldout_path=heldout_path)
        else:
            metrics, n = builtin.general_text(*args)
        results[task] = {"alias": task, **{_lm_eval_key(k): v for k, v in metrics.items()}}
        n_samples[task] = {"original": n, "effective": n}
    return {
        "results": results,
        "versions": {t: 1 for t in tasks},
        "n-samples": n_samples,
        "config": {"model": str(model_ref.path), "model_hash": model_ref.content_hash,
                   "batch_size": config.eval.batch_size, "max_length": config.eval.max_length},
        "total_evaluation_time_seconds": round(time.time() - started, 2),
    }


def _lm_eval_key(metric: str) -> str:
    # lm-eval names a metric "<name>,<filter>" and its error "<name>_stderr,<filter>".
    return f"{metric},none"


def metric_value(results: dict, task: str, metric: str) -> float:
    return results["results"][task][_lm_eval_key(metric)]


def write_results(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
