"""The retraining pipeline as a Prefect flow.

    base model -> baseline eval -> [context-free replay] -> fine-tune -> candidate eval
        -> forgetting report -> gate -> MLflow

Stages talk through files in one run directory; each can be rerun alone from
the CLI on those files.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from nofrog_core.config import load_config
from tasks import stages
from tasks.tracking import log_run


def new_run_dir(output_dir: Path) -> Path:
    run_dir = Path(output_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    return run_dir


@flow(name="nofrog-retrain", log_prints=True)
def retrain_pipeline(config_path: str | None = None, overrides: list[str] | None = None) -> dict:
    config = load_config(config_path, overrides)  # fails on bad config before any work
    logger = get_run_logger()
    run_dir = new_run_dir(config.tracking.output_dir)
    logger.info("run directory: %s", run_dir)
    base = stages.prepare_base_model(config)
    before = stages.evaluate(config, run_dir / "eval_base.json")
    if config.train.replay_ratio > 0 and config.train.replay_dir is None:
        replay_dir = stages.generate_replay(config, run_dir / "replay")
        config = config.model_copy(update={"train": config.train.model_copy(update={"replay_dir": Path(replay_dir)})})
    train = stages.fine_tune(config, run_dir / "train")
    after = stages.evaluate(config, run_dir / "eval_candidate.json", model=train["model_dir"])
    report = stages.compare(before, after, run_dir / "forgetting.json")
    decision = stages.gate(report, config)
    run_id = log_run(config, run_dir, base, train, before, after, report, decision, flow_run.get_id())
    return {"run_dir": str(run_dir), "mlflow_run_id": run_id, "base_model": base, "report": report,
            "gate": decision, "train_steps": train["steps"]}
