"""Run evaluation tasks on one model and write lm-eval-style results JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import models
from . import builtin, harness, yaml_tasks

KNOWN_TASKS = ("demo_task", "general_text")
SUITES_DIR = Path(__file__).resolve().parent.parent / "data_files" / "suites"
# Built-in suites: names that stand for several tasks.
SUITES = {"general": [str(SUITES_DIR / "general"), "general_text"]}


def expand_suites(tasks: list[str]) -> list[str]:
    expanded = []
    for task in tasks:
        for member in SUITES.get(task, [task]):
            if member not in expanded:
                expanded.append(member)
    return expanded


def load_yaml_tasks(tasks: list[str]) -> dict[str, yaml_tasks.TaskSpec]:
    """The task YAMLs named in `tasks` (files, or directories of them), loaded and checked before any scoring."""
    unknown = [t for t in tasks if t not in KNOWN_TASKS and not Path(t).exists()]
    if unknown:
        raise ValueError(f"eval.tasks: unknown task(s) {unknown}; expected built-in names "
                         f"{[*SUITES, *KNOWN_TASKS]} "
                         "or paths to task YAML files or directories")
    specs = {}
    for entry in tasks:
        if entry not in KNOWN_TASKS:
            for path in yaml_tasks.task_yaml_files(Path(entry)):
                spec = yaml_tasks.load_task(path)
                specs[spec.name] = spec
    return specs


def evaluate_model(model_ref: models.ModelRef, config, tasks: list[str], heldout_path: Path | None) -> dict:
    """Results dict in lm-eval's schema: results.<task>."<metric>,none"."""
    tasks = expand_suites(tasks)
    specs = load_yaml_tasks(tasks)
    if "demo_task" in tasks and heldout_path is None:
        raise ValueError("eval.tasks: demo_task needs held-out rows (data.eval_file or the built-in demo task)")
    started = time.time()
    model, tokenizer = models.load_model_and_tokenizer(model_ref, config.model)
    bos = models.resolve_bos(tokenizer, config.model.bos_token_id).token_id
    pad = models.pad_token_id(tokenizer)
    args = (model, tokenizer, bos, config.eval, pad, config.train.loss_chunk_size)
    results, n_samples, versions, configs = {}, {}, {}, {}
    for spec in specs.values():
        results[spec.name] = harness.run_task(spec, *args)
        n_samples[spec.name] = {"original": len(spec.docs), "effective": len(spec.docs)}
        versions[spec.name], configs[spec.name] = spec.version, {**spec.raw, "source": str(spec.source)}
    for task in (t for t in tasks if t in KNOWN_TASKS):
        versions[task] = 1
        if task == "demo_task":
            metrics, n = builtin.demo_task(*args, heldout_path=heldout_path)
        else:
            metrics, n = builtin.general_text(*args)
        results[task] = {"alias": task, **{_lm_eval_key(k): v for k, v in metrics.items()}}
        n_samples[task] = {"original": n, "effective": n}
    return {
        "results": results,
        "versions": versions,
        "configs": configs,
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
