"""Run evaluation tasks on one model and write lm-eval-style results JSON.

Besides lm-eval's `results`, `versions`, `configs` and `n-samples`, the JSON holds
- `task_info`: each task's judged metric, its direction and its role (forgetting, gain,
  extra), from the task itself (first `metric_list` entry, `higher_is_better`, lm-eval's
  defaults) or from `eval.task_metrics`;
- `samples`: per-item scores, so a report can recompute any figure and its interval later;
- `item_ids` and `item_parts`: each scored item's content hash and its part, `selection` or
  `test` (`nofrog_core/splits.py`), so two evaluations are paired by item, never by position.

Which items are scored is the caller's choice (`part`): the base model is scored on all of them,
a candidate on the items its report will read, a fit's mixes on selection items.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .. import models, rounds, splits
from ..data import load_examples, split_train_validation, configured_task_files
from ..outputs import write_json
from . import builtin, harness, yaml_tasks
from .fit_strategies import NO_FIT
from .metrics import METRICS, default_higher_is_better

SUITES_DIR = Path(__file__).resolve().parent.parent / "data_files" / "suites"
# Built-in suites: names that stand for several tasks. `replay_kl` joins `general` when the
# config names a replay directory with held-out samples.
SUITES = {"general": [str(SUITES_DIR / "general"), "general_text", "story_text", "replay_kl"]}
# Built-in tasks whose base score is 0 by construction: reported beside the aggregate, never in it.
REPORTED_ONLY = {"replay_kl"}
# Shipped with nofrog, and so chosen on by the project's own screens: always split.
SHIPPED_BUILTINS = {"general_text", "story_text"}
ROLE_KEYS = {"forgetting": "eval.forgetting_tasks", "gain": "eval.gain_tasks", "extra": "eval.tasks"}


@dataclass
class PlannedTask:
    entry: str  # what the config named: a built-in name, a YAML path, an lm-eval task name
    role: str


def plan_tasks(eval_config, replay_available: bool) -> list[PlannedTask]:
    """Every configured entry with its role, suites expanded; a task named twice keeps its first role."""
    planned, seen = [], set()
    for role, entries in (("gain", eval_config.gain_tasks), ("forgetting", eval_config.forgetting_tasks),
                          ("extra", eval_config.tasks)):
        for entry in entries:
            for member in SUITES.get(entry, [entry]):
                if member == "replay_kl" and entry in SUITES and not replay_available:
                    continue
                if member not in seen:
                    seen.add(member)
                    planned.append(PlannedTask(member, "extra" if member in REPORTED_ONLY else role))
    return planned


def protected_rounds(eval_config) -> list[Path]:
    """The earlier rounds this evaluation scores (`eval.earlier_rounds`, unless `eval.protect_rounds` is off)."""
    return [Path(d) for d in eval_config.earlier_rounds] if eval_config.protect_rounds else []


def is_builtin(entry: str) -> bool:
    return entry in builtin.BUILTIN_TASKS


def chooses_on_items(config) -> bool:
    """Whether this run picks among candidates by their scores (the fit, a monitor that stops early,
    or `eval.split: always`): then every task's items are split into selection and test."""
    tc = config.train
    return (config.eval.split == "always" or config.gate.fit != NO_FIT
            or (tc.monitor_every > 0 and tc.monitor_early_stop))


def is_shipped(entry: str, config) -> bool:
    """Tasks that come with nofrog (the general suite, its texts, the demo task's held-out questions):
    the default recipe was chosen on their selection items, so they are always split."""
    if entry in SHIPPED_BUILTINS:
        return True
    if entry == "heldout_answers":
        return config.data.path is None and config.data.eval_file is None
    path = Path(entry)
    return not is_builtin(entry) and path.exists() and SUITES_DIR in (path.resolve(), *path.resolve().parents)


def item_parts(ids: list[str], split: bool, eval_config) -> list[str]:
    """Each item's part: by its seeded content hash when the task is split, else every item is a
    test item (nothing chooses on it, so the gate may read them all)."""
    if not split:
        return [splits.TEST] * len(ids)
    return splits.parts_of(ids, eval_config.selection_fraction, eval_config.split_seed)


