"""Prefect task that records a finished pipeline run in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from prefect import task

from nofrog_core import tracking
from nofrog_core.config import dump_config


@task(name="log-to-mlflow", retries=2, retry_delay_seconds=[5, 30])
def log_run(config, run_dir: Path, base: dict, train: dict, before: dict, after: dict, report: dict,
            gate: dict, flow_run_id: str | None) -> str:
    tracking.setup(config.tracking)
    train_meta = json.loads(Path(train["metadata"]).read_text())
    with mlflow.start_run(run_name=run_dir.name) as run:
        tracking.log_params(config.flat())
        tracking.log_history(Path(train["history"]))
        tracking.log_eval(before, "before")
        tracking.log_eval(after, "after")
        tracking.log_report(report)
        mlflow.set_tags({"base_model_hash": base["content_hash"], "gate": gate["label"],
                         "gate_reason": gate["reason"], "prefect_flow_run_id": flow_run_id or "",
                         "data_hash": train_meta["data"]["data_hash"]})
        mlflow.log_text(dump_config(config), "config.yaml")
        for name in ("eval_base.json", "eval_candidate.json", "forgetting.json", "forgetting.png"):
            mlflow.log_artifact(str(run_dir / name), "eval")
        for key in ("history", "metadata", "loss_lr_png"):
            mlflow.log_artifact(train[key], "train")
        if train_meta.get("replay"):
            mlflow.log_artifact(str(Path(train_meta["replay"]["dir"]) / "metadata.json"), "replay")
        return run.info.run_id
