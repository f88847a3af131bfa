"""The whole pipeline through a real Prefect server and a real MLflow sqlite store (tiny model)."""

import json
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from nofrog_flows.cli import app
from tests.conftest import LENIENT_GATE, SCALED_AGGREGATE


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):  # a temporary Prefect server with its own database
        yield


def store_client(tmp_path) -> MlflowClient:
    """The test's sqlite store; its registry named too (MLflow keeps one registry URI per process,
    which an earlier in-process command set)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def replay_task_states() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="generate-replay")),
                                     sort=TaskRunSort.EXPECTED_START_TIME_ASC)
    return [run.state.name for run in runs]


def test_rounds_register_versions_and_only_a_passing_one_becomes_champion(tiny_overrides, tmp_path):
    from nofrog_flows.retrain import retrain_pipeline  # the flow itself: CliRunner's captured stdout closes between runs

    def run(*overrides):
        return retrain_pipeline(None, [*tiny_overrides, "train.max_steps=2", "train.schedule=constant",
                                       "train.lr=1e-3", "replay.mix.ratio=0.25",
                                       "replay.num_samples=8", "replay.max_new_tokens=6", *overrides])

    lenient = LENIENT_GATE
    first = run(*lenient)
    second = run(*LENIENT_GATE, "gate.min_task_gain=1000")
    assert first["registered"]["promoted"] and not second["registered"]["promoted"]

    client = store_client(tmp_path)
    [model] = client.search_registered_models()
    v1, v2 = sorted(client.search_model_versions(f"name='{model.name}'"), key=lambda v: int(v.version))
    for version in (v1, v2):
        for tag in ("forgetting", "task_gain", "gate", "gate_reason", "base_model_hash", "data_hash",
                    "prefect_flow_run_id"):
            assert version.tags.get(tag), (version.version, tag)
    assert (v1.tags["gate"], v2.tags["gate"]) == ("passed", "rejected")
    assert "min_task_gain" in v2.tags["gate_reason"]
    assert client.get_model_version_by_alias(model.name, "champion").version == v1.version
    # Each version keeps what its round taught: the held-out rows and its scores on them.
    assert v1.tags["round_record"] == "round/round.json"
    record = json.loads(Path(client.download_artifacts(v1.run_id, "round/round.json", str(tmp_path))).read_text())
    assert record["task"] == "heldout_answers" and record["samples"] and len(record["item_ids"]) == len(
        record["samples"]["exact_match"])
    rows = Path(client.download_artifacts(v1.run_id, "round/heldout.jsonl", str(tmp_path))).read_text().splitlines()
    assert len(rows) >= len(record["item_ids"])  # the rows as they were (the record scores the test part)

    # The second run reused the first run's replay samples (same base model, settings and seed).
    assert len(list((tmp_path / "runs" / "replay-cache").iterdir())) == 1
    assert replay_task_states()[-2:] == ["Completed", "Cached"]  # Prefect served the second from its cache

    # A third round starts from the champion; the gate still measures against the base model.
    third = run(*lenient, "model.start_from=champion")
    v3 = max(client.search_model_versions(f"name='{model.name}'"), key=lambda v: int(v.version))
    assert v3.tags["started_from"] == f"champion v{v1.version}"
    assert third["champion_report"] is not None
    run_dir = third["run_dir"]
    for name in ("eval_base.json", "eval_champion.json", "forgetting_vs_champion.json"):
        assert (tmp_path / "runs" / run_dir.split("/")[-1] / name).exists(), name
    assert client.get_model_version_by_alias(model.name, "champion").version == v3.version
    # It also protected what the champion's round taught: round 1's rows, scored by the champion and the
    # candidate on the same items (the tiny model answers none of them, so there is nothing to keep).
    rounds = third["report"]["earlier_rounds"]
    assert rounds["protected"] and rounds["expected"] == [f"round_v{v1.version}"]
    champion_eval = json.loads((tmp_path / "runs" / run_dir.split("/")[-1] / "eval_champion.json").read_text())
    assert champion_eval["task_info"][f"round_v{v1.version}"]["role"] == "round"
    assert set(record["item_ids"]) <= set(champion_eval["item_ids"][f"round_v{v1.version}"])  # round 1's rows
    assert "earlier rounds" in third["gate"]["reason"] or rounds["excluded"]

    # A fourth round, from v3: the lineage is v1 then v3 (the rejected v2 is no part of it).
    fourth = run(*lenient, "model.start_from=champion")
    assert fourth["report"]["earlier_rounds"]["expected"] == [f"round_v{v1.version}", f"round_v{v3.version}"]



def test_an_unreachable_mlflow_server_fails_the_run_before_any_training(tiny_overrides, tmp_path):
    import socket

    from nofrog_flows.retrain import retrain_pipeline
    from nofrog_core.tracking import TrackingUnreachable

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(TrackingUnreachable, match=uri):
        retrain_pipeline(None, [*tiny_overrides, f"tracking.uri={uri}"])
    assert not (tmp_path / "runs").exists()  # nothing was started



def test_a_failed_stage_fails_the_flow_logs_what_exists_and_registers_nothing(tiny_overrides, tmp_path):
    from nofrog_flows.retrain import retrain_pipeline

    # freeze_bottom passes the config check (a fraction) but a LoRA target that matches no module fails
    # the fine-tune stage, after the base model was evaluated.
    with pytest.raises(ValueError, match="target_modules"):
        retrain_pipeline(None, [*tiny_overrides, "train.max_steps=1", "train.lora.enabled=true",
                                "train.lora.target_modules=[no_such_proj]"])
    client = store_client(tmp_path)
    [run] = client.search_runs([client.get_experiment_by_name("nofrog").experiment_id])
    assert run.data.tags["status"] == "failed" and run.data.tags["failed_stage"] == "fine_tune"
    assert "target_modules" in run.data.tags["error"]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "partial")} == {"partial/eval_base.json"}
    assert client.search_registered_models() == []


# Runs last: Prefect's console log handler keeps CliRunner's captured stream, which closes after the
# invocation, so flows run in this process after a CliRunner invocation fail on logging.
def test_run_logs_to_mlflow_and_gate_can_be_reapplied(tiny_overrides, tmp_path):
    def as_sets(*overrides):
        return [a for o in overrides for a in ("--set", o)]

    sets = as_sets(*tiny_overrides, "train.max_steps=3", "train.schedule=constant", "train.lr=1e-3", "tracking.experiment=pipeline-test",
                   "replay.mix.ratio=0.25", "replay.num_samples=8", "replay.max_new_tokens=6")
    runner = CliRunner()
    result = runner.invoke(app, ["run", *sets])
    assert result.exit_code == 0, result.output
    assert SCALED_AGGREGATE in result.output and "gate" in result.output

    client = store_client(tmp_path)
    experiment = client.get_experiment_by_name("pipeline-test")
    [run] = client.search_runs([experiment.experiment_id])
    metrics = run.data.metrics
    for key in ("forgetting", "forgetting_clipped", "forgetting_clipped_ci_high", "task_gain", "task_gain_ci_low",
                "drop/general_text", "gain/heldout_answers", "before/heldout_answers/answer_loss",
                "after/general_text/bits_per_byte"):
        assert key in metrics, key
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "train/replay_nll")) == 3  # the flow generated replay
    assert run.data.params["train.max_steps"] == "3"
    assert run.data.tags["gate"] in ("passed", "rejected") and run.data.tags["base_model_hash"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "eval", "train", "replay"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "eval")} >= {
        "eval/eval_base.json", "eval/eval_candidate.json", "eval/forgetting.json", "eval/forgetting.png",
        "eval/forgetting.md"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "train")} >= {
        "train/history.jsonl", "train/loss_lr.png", "train/metadata.json"}

    gate = ["gate", "--run-id", run.info.run_id, *as_sets(*tiny_overrides)]
    lenient = runner.invoke(app, [*gate, *as_sets(*LENIENT_GATE)])
    assert lenient.exit_code == 0, lenient.output
    assert "gate passed" in lenient.output
    assert client.get_run(run.info.run_id).data.tags["gate"] == "passed"
    [version] = client.search_model_versions(f"run_id='{run.info.run_id}'")
    assert client.get_model_version(version.name, version.version).tags["gate"] == "passed"
    assert client.get_model_version_by_alias(version.name, "champion").version == version.version
    # Re-gating recomputes the report from the logged per-item scores: the same figures as the run's.
    recorded = json.loads((next((tmp_path / "runs").glob("*/forgetting.json"))).read_text())
    assert f"{recorded['forgetting_clipped']:.4f}" in lenient.output
    upper = runner.invoke(app, [*gate, *as_sets(*LENIENT_GATE, "gate.decide_on=upper_bound")])
    assert "gate passed: upper end of the forgetting interval" in upper.output, upper.output
    strict = runner.invoke(app, [*gate, *as_sets(*LENIENT_GATE, "gate.min_task_gain=1000")])
    assert "gate rejected" in strict.output and "min_task_gain" in strict.output
    # A rejected version never keeps the alias: with no earlier passing version, the alias is removed.
    assert "removed" in strict.output, strict.output
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(version.name, "champion")