def split_counts(parts: list[str], split: bool) -> dict:
    return {"selection": parts.count(splits.SELECTION), "test": parts.count(splits.TEST),
            "by": "content hash" if split else "none: nothing chooses on this task, every item is a test item"}


def harness_task_names(planned: list[PlannedTask]) -> list[str]:
    """Names that are neither built in nor paths: lm-evaluation-harness tasks, when its extra is installed."""
    names = [p.entry for p in planned if not is_builtin(p.entry) and not Path(p.entry).exists()]
    if not names:
        return []
    where = {p.entry: ROLE_KEYS[p.role] for p in planned}
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise ValueError(f"{where[names[0]]}: unknown task(s) {names}; expected built-in names "
                         f"{[*SUITES, *builtin.BUILTIN_TASKS]}, paths to task YAML files or directories, or lm-eval "
                         "task names with the lm-eval extra installed (pip install -e '.[lm-eval]')") from None
    unknown = [n for n in names if n not in TaskManager().all_tasks]
    if unknown:
        raise ValueError(f"{where[unknown[0]]}: {unknown} are neither built-in tasks, paths, nor lm-eval tasks")
    return names


def load_yaml_tasks(planned: list[PlannedTask]) -> list[tuple[yaml_tasks.TaskSpec, str]]:
    """The task YAMLs named (files, or directories of them), loaded and checked before any scoring."""
    specs = []
    for task in planned:
        if not is_builtin(task.entry) and Path(task.entry).exists():
            specs += [(yaml_tasks.load_task(path), task.role) for path in yaml_tasks.task_yaml_files(Path(task.entry))]
    return specs


def judged_metric(name: str, declared: list[dict], output_type: str | None, overrides: dict) -> dict:
    """The metric a task is judged on and its direction: the override, else the task's first
    `metric_list` entry (bits per byte for rolling log-likelihood tasks), else lm-eval's default."""
    first = declared[0] if declared else {}
    first = {"metric": first} if isinstance(first, str) else first
    metric = "bits_per_byte" if output_type == "loglikelihood_rolling" else first.get("metric")
    higher = first.get("higher_is_better") if first.get("metric") == metric else None
    override = overrides.get(name)
    if override is not None:
        metric = override.metric or metric
        higher = override.higher_is_better if override.higher_is_better is not None else higher
    if metric not in METRICS:
        raise ValueError(f"task {name!r}: metric {metric!r} cannot be computed from per-item scores; "
                         f"expected one of {sorted(METRICS)} (set eval.task_metrics.{name}.metric)")
    return {"metric": metric, "higher_is_better": default_higher_is_better(metric) if higher is None else higher}


def heldout_examples(config, tokenizer, bos_token_id):
    """The gain task's held-out rows: data.eval_file, else the validation split that training holds
    back (same rows, same seed), else the demo task's held-out questions."""
    files, data = configured_task_files(config), config.data
    if files.heldout is not None:
        examples, _ = load_examples(files.heldout, tokenizer, bos_token_id, config.eval.max_length, data.format,
                                    data.on_invalid_row, data.max_drop_fraction)
        return examples
    examples, _ = load_examples(files.train, tokenizer, bos_token_id, data.max_length, data.format,
                                data.on_invalid_row, data.max_drop_fraction)
    _, validation = split_train_validation(examples, data.validation_fraction, data.seed)
    if not validation:
        raise ValueError(f"eval.gain_tasks: heldout_answers found no held-out rows in {files.train} "
                         f"(data.validation_fraction {data.validation_fraction}); set data.eval_file")
    return validation


def check_tasks(config, planned: list[PlannedTask]) -> None:
    names = {p.entry for p in planned}
    if "replay_kl" in names and builtin.replay_heldout(config.replay.mix.dir) is None:
        raise ValueError("eval.tasks: replay_kl needs replay.mix.dir with held-out samples (heldout.jsonl)")


