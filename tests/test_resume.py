"""A rerun continues: an export cut short is finished, an interrupted `nofrog run` resumes in its own
run directory from its last checkpoint and registers once (issue: reliability round two, 8 and 9)."""

import json

import pytest
from mlflow import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from nofrog_core.models import directory_hash
from nofrog_core.history import read_history
from nofrog_core.runs import SUMMARY_FILE, claim_run_dir
from nofrog_core.train import stage
from nofrog_core.train.stage import run_training
from tests.conftest import LENIENT_GATE
from tests.fault_injection import InterruptAt


def test_a_run_stopped_after_its_export_finishes_it_on_rerun(tiny_config, tmp_path, monkeypatch):
    config = tiny_config("train.max_steps=2")
    out = tmp_path / "train"
    real_write_json = stage.write_json

    def killed_at_metadata(path, data):
        if path.name == "metadata.json":
            raise SystemExit("killed")  # where a SIGKILL after the model's rename would stop the run
        return real_write_json(path, data)

    monkeypatch.setattr(stage, "write_json", killed_at_metadata)
    with pytest.raises(SystemExit):
        run_training(config, out)
    monkeypatch.undo()
    assert (out / "model").is_dir() and not (out / "metadata.json").exists()
    model, history = directory_hash(out / "model"), (out / "history.jsonl").read_text()

    result = run_training(config, out)  # was: "already holds a training run"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["steps"] == result["steps"] == 2 and meta["data"]["train_examples"] > 0
    # Finished, not retrained: the exported weights and the history are the ones the first run wrote.
    assert directory_hash(out / "model") == model and (out / "history.jsonl").read_text() == history
    with pytest.raises(FileExistsError, match="already holds a training run"):
        run_training(config, out)  # and now it is finished
    with pytest.raises(FileExistsError, match="unfinished run with another config"):
        (out / "metadata.json").unlink()
        run_training(tiny_config("train.max_steps=3"), out)  # another config never trains over a model


def test_a_rerun_resumes_the_latest_unfinished_run_of_its_request_unless_it_is_in_use(tmp_path):
    request, other = {"config": {"a": 1}, "data_hash": "x"}, {"config": {"a": 2}, "data_hash": "x"}
    with claim_run_dir(tmp_path, request) as (first, resumed):
        assert not resumed
        with claim_run_dir(tmp_path, request) as (second, resumed_while_in_use):
            assert second != first and not resumed_while_in_use  # a live run's directory is never shared
    with claim_run_dir(tmp_path, request) as (again, resumed):
        assert resumed and again == second  # the newest unfinished one
    with claim_run_dir(tmp_path, other) as (elsewhere, resumed):
        assert not resumed and elsewhere not in (first, second)  # another config is another run
    with claim_run_dir(tmp_path, request, resume=False) as (fresh, resumed):
        assert not resumed and fresh not in (first, second, elsewhere)
    for run_dir in (first, second, fresh):
        (run_dir / SUMMARY_FILE).write_text("{}")
    with claim_run_dir(tmp_path, request) as (latest, resumed):
        assert not resumed  # a finished run is never resumed


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_an_interrupted_run_resumes_from_its_checkpoint_and_registers_once(prefect_server, tiny_overrides,
                                                                           tmp_path, monkeypatch):
    from nofrog_flows.retrain import retrain_pipeline
    from nofrog_tasks import stages

    overrides = [*tiny_overrides, "train.max_steps=4", "train.checkpoint_every=2", "train.schedule=constant",
                 "train.lr=1e-3", *LENIENT_GATE]
    monkeypatch.setattr(stages, "run_training", lambda config, out_dir: run_training(config, out_dir,
                                                                                    hooks=[InterruptAt(3)]))
    with pytest.raises(KeyboardInterrupt):
        retrain_pipeline(None, overrides)  # Ctrl-C as step 3 begins
    monkeypatch.undo()
    (run_dir,) = [d for d in (tmp_path / "runs").iterdir() if d.name != "replay-cache"]
    assert not (run_dir / SUMMARY_FILE).exists()

    result = retrain_pipeline(None, overrides)  # the same command
    assert result["run_dir"] == str(run_dir)
    meta = json.loads((run_dir / "train" / "metadata.json").read_text())
    assert meta["training"]["resumed_from_step"] == 2  # from the checkpoint, not from step 1
    assert [h["step"] for h in read_history(run_dir / "train" / "history.jsonl")] == [1, 2, 3, 4]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions(f"name='{result['registered']['registered_model']}'")
    assert len(versions) == 1 and result["registered"]["promoted"]  # registered once

    fresh = retrain_pipeline(None, overrides, resume=False)  # and a finished run is never resumed
    assert fresh["run_dir"] != str(run_dir)
