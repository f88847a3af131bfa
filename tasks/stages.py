"""One Prefect task per pipeline stage. No ML logic here: each calls nofrog_core."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task

from nofrog_core import models
from nofrog_core.evaluate.forgetting import forgetting_report, plot_report
from nofrog_core.evaluate.stage import run_evaluation
from nofrog_core.registry import decide
from nofrog_core.replay.stage import run_replay
from nofrog_core.train.stage import run_training


@task(name="prepare-base-model")
def prepare_base_model(config) -> dict:
    return models.resolve_model(config.model).as_dict()


@task(name="generate-replay")
def generate_replay(config, out_dir: Path) -> str:
    run_replay(config, out_dir)
    return str(out_dir)


@task(name="evaluate")
def evaluate(config, out_file: Path, model: str | None = None) -> dict:
    return run_evaluation(config, out_file, model=model)


@task(name="fine-tune")
def fine_tune(config, out_dir: Path) -> dict:
    return run_training(config, out_dir)


@task(name="forgetting-report")
def compare(before: dict, after: dict, out_file: Path) -> dict:
    report = forgetting_report(before, after)
    out_file.write_text(json.dumps(report, indent=2) + "\n")
    plot_report(report, out_file.with_suffix(".png"))
    return report


@task(name="gate")
def gate(report: dict, config) -> dict:
    decision = decide(report["forgetting"], report["task_gain"], config.gate)
    return {"passed": decision.passed, "label": decision.label, "reason": decision.reason}