def planned_tasks(config, tasks: list[str] | None = None) -> list[PlannedTask]:
    """The configured tasks with their roles; an explicit list (`nofrog eval --tasks`) is scored as
    forgetting tasks, except the held-out answers, which stay the gain."""
    ec = config.eval
    if tasks:
        ec = ec.model_copy(update={"forgetting_tasks": [t for t in tasks if t != "heldout_answers"],
                                   "gain_tasks": [t for t in tasks if t == "heldout_answers"], "tasks": []})
    return plan_tasks(ec, builtin.replay_heldout(config.replay.mix.dir) is not None)


def evaluation_tasks(config, tasks: list[str] | None = None) -> list[tuple[str, int | None]]:
    """Every task an evaluation scores, by the name its results carry, in the order it scores them,
    with its number of items where known before scoring (YAML tasks): what evaluation workers share."""
    planned = planned_tasks(config, tasks)
    return ([(spec.name, len(spec.docs)) for spec, _ in load_yaml_tasks(planned)]
            + [(name, None) for name in harness_task_names(planned)]
            + [(p.entry, None) for p in planned if is_builtin(p.entry)]
            + [(rounds.round_task_name(d), None) for d in protected_rounds(config.eval)])


def evaluate_model(model_ref: models.ModelRef, config, tasks: list[str] | None = None, part: str = "all",
                   only: set[str] | None = None) -> dict:
    """Results dict in lm-eval's schema (results.<task>."<metric>,none") plus task_info, samples,
    item ids and parts. `tasks`: score these instead of the configured ones (see `planned_tasks`);
    `part`: score only the `selection` or the `test` items (default `all`); `only`: of those, only the
    tasks of these names (one evaluation worker's share, `evaluation_tasks`)."""
    if part not in ("all", *splits.PARTS):
        raise ValueError(f"part {part!r}: expected all, selection or test")
    ec = config.eval
    planned = planned_tasks(config, tasks)
    check_tasks(config, planned)
    specs = load_yaml_tasks(planned)
    round_dirs = protected_rounds(ec)
    if only is not None:
        specs = [(spec, role) for spec, role in specs if spec.name in only]
        planned = [p for p in planned if not is_builtin(p.entry) or p.entry in only]
        round_dirs = [d for d in round_dirs if rounds.round_task_name(d) in only]
    # Judged metrics are settled before the model loads: a metric that cannot be computed fails now.
    infos = {spec.name: judged_metric(spec.name, spec.raw.get("metric_list") or [], spec.output_type,
                                      ec.task_metrics) for spec, _ in specs}
    for task in (p for p in planned if is_builtin(p.entry)):
        declared = builtin.BUILTIN_TASKS[task.entry]
        infos[task.entry] = judged_metric(task.entry, [{"metric": declared.metric,
                                                        "higher_is_better": declared.higher_is_better}],
                                          None, ec.task_metrics)
    for round_dir in round_dirs:
        infos[rounds.round_task_name(round_dir)] = judged_metric(rounds.round_task_name(round_dir),
                                                                 [{"metric": "exact_match"}], None, ec.task_metrics)
    harness_names = [n for n in harness_task_names(planned) if only is None or n in only]
    started = time.time()
    model, tokenizer = models.load_model_and_tokenizer(model_ref, config.model)
    model = models.placed(model, config.compute.use_gpu)
    bos = models.resolve_bos(tokenizer, config.model.bos_token_id, models.config_bos_token_id(model_ref)).token_id
    pad = models.pad_token_id(tokenizer)
    out = {"results": {}, "versions": {}, "configs": {}, "n-samples": {}, "task_info": {}, "samples": {},
           "item_ids": {}, "item_parts": {}}
    split_always = chooses_on_items(config)

    def record(name: str, entry: dict, samples: dict, ids: list[str], parts: list[str], split: bool, role: str,
               info: dict, version, task_config: dict):
        """One task's results: `ids` / `parts` cover every item of the task, `samples` the scored ones."""
        kept = splits.keep(parts, part)
        n = len(kept)
        out["results"][name], out["samples"][name] = entry, samples
        out["item_ids"][name], out["item_parts"][name] = [ids[i] for i in kept], [parts[i] for i in kept]
        out["task_info"][name] = {**info, "role": role, "items": split_counts(parts, split)}
        out["versions"][name], out["configs"][name] = version, task_config
        out["n-samples"][name] = {"original": len(ids), "effective": n}

    for spec, role in specs:
        split = split_always or is_shipped(str(spec.source.parent), config) or is_shipped(str(spec.source), config)
        ids = splits.item_ids(spec.docs)
        parts = item_parts(ids, split, ec)
        entry, samples = harness.run_task(spec, model, tokenizer, bos, ec.max_length, ec.batch_size, pad,
                                          config.train.loss_chunk_size, indices=splits.keep(parts, part))
        record(spec.name, entry, samples, ids, parts, split, role, infos[spec.name], spec.version,
               {**spec.raw, "source": str(spec.source)})
    if harness_names:
        roles = {p.entry: p.role for p in planned}
        for name, (entry, samples, ids, info, version, task_config) in run_harness_tasks(harness_names, model_ref,
                                                                                         config).items():
            # lm-eval scores every document; the part is kept by selecting the per-item scores after it.
            parts = item_parts(ids, split_always, ec)
            kept = splits.keep(parts, part)
            samples = {key: [values[i] for i in kept] for key, values in samples.items()}
            record(name, entry, samples, ids, parts, split_always, roles.get(name, "extra"), info, version,
                   task_config)
    context = builtin.EvalContext(
        model, tokenizer, bos, pad, ec.batch_size, ec.max_length, config.train.loss_chunk_size,
        heldout_examples=None, replay_dir=config.replay.mix.dir, model_hash=model_ref.content_hash,
        base_replay_nll=lambda: base_replay_nll(config, config.replay.mix.dir))
    context.part = part

    def run_builtin(runner: str, name: str, role: str, split: bool, task_config: dict) -> None:
        context.parts = lambda ids: item_parts(ids, split, ec)
        task_started = time.time()
        metrics, samples = builtin.BUILTIN_TASKS[runner].run(context)
        ids, parts = samples.pop("item_id_all"), samples.pop("item_part_all")
        entry = {"alias": name, **{_lm_eval_key(k): v for k, v in metrics.items()},
                 "seconds": round(time.time() - task_started, 2)}
        record(name, entry, samples, ids, parts, split, role, infos[name], 1, task_config)

    for task in (p for p in planned if is_builtin(p.entry)):
        if task.entry == "heldout_answers":
            context.heldout_examples = heldout_examples(config, tokenizer, bos)
        run_builtin(task.entry, task.entry, task.role, split_always or is_shipped(task.entry, config), {})
    for round_dir in round_dirs:
        # An earlier round's held-out rows, scored as that round's gain task was; split like the user's tasks.
        context.heldout_examples = rounds.round_examples(round_dir, tokenizer, bos, ec.max_length)
        run_builtin(rounds.GAIN_TASK, rounds.round_task_name(round_dir), "round", split_always, {"source": str(round_dir)})
    out["config"] = {"model": str(model_ref.path), "model_hash": model_ref.content_hash, "workers": 1,
                     "batch_size": ec.batch_size, "max_length": ec.max_length, "items_scored": part,
                     "selection_fraction": ec.selection_fraction, "split_seed": ec.split_seed}
    out["total_evaluation_time_seconds"] = round(time.time() - started, 2)
    return out


