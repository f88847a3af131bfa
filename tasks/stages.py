"""One Prefect task per pipeline stage. No ML logic here: each calls nofrog_core.

Replay generation and the base model's evaluation are cached across runs:
their cache keys hash everything that decides their result (the base model's
content hash, the replay or eval settings, the data), so a scheduled run that
changes none of them reuses the earlier result instead of recomputing it.
Validation errors are not retried; transient failures (a lost Ray worker, a
network blip) are, with backoff.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path


from nofrog_core import model_registry, models, tracking
from nofrog_core.data import configured_task_files
from nofrog_core.evaluate.fit_strategies import FIT_STRATEGIES
from nofrog_core.evaluate.stage import decide_with, run_evaluation, run_report
from nofrog_core.evaluate.runner import tasks_content_hash
from nofrog_core.hashing import json_sha256
from nofrog_core.replay.stage import request_key, run_replay
from nofrog_core.train.stage import finished_training, run_training
from .json_results import json_task, refuse_foreign_record

# Retry only what may pass on a second try: user errors (bad config, bad data, an output that
# exists) fail the same way every time.
NOT_TRANSIENT = (ValueError, FileExistsError, FileNotFoundError, NotImplementedError)


def retry_transient(task_, task_run, state) -> bool:
    try:
        state.result()
    except NOT_TRANSIENT:
        return False
    except Exception:
        return True
    return False


def replay_cache_dir(config, base: dict) -> Path:
    """One directory per replay request, named by the replay stage's own request key."""
    key = request_key(base["content_hash"], config.replay.backend, config.replay)
    return (Path(config.tracking.output_dir) / "replay-cache" / json_sha256(key)[:16]).resolve()


def _replay_cache_key(context, parameters) -> str:
    # The result is a path: the key names the directory too, so another project's cache never answers.
    out_dir = replay_cache_dir(parameters["config"], parameters["base"])
    return "replay-" + json_sha256({"dir": str(out_dir)})[:16]


def base_eval_request(config, base: dict) -> dict:
    """Everything the base's evaluation depends on: the model's hash, the content of every task it
    scores, the split, nofrog's version and results format. A changed suite never answers from
    the cache with items that no longer pair."""
    files = configured_task_files(config)
    return {"base_model_hash": base["content_hash"], "eval": config.eval.model_dump(mode="json"),
            "tasks_content": tasks_content_hash(config), "chooses": config.gate.fit,
            "model": config.model.model_dump(mode="json", exclude={"cache_dir"}), "data_hash": files.data_hash,
            "replay_dir": str(config.replay.mix.dir.resolve()) if config.replay.mix.dir else None}


def _base_eval_cache_key(context, parameters) -> str:
    return "base-eval-" + json_sha256(base_eval_request(parameters["config"], parameters["base"]))[:16]


@json_task(name="prepare-base-model", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=retry_transient)
def prepare_base_model(config) -> dict:
    return models.resolve_model(config.model).as_dict()


# Persisted results are JSON (paths and metric dicts), never pickle, and a cached record is checked
# before Prefect reads it (json_results): a cached result is read back without running code.
@json_task(name="generate-replay", cache_key_fn=_replay_cache_key, persist_result=True,
      cache_expiration=timedelta(days=30), retries=1, retry_condition_fn=retry_transient)
def generate_replay(config, base: dict) -> str:
    """Context-free samples of the base model, in a directory shared by every run with the same request."""
    out_dir = replay_cache_dir(config, base)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    run_replay(config, out_dir)
    return str(out_dir)


def cached_replay(config, base: dict) -> str:
    """generate_replay through Prefect's cache, regenerating when the cached directory was deleted."""
    refuse_foreign_record(generate_replay, _replay_cache_key(None, {"config": config, "base": base}))
    replay_dir = generate_replay(config, base)
    if not (Path(replay_dir) / "metadata.json").exists():
        replay_dir = generate_replay.with_options(refresh_cache=True)(config, base)
    return replay_dir


@json_task(name="evaluate-base", cache_key_fn=_base_eval_cache_key, persist_result=True,
      cache_expiration=timedelta(days=30), retries=1, retry_condition_fn=retry_transient)
def evaluate_base(config, base: dict, scratch_file: Path) -> dict:
    # Every item, selection and test: the fit chooses on the first, the gate reads the second (a
    # screen, eval.judge_items=selection, scores selection items only).
    return run_evaluation(config, scratch_file)


def cached_base_evaluation(config, base: dict, scratch_file: Path) -> dict:
    """evaluate_base through Prefect's cache."""
    refuse_foreign_record(evaluate_base, _base_eval_cache_key(None, {"config": config, "base": base}))
    return evaluate_base(config, base, scratch_file)


@json_task(name="evaluate", retries=1, retry_condition_fn=retry_transient)
def evaluate(config, out_file: Path, model: str | None = None, part: str | None = "test") -> dict:
    return run_evaluation(config, out_file, model=model, part=part)


@json_task(name="fine-tune", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=retry_transient)
def fine_tune(config, out_dir: Path) -> dict:
    # A retry (or a resumed run) lands in the same directory and resumes from the last checkpoint;
    # a resumed run whose training had finished reuses it.
    return finished_training(config, out_dir) or run_training(config, out_dir)


@json_task(name="fetch-champion", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def fetch_champion(config, out_dir: Path) -> dict | None:
    """The current champion as a local HF directory ({model_dir, version}), or None without one."""
    tracking.setup(config.tracking)
    return model_registry.download_champion(config.tracking.registered_model, config.gate.alias, out_dir)


@json_task(name="fetch-earlier-rounds", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def fetch_earlier_rounds(config, champion_version: str, out_dir: Path) -> list[str]:
    """The round records of the champion's lineage (it and every version it started from), as local
    directories: the rows each earlier round was judged on."""
    tracking.setup(config.tracking)
    return model_registry.lineage_round_records(config.tracking.registered_model, champion_version, out_dir)


@json_task(name="forgetting-report")
def compare(config, before: dict, after: dict, out_file: Path) -> dict:
    return run_report(config, before, after, out_file)


@json_task(name="gate")
def gate(report: dict, config, champion_report: dict | None = None) -> dict:
    gain_over_champion = champion_report["task_gain"] if champion_report else None
    return decide_with(report, config.gate, gain_over_champion).as_dict()


@json_task(name="fit-within-budget")
def fit_within_budget(config, base_dir: str, candidate_dir: str, before: dict, out_dir: Path,
                      champion_eval: dict | None = None) -> dict:
    """The `gate.fit` strategy: models chosen on selection items, the chosen one judged on test items."""
    return FIT_STRATEGIES[config.gate.fit](config, Path(base_dir), Path(candidate_dir), before, out_dir,
                                           champion_eval)
