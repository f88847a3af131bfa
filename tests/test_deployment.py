"""Integration: the project's deployments/prefect.yaml on a real Prefect server, run by a real
process worker, logging to a real MLflow server (sqlite backend), all on 127.0.0.1 (tiny model).
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import LENIENT_GATE

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def start(command: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, cwd=REPO)


@pytest.fixture
def servers(tmp_path):
    """A Prefect server and an MLflow server of their own; yields the environment that points at them."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect_port, mlflow_port = free_port(), free_port()
    processes = [
        start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
              tmp_path / "prefect-server.log", env),
        start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
               "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
               "--artifacts-destination", str(tmp_path / "mlartifacts"), "--workers", "1"],
              tmp_path / "mlflow-server.log", env),
    ]
    try:
        wait_for(f"http://127.0.0.1:{prefect_port}/api/health", processes[0], tmp_path / "prefect-server.log")
        wait_for(f"http://127.0.0.1:{mlflow_port}/health", processes[1], tmp_path / "mlflow-server.log")
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{prefect_port}/api"
        env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{mlflow_port}"
        yield env
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def prefect(env, *args, timeout=600) -> str:
    result = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_deployment_runs_through_a_process_worker_and_registers_a_version(servers, tiny_overrides, tmp_path):
    env = servers
    overrides = [o for o in tiny_overrides if not o.startswith("tracking.uri=")]  # the MLflow server instead
    overrides += ["train.max_steps=2", "train.schedule=constant", "train.lr=1e-3",
                  *LENIENT_GATE, "tracking.registered_model=it-model"]
    prefect(env, "work-pool", "create", "nofrog-process", "--type", "process")
    prefect(env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "nightly-retrain")

    def nightly_round() -> str:
        prefect(env, "deployment", "run", "nofrog-retrain/nightly-retrain",
                "--param", "config_path=null", "--param", f"overrides={json.dumps(overrides)}")
        # The worker picks up the run, executes it in a subprocess from the repository root, then exits.
        return prefect(env, "worker", "start", "--pool", "nofrog-process", "--run-once", timeout=900)

    worker_log = nightly_round()

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        runs = [run for run in client.read_flow_runs() if run.state and run.state.is_final()]
    assert [run.state.name for run in runs] == ["Completed"], worker_log[-3000:]
    assert runs[0].name.startswith("retrain-tiny-gemma3")  # run names carry model and data

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    [version] = client.search_model_versions("name='it-model'")
    assert version.tags["gate"] == "passed"
    logged = client.get_run(version.run_id).data.metrics
    assert float(version.tags["forgetting"]) == pytest.approx(logged["forgetting"], rel=1e-5)
    for tag in ("task_gain", "gate_reason", "base_model_hash", "data_hash", "prefect_flow_run_id"):
        assert version.tags[tag], tag
    assert version.tags["prefect_flow_run_id"] == str(runs[0].id)
    assert client.get_model_version_by_alias("it-model", "champion").version == version.version
    # The worker uploaded the model's weights through the MLflow server into its artifact store.
    assert list((tmp_path / "mlartifacts").rglob("model.safetensors"))

    # The next night fine-tunes the champion (the deployment's start_from, no setting here) and its report
    # judges round 1's held-out rows against the champion's own scores, in their own section.
    worker_log = nightly_round()
    second = max(client.search_model_versions("name='it-model'"), key=lambda v: int(v.version))
    assert second.version != version.version and second.tags["started_from"] == f"champion v{version.version}", \
        worker_log[-3000:]
    summary = max((tmp_path / "runs").glob("*/run_summary.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads((summary.parent / "forgetting.json").read_text())
    rounds = report["earlier_rounds"]
    assert rounds["protected"] and rounds["expected"] == [f"round_v{version.version}"]
    judged = [r["task"] for r in rounds["rounds"]] + [e["task"] for e in rounds["excluded"]]
    assert judged == [f"round_v{version.version}"]
    assert f"round_v{version.version}" in (summary.parent / "forgetting.md").read_text()
