"""Tests on the real base model (Gemma 3 270M from the bundled GGUF). Marked slow: minutes, not seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nofrog_core import models
from nofrog_core.config import load_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gemma():
    config = load_config(None)
    ref = models.resolve_model(config.model)
    model, tokenizer = models.load_model_and_tokenizer(ref, config.model)
    return ref, model, tokenizer


def test_converted_gemma_knows_water_boils_at_100(gemma):
    ref, model, tokenizer = gemma
    assert json.loads((ref.path / models.MARKER).read_text())["content_hash"] == ref.content_hash
    prompt = tokenizer("Water boils at a temperature of", return_tensors="pt")
    assert prompt.input_ids[0, 0] == tokenizer.bos_token_id  # the converted tokenizer adds BOS itself
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "100" in tokenizer.decode(output[0, prompt.input_ids.shape[1]:])


def test_quick_config_runs_end_to_end(tmp_path):
    """`nofrog run --config configs/quick.yaml` as a user runs it: Prefect ephemeral, sqlite MLflow."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    result = subprocess.run([sys.executable, "-m", "nofrog_flows.cli", "run", "--config", str(ROOT / "configs/quick.yaml")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run_dir] = (tmp_path / "runs").iterdir()
    report = json.loads((run_dir / "forgetting.json").read_text())
    [gain] = report["gain_tasks"]
    assert gain["metric"] == "exact_match" and report["task_gain"] > 0  # some fictitious facts were learned
    before_nll, after_nll = gain["secondary"]["answer_loss"]
    assert before_nll - after_nll > 1.0  # and the reference answers got far likelier
    assert [row["task"] for row in report["forgetting_tasks"]] == ["general_text"]
    assert report["forgetting_tasks"][0]["metric"] == "bits_per_byte" and len(report["forgetting_ci"]) == 2
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    [run] = client.search_runs([client.get_experiment_by_name("nofrog-quick").experiment_id])
    assert run.data.metrics["task_gain"] == pytest.approx(report["task_gain"])
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 6


# The default base model's scores on the selection part of the general suite's multiple-choice tasks
# (a third of the items, so a third of the time), recorded from `nofrog eval` on the bundled Gemma 3
# 270M (chance is 0.25; 0.33 for part of everyday_reasoning): a change to scoring, templates, the
# split or the model conversion shows up here.
RECORDED_BASE_ACC = {"world_knowledge": (120, 140), "arithmetic": (57, 142), "language": (43, 50),
                     "everyday_reasoning": (62, 110)}


@pytest.mark.slow
def test_general_suite_base_scores_are_recorded(tmp_path):
    from nofrog_core.evaluate.runner import SUITES_DIR
    from nofrog_core.evaluate.stage import run_evaluation
    from nofrog_core.splits import CHOOSE_ON_SELECTION

    config = load_config(None, [CHOOSE_ON_SELECTION])
    results = run_evaluation(config, tmp_path / "general.json", tasks=[str(SUITES_DIR / "general")])
    for task, (right, items) in RECORDED_BASE_ACC.items():
        assert len(results["samples"][task]["acc"]) == items, task
        acc = right / items
        assert results["results"][task]["acc,none"] == pytest.approx(acc, abs=1 / items + 1e-9), task  # one item