# Bumped when the results JSON changes meaning (2: item ids and parts); part of the base cache's key.
RESULTS_FORMAT = 2


def tasks_content_hash(config) -> str:
    """sha256 over the content of every configured task (YAML files and their data, the shipped
    texts), nofrog's version and the results format: what a cached base evaluation must match."""
    from importlib.metadata import PackageNotFoundError, version

    from ..hashing import file_sha256, json_sha256

    content = {}
    for task in planned_tasks(config):
        path = Path(task.entry)
        if is_builtin(task.entry):
            content[task.entry] = file_sha256(SUITES_DIR.parent / f"{task.entry}.txt") \
                if task.entry in SHIPPED_BUILTINS else task.entry
        elif path.exists():
            files = sorted(p for p in (path.rglob("*") if path.is_dir() else [path]) if p.is_file())
            content[task.entry] = {str(p): file_sha256(p) for p in files}
            for spec in (yaml_tasks.load_task(f) for f in yaml_tasks.task_yaml_files(path)):
                content[f"{task.entry}:{spec.name}"] = splits.item_ids(spec.docs)  # data files named elsewhere
        else:
            content[task.entry] = task.entry  # an lm-eval task: its version is lm-eval's
    try:
        nofrog_version = version("nofrog")
    except PackageNotFoundError:
        nofrog_version = "unknown"
    return json_sha256({"tasks": content, "nofrog": nofrog_version, "results_format": RESULTS_FORMAT})


