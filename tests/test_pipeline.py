"""The whole pipeline through a real Prefect server and a real MLflow sqlite store (tiny model)."""

import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from nofrog_core.cli import app


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):  # a temporary Prefect server with its own database
        yield


def test_run_logs_to_mlflow_and_gate_can_be_reapplied(tiny_overrides, tmp_path):
    def as_sets(*overrides):
        return [a for o in overrides for a in ("--set", o)]

    sets = as_sets(*tiny_overrides, "train.max_steps=3", "train.schedule=constant", "train.lr=1e-3",
                   "train.lr_max=1e-3", "tracking.experiment=pipeline-test",
                   "train.replay_ratio=0.25", "replay.num_samples=8", "replay.max_new_tokens=6")
    runner = CliRunner()
    result = runner.invoke(app, ["run", *sets])
    assert result.exit_code == 0, result.output
    assert "aggregate forgetting" in result.output and "gate" in result.output

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pipeline-test")
    [run] = client.search_runs([experiment.experiment_id])
    metrics = run.data.metrics
    for key in ("forgetting", "task_gain", "before/demo_task/answer_loss", "after/general_text/word_perplexity"):
        assert key in metrics, key
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "train/replay_loss")) == 3  # the flow generated replay
    assert run.data.params["train.max_steps"] == "3"
    assert run.data.tags["gate"] in ("passed", "rejected") and run.data.tags["base_model_hash"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "eval", "train", "replay"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "eval")} >= {
        "eval/eval_base.json", "eval/eval_candidate.json", "eval/forgetting.json", "eval/forgetting.png"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "train")} >= {
        "train/history.jsonl", "train/loss_lr.png", "train/metadata.json"}

    gate = ["gate", "--run-id", run.info.run_id, *as_sets(*tiny_overrides)]
    lenient = runner.invoke(app, [*gate, *as_sets("gate.max_forgetting=100", "gate.min_task_gain=-100")])
    assert lenient.exit_code == 0, lenient.output
    assert "gate passed" in lenient.output
    assert client.get_run(run.info.run_id).data.tags["gate"] == "passed"
    strict = runner.invoke(app, [*gate, *as_sets("gate.min_task_gain=1000")])
    assert "gate rejected" in strict.output and "min_task_gain" in strict.output
