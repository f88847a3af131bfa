"""The `nofrog` command as a user types it (in-process through typer's runner)."""

import json

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from nofrog_flows.cli import app
from tests.conftest import SCALED_AGGREGATE

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_every_subcommand():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "replay", "train", "eval", "gate", "config", "demo-data"):
        assert command in result.output


def test_config_show_prints_the_resolved_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  finch:\n    base_lr: 3.0e-5\n")
    result = invoke("config", "show", "--config", path, "--set", "train.max_steps=9")
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["train"]["finch"]["base_lr"] == 3e-5 and shown["train"]["max_steps"] == 9 and shown["gate"]["max_forgetting"] == 0.03


def test_bad_config_fails_before_work_with_the_key_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 3.0e-5\nbogus_section:\n  knob: 1\n")
    result = invoke("train", "--config", path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "bogus_section" in result.output
    assert not (tmp_path / "out").exists()
    result = invoke("config", "show", "--set", "train.finch.base_lr=-1")
    assert result.exit_code == 2 and "train.finch.base_lr" in result.output and "greater than 0" in result.output


def test_demo_data_writes_the_task(tmp_path):
    result = invoke("demo-data", "--out", tmp_path / "demo", "--set", "data.demo_people=4")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "demo" / "train.jsonl").read_text().splitlines()
    assert len(rows) == 12 and set(json.loads(rows[0])) >= {"prompt", "completion"}


def test_train_then_eval_with_baseline_reports_forgetting(tiny_overrides, tmp_path):
    sets = [a for o in tiny_overrides for a in ("--set", o)]
    base = invoke("eval", *sets, "--out", tmp_path / "base.json")
    assert base.exit_code == 0, base.output
    trained = invoke("train", *sets, "--set", "train.max_steps=2", "--out", tmp_path / "train")
    assert trained.exit_code == 0, trained.output
    after = invoke("eval", *sets, "--model", tmp_path / "train" / "model", "--out", tmp_path / "after.json",
                   "--baseline", tmp_path / "base.json")
    assert after.exit_code == 0, after.output
    assert SCALED_AGGREGATE in after.output
    assert "| general_text | forgetting | bits_per_byte |" in after.output
    assert (tmp_path / "after_forgetting.json").is_file() and (tmp_path / "after_forgetting.png").is_file()
    again = invoke("eval", *sets, "--out", tmp_path / "base.json")
    assert again.exit_code == 2 and "already exists" in again.output


def test_gate_on_a_run_that_does_not_exist_is_one_clear_line(tmp_path):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    missing = invoke("gate", "--run-id", "0123456789abcdef", "--set", f"tracking.uri={store}")
    assert missing.exit_code == 2 and f"MLflow store {store} does not exist" in missing.output
    assert not (tmp_path / "m.db").exists()
    mlflow.MlflowClient(tracking_uri=store).search_experiments()  # the store now exists, without that run
    result = invoke("gate", "--run-id", "0123456789abcdef", "--set", f"tracking.uri={store}")
    assert result.exit_code == 2
    assert "MLflow run 0123456789abcdef has no artifact eval/eval_base.json" in result.output
    assert "Traceback" not in result.output


def test_eval_refuses_a_baseline_that_is_not_results_json_before_scoring(tmp_path):
    (tmp_path / "base.json").write_text("not json")
    result = invoke("eval", "--out", tmp_path / "after.json", "--baseline", tmp_path / "base.json")
    assert result.exit_code == 2 and "--baseline" in result.output and "is not a results JSON" in result.output
    assert not (tmp_path / "after.json").exists()


def test_serve_without_a_prefect_server_exits_saying_how_to_start_one(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        result = invoke("serve", "--cron", "0 2 * * *")
    assert result.exit_code == 2
    assert "needs a Prefect server" in result.output and "prefect server start" in result.output


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["train", "--help"]])
def test_help_answers_without_importing_torch_mlflow_or_prefect(args):
    import subprocess
    import sys

    code = ("import sys\nsys.argv = ['nofrog', *sys.argv[1:]]\nfrom nofrog_flows.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'mlflow', 'prefect') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert "Usage" in result.stdout, result.stdout + result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-500:]