def run_harness_tasks(names: list[str], model_ref: models.ModelRef, config) -> dict:
    """lm-eval's own simple_evaluate on the model directory, with its per-document samples turned into
    ours: {task: (results entry, samples, item ids, judged metric, version, config)}."""
    from lm_eval import simple_evaluate

    raw = simple_evaluate(model="hf", model_args=f"pretrained={model_ref.path},dtype={config.model.dtype}",
                          tasks=names, batch_size=config.eval.batch_size, log_samples=True)
    out = {}
    for name, entry in raw["results"].items():
        task_config = raw.get("configs", {}).get(name, {})
        info = judged_metric(name, task_config.get("metric_list") or [], task_config.get("output_type"),
                             config.eval.task_metrics)
        documents = raw.get("samples", {}).get(name, [])
        samples = lm_eval_samples(documents)
        ids = splits.item_ids([doc.get("doc", doc.get("doc_id")) for doc in documents])
        out[name] = (entry, samples, ids, info, raw.get("versions", {}).get(name), task_config)
    return out


def lm_eval_samples(documents: list[dict]) -> dict:
    """lm-eval's logged samples as per-item arrays: 0/1 metrics as they are; rolling-text metrics,
    logged as (loglikelihood, words or bytes) pairs, as NLL, words and bytes."""
    samples: dict[str, list] = {}
    for doc in documents:
        for metric in ("acc", "acc_norm", "exact_match"):
            if metric in doc:
                samples.setdefault(metric, []).append(float(doc[metric]))
        if "word_perplexity" in doc and "byte_perplexity" in doc:
            ll, words = doc["word_perplexity"]
            _, num_bytes = doc["byte_perplexity"]
            samples.setdefault("nll", []).append(-float(ll))
            samples.setdefault("words", []).append(float(words))
            samples.setdefault("bytes", []).append(float(num_bytes))
    return samples


def base_replay_nll(config, replay_dir: Path) -> list[float]:
    """The base model's NLL of each held-out replay sample, for when it is not cached. The base is the
    model the replay set was sampled from (its metadata's path), checked by content hash: the model
    being evaluated (`config.model` names the candidate then) is never scored as the base."""
    meta = json.loads((Path(replay_dir) / "metadata.json").read_text())
    expected, path = meta.get("base_model_hash"), meta.get("base_model_path")
    if not path or not Path(path).is_dir():
        raise ValueError(f"replay_kl: {replay_dir}/metadata.json names no base model directory that exists "
                         f"({path!r}); the base's NLL of the held-out samples cannot be computed")
    base = models.resolve_model(config.model.model_copy(update={"name_or_path": str(path), "gguf_file": None}))
    if base.content_hash != expected:
        raise ValueError(f"replay_kl: the model at {path} (sha256 {base.content_hash[:16]}) is not the base the "
                         f"replay samples came from (sha256 {str(expected)[:16]}); regenerate the replay set")
    model, tokenizer = models.load_model_and_tokenizer(base, config.model)
    model = models.placed(model, config.compute.use_gpu)
    bos = models.resolve_bos(tokenizer, config.model.bos_token_id, models.config_bos_token_id(base)).token_id
    nll, _ = builtin.heldout_replay_nll(model, bos, config.eval.max_length, config.eval.batch_size,
                                        models.pad_token_id(tokenizer), config.train.loss_chunk_size, replay_dir,
                                        desc="replay_kl (base)")
    return nll


def _lm_eval_key(metric: str) -> str:
    # lm-eval names a metric "<name>,<filter>" and its error "<name>_stderr,<filter>".
    return f"{metric},none"


def metric_value(results: dict, task: str, metric: str) -> float:
    return results["results"][task][_lm_eval_key(metric)]


def write_results(results: dict, path: Path) -> None:
    write_json(path, results)
