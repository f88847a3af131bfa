"""Run evaluation tasks on one model and write lm-eval-style results JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import models
from . import builtin, harness, yaml_tasks

KNOWN_TASKS = ("demo_task", "general_text", "replay_kl")
SUITES_DIR = Path(__file__).resolve().parent.parent / "data_files" / "suites"
# Built-in suites: names that stand for several tasks. `replay_kl` joins `general` when the
# config names a replay directory with held-out samples.
SUITES = {"general": [str(SUITES_DIR / "general"), "general_text", "replay_kl"]}


def expand_suites(tasks: list[str], replay_available: bool) -> list[str]:
    expanded = []
    for task in tasks:
        members = SUITES.get(task, [task])
        if task in SUITES and not replay_available:
            members = [m for m in members if m != "replay_kl"]
        for member in members:
            if member not in expanded:
                expanded.append(member)
    return expanded


def harness_task_names(tasks: list[str]) -> list[str]:
    """Names that are neither built in nor paths: lm-evaluation-harness tasks, when its extra is installed."""
    names = [t for t in tasks if t not in KNOWN_TASKS and not Path(t).exists()]
    if not names:
        return []
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ValueError(f"eval.tasks: unknown task(s) {names}; expected built-in names {[*SUITES, *KNOWN_TASKS]}, "
                         "paths to task YAML files or directories, or lm-eval task names with the lm-eval extra "
                         "installed (pip install -e '.[lm-eval]')") from None
    unknown = [n for n in names if n not in TaskManager().all_tasks]
    if unknown:
        raise ValueError(f"eval.tasks: {unknown} are neither built-in tasks, paths, nor lm-eval tasks")
    return names


def run_harness_tasks(names: list[str], model_ref: models.ModelRef, config) -> dict:
    """lm-eval's own simple_evaluate on the model directory; its results land in the same report."""
    from lm_eval import simple_evaluate

    dtype = config.model.dtype
    return simple_evaluate(model="hf", model_args=f"pretrained={model_ref.path},dtype={dtype}", tasks=names,
                           batch_size=config.eval.batch_size)


def load_yaml_tasks(tasks: list[str]) -> dict[str, yaml_tasks.TaskSpec]:
    """The task YAMLs named in `tasks` (files, or directories of them), loaded and checked before any scoring."""
    specs = {}
    for entry in tasks:
        if entry not in KNOWN_TASKS and Path(entry).exists():
            for path in yaml_tasks.task_yaml_files(Path(entry)):
                spec = yaml_tasks.load_task(path)
                specs[spec.name] = spec
    return specs


def evaluate_model(model_ref: models.ModelRef, config, tasks: list[str], heldout_path: Path | None) -> dict:
    """Results dict in lm-eval's schema: results.<task>."<metric>,none"."""
    replay_dir = config.train.replay_dir
    tasks = expand_suites(tasks, builtin.replay_heldout(replay_dir) is not None)
    specs = load_yaml_tasks(tasks)
    harness_names = harness_task_names(tasks)
    if "demo_task" in tasks and heldout_path is None:
        raise ValueError("eval.tasks: demo_task needs held-out rows (data.eval_file or the built-in demo task)")
    if "replay_kl" in tasks and builtin.replay_heldout(replay_dir) is None:
        raise ValueError("eval.tasks: replay_kl needs train.replay_dir with held-out samples (heldout.jsonl)")
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
    if harness_names:
        harness_results = run_harness_tasks(harness_names, model_ref, config)
        for key in ("results", "versions", "n-samples", "configs"):
            {"results": results, "versions": versions, "n-samples": n_samples, "configs": configs}[key].update(
                harness_results.get(key, {}))
    for task in (t for t in tasks if t in KNOWN_TASKS):
        versions[task] = 1
        if task == "demo_task":
            metrics, n = builtin.demo_task(*args, heldout_path=heldout_path)
        elif task == "replay_kl":
            metrics, n = builtin.replay_kl(*args, replay_dir=replay_dir, model_hash=model_ref.content_hash,
                                           base_nll=lambda: base_replay_nll(config, replay_dir))
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


def base_replay_nll(config, replay_dir: Path) -> list[float]:
    """The configured base model's NLL of each held-out replay sample (loaded only when not cached)."""
    base = models.resolve_model(config.model)
    model, tokenizer = models.load_model_and_tokenizer(base, config.model)
    bos = models.resolve_bos(tokenizer, config.model.bos_token_id).token_id
    nll, _ = builtin.heldout_replay_nll(model, bos, config.eval, models.pad_token_id(tokenizer),
                                        config.train.loss_chunk_size, replay_dir, desc="replay_kl (base)")
    return nll


def _lm_eval_key(metric: str) -> str:
    # lm-eval names a metric "<name>,<filter>" and its error "<name>_stderr,<filter>".
    return f"{metric},none"


def metric_value(results: dict, task: str, metric: str) -> float:
    return results["results"][task][_lm_eval_key(metric)]


def write_results(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
