"""MLflow logging: one MLflow run per pipeline run.

The tracking store is `tracking.uri`, else $MLFLOW_TRACKING_URI, else a
sqlite file `mlflow.db` in the working directory (MLflow 3 deprecates the
plain file store).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from .history import read_history
from .outputs import check_writable

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(tracking_config) -> str:
    return tracking_config.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


class TrackingUnreachable(ConnectionError):
    """The MLflow server does not answer; raised before any training starts."""


def check_reachable(tracking_config, timeout: float = 10.0, existing: bool = False) -> str:
    """Fails fast, naming the URI, when an MLflow server does not answer its health check; with
    `existing`, also when a sqlite store does not exist yet (reading a run from a store nobody wrote
    would only create an empty one)."""
    uri = tracking_uri(tracking_config)
    if existing and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingUnreachable(f"MLflow store {uri} does not exist; set tracking.uri / MLFLOW_TRACKING_URI "
                                  "to the store the run was logged to")
    if uri.startswith("sqlite:///"):
        check_writable(Path(uri.removeprefix("sqlite:///")))  # sqlite writes its journal beside the store
    if uri.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                response.read()
        except OSError as err:
            raise TrackingUnreachable(f"MLflow tracking server {uri} is unreachable ({err}); "
                                      "start it or set tracking.uri / MLFLOW_TRACKING_URI") from None
    return uri


@contextlib.contextmanager
def store_lock(tracking_config):
    """Exclusive use of a sqlite store's writes that must not interleave, across processes on this
    machine (`<store>.lock`, flock: released however the holder ends); nothing for a server, which
    serializes its own writes."""
    uri = tracking_uri(tracking_config)
    if not uri.startswith("sqlite:///"):
        yield
        return
    store = Path(uri.removeprefix("sqlite:///"))
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.with_name(store.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def setup(tracking_config) -> str:
    """Points MLflow at the store and the experiment. A new sqlite store's tables are created (and
    migrated) under its lock: MLflow creates them without one, and two runs starting at once on one
    new store collided in alembic's migrations (duplicate column, 'expected to match one row')."""
    uri = tracking_uri(tracking_config)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with store_lock(tracking_config):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # both stores, created once per process
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
        mlflow.set_experiment(tracking_config.experiment)  # get-or-create, which two creators would race
    return uri


def log_params(flat_config: dict) -> None:
    # MLflow caps a param value at 6000 characters; lists and paths stay far below.
    mlflow.log_params({k: "" if v is None else str(v) for k, v in flat_config.items()})


def log_history(history_path: Path, prefix: str = "train") -> int:
    """Per-step training metrics (loss, lr, ema_loss, grad_norm, ...) in one batch call."""
    run_id = mlflow.active_run().info.run_id
    metrics = []
    for record in read_history(history_path):
        step = int(record["step"])
        for key, value in record.items():
            if key in ("step", "epoch") or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            metrics.append(Metric(f"{prefix}/{key}", float(value), 0, step))
    client = MlflowClient()
    for start in range(0, len(metrics), 1000):  # MLflow's log_batch limit
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    return len(metrics)


def log_eval(results: dict, prefix: str) -> None:
    """results.<task>."<metric>,none" -> <prefix>/<task>/<metric>."""
    flat = {}
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                flat[f"{prefix}/{task}/{key.split(',')[0]}"] = float(value)
    mlflow.log_metrics(flat)


def report_metrics(report: dict) -> dict[str, float]:
    """The report's figures as flat MLflow metrics: aggregates with their intervals, per-task drops and gains."""
    flat = {"forgetting": report["forgetting"], "forgetting_clipped": report["forgetting_clipped"],
            "task_gain": report["task_gain"]}
    for key in ("forgetting_ci", "forgetting_clipped_ci", "task_gain_ci"):
        flat[f"{key}_low"], flat[f"{key}_high"] = report[key]
    for row in report["forgetting_tasks"]:
        flat[f"drop/{row['task']}"] = row["drop"]
    for row in report["gain_tasks"]:
        flat[f"gain/{row['task']}"] = row["gain"]
    return {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def log_report(report: dict, markdown: str) -> None:
    mlflow.log_metrics(report_metrics(report))
    mlflow.log_text(markdown, "eval/forgetting.md")


def log_training_run(run_name: str, tags: dict[str, str], params: dict, history: Path, evals: dict[str, dict],
                     artifacts: dict[str, list[Path]], report: dict | None = None, report_markdown: str = "",
                     metrics: dict[str, float] | None = None, texts: dict[str, str] | None = None) -> str:
    """One MLflow run for one trained model: params, per-step history, every evaluation (keyed by its
    metric prefix), the forgetting report, extra metrics, and artifacts by artifact directory.
    The pipeline and the benchmark both record their runs through here; returns the run id."""
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        log_params(params)
        log_history(history)
        for prefix, results in evals.items():
            log_eval(results, prefix)
        if report is not None:
            log_report(report, report_markdown)
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                                if isinstance(v, (int, float)) and math.isfinite(v)})
        for name, text in (texts or {}).items():
            mlflow.log_text(text, name)
        for directory, paths in artifacts.items():
            for path in paths:
                if Path(path).exists():
                    mlflow.log_artifact(str(path), directory or None)
        return run.info.run_id


def run_has_artifact(run_id: str, artifact_path: str) -> bool:
    """Whether a run logged `artifact_path` (a file path inside its artifacts)."""
    folder, _, name = artifact_path.rpartition("/")
    return any(f.path == artifact_path for f in MlflowClient().list_artifacts(run_id, folder or None))


def run_json_artifact(run_id: str, artifact_path: str) -> dict:
    """A JSON artifact of a run; a missing one names the run and the file."""
    import json
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=scratch)
        except (MlflowException, OSError) as err:
            raise ValueError(f"MLflow run {run_id} has no artifact {artifact_path} (was it a full pipeline run?): "
                             f"{str(err).splitlines()[0]}") from None
        return json.loads(Path(local).read_text())


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
