"""Two `nofrog run` at once on one sqlite MLflow store and one output directory (issue: reliability
round two, 16): both finish, each in its own run directory, each registered once."""

import os
import subprocess
import sys

from mlflow import MlflowClient

from nofrog_core.runs import SUMMARY_FILE
from tests.conftest import LENIENT_GATE


def test_two_runs_at_once_on_one_new_sqlite_store_both_finish(tiny_overrides, tmp_path):
    sets = [x for o in [*tiny_overrides, "train.max_steps=2", *LENIENT_GATE] for x in ("--set", o)]
    nofrog = [sys.executable, "-m", "nofrog_flows.cli", "run", *sets]
    # The user's Prefect home, shared as it would be; the store does not exist yet: both create it.
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    runs = [subprocess.Popen(nofrog, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-4000:]
    # The second did not take the first's (unfinished) directory: two run directories, both finished.
    assert len(list((tmp_path / "runs").glob(f"*/{SUMMARY_FILE}"))) == 2
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    (model,) = client.search_registered_models()
    assert sorted(int(v.version) for v in client.search_model_versions(f"name='{model.name}'")) == [1, 2]
