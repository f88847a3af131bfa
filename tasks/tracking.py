"""Prefect tasks that record a finished pipeline run in MLflow, register it and apply the gate."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from nofrog_core import model_registry, tracking
from nofrog_core.config import dump_config
from nofrog_core.rounds import ROUND_DIR
from .json_results import json_task
from .stages import retry_transient

EVAL_ARTIFACTS = ("eval_base.json", "eval_candidate.json", "forgetting.json", "forgetting.png",
                  "eval_candidate_unfitted.json", "forgetting_unfitted.json", "forgetting_unfitted.png",
                  "fit/fit.json", "fit/fit.png",
                  "eval_champion.json", "forgetting_vs_champion.json", "forgetting_vs_champion.png")


@json_task(name="log-to-mlflow", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def log_run(config, run_dir: Path, base: dict, train: dict, before: dict, after: dict, report: dict,
            gate: dict, flow_run_id: str | None) -> str:
    tracking.setup(config.tracking)
    train_meta = json.loads(Path(train["metadata"]).read_text())
    tags = {"base_model_hash": base["content_hash"], "gate": gate["label"], "gate_reason": gate["reason"],
            "prefect_flow_run_id": flow_run_id or "", "data_hash": train_meta["data"]["data_hash"]}
    texts = {"config.yaml": dump_config(config)}
    artifacts = {"eval": [run_dir / name for name in EVAL_ARTIFACTS],
                 "train": [Path(train[key]) for key in ("history", "metadata", "loss_lr_png")],
                 ROUND_DIR: [run_dir / ROUND_DIR / name for name in ("heldout.jsonl", "round.json")]}
    if train_meta.get("replay"):
        replay_dir = Path(train_meta["replay"]["dir"])
        artifacts["replay"] = [replay_dir / "metadata.json"]
        with open(replay_dir / "samples.jsonl") as samples:  # a readable sample, not the whole set
            texts["replay/sample_texts.txt"] = "\n\n---\n\n".join(
                json.loads(line)["text"] for _, line in zip(range(20), samples))
    return tracking.log_training_run(run_dir.name, tags, config.flat(), Path(train["history"]),
                                     {"before": before, "after": after}, artifacts, report,
                                     (run_dir / "forgetting.md").read_text(), texts=texts)


@json_task(name="register-and-gate", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def register_and_gate(config, run_id: str, model_dir: str, report: dict, gate: dict, lineage: dict) -> dict:
    """Registers the candidate (tags: figures, gate, lineage) and moves the alias only if it passed."""
    tracking.setup(config.tracking)
    decision = model_registry.GateDecision(gate["passed"], gate["reason"])
    if config.eval.judge_items != "test":
        # A screen reads selection items to choose among recipes: its verdict never ships a model.
        decision = model_registry.GateDecision(False, f"judged on {config.eval.judge_items} items "
                                                f"(eval.judge_items): never promoted; the gate said {gate['reason']}")
    name = config.tracking.registered_model
    version = model_registry.register_candidate(run_id, model_dir, name, model_registry.version_tags(report, decision, lineage))
    with tracking.store_lock(config.tracking):  # two runs finishing at once read and move the alias in turn
        alias_move = model_registry.apply_gate(name, version, decision, config.gate.alias)
    return {"registered_model": name, "version": version, "promoted": decision.passed, "alias": config.gate.alias,
            "alias_move": alias_move}


@json_task(name="log-stage-times", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def log_stage_seconds(config, run_id: str, seconds: dict[str, float]) -> None:
    tracking.setup(config.tracking)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"time/{stage}_seconds": value for stage, value in seconds.items()})


FAILED_RUN_FILES = ("eval_base.json", "eval_candidate.json", "eval_champion.json", "forgetting.json",
                    "train/history.jsonl", "train/history_reference.jsonl", "train/run_config.json",
                    "train/training_summary.json")


@json_task(name="log-failed-run")
def log_failed_run(config, run_dir: Path, stage: str, error: BaseException) -> str | None:
    """An MLflow run for a failed pipeline run: which stage failed, why, and the files it left."""
    try:
        tracking.setup(config.tracking)
        with mlflow.start_run(run_name=f"{run_dir.name}-failed") as run:
            mlflow.set_tags({"status": "failed", "failed_stage": stage,
                             "error": f"{type(error).__name__}: {error}"[:5000]})
            tracking.log_params(config.flat())
            for name in FAILED_RUN_FILES:
                if (run_dir / name).exists():
                    mlflow.log_artifact(str(run_dir / name), "partial")
            return run.info.run_id
    except Exception as logging_error:  # the stage's own error is the one to report
        print(f"could not record the failed run in MLflow: {logging_error}")
        return None
