"""The reliability probe's security cases, each tried as the probe tried it (issue: reliability and
security, round two). A case here failed open before its fix."""

import pytest
from mlflow import MlflowClient
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from nofrog_flows.cli import app
from tests.conftest import LENIENT_GATE


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_the_cli_gate_applies_require_beat_champion_as_the_pipeline_does(prefect_server, tiny_overrides, tmp_path):
    from nofrog_flows.retrain import retrain_pipeline

    common = [*tiny_overrides, "train.max_steps=2", "train.schedule=constant", "train.lr=1e-3",
              "replay.mix.ratio=0.25", "replay.num_samples=8", "replay.max_new_tokens=6", *LENIENT_GATE]
    first = retrain_pipeline(None, common)
    assert first["registered"]["promoted"]
    # The same data, seed and settings train the same model again: it does not beat the champion.
    beat = [*common, "gate.require_beat_champion=true"]
    second = retrain_pipeline(None, beat)
    assert not second["gate"]["passed"] and "does not beat the champion" in second["gate"]["reason"]

    # Re-gated with the same settings, the CLI reaches the same verdict; the alias stays where it was.
    result = CliRunner().invoke(app, ["gate", "--run-id", second["mlflow_run_id"],
                                      *[a for o in beat for a in ("--set", o)]])
    assert result.exit_code == 0, result.output
    assert "gate rejected" in result.output and "does not beat the champion" in result.output, result.output
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = first["registered"]["registered_model"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == str(first["registered"]["version"])


@pytest.mark.parametrize("template, why", [
    ("{{ 'ab' * 200000000 }}{{question}}", "repeating a sequence of 2 200000000 times"),
    ("{{ 2 ** 999999999 }}{{question}}", "exponent of 999999999 is refused"),
    ("{% for i in range(99999) %}{{ question * 20 }}{% endfor %}", "rendered .* characters for one document"),
])
def test_a_task_template_cannot_allocate_without_bound(tmp_path, template, why):
    import time

    import yaml

    from nofrog_core.evaluate.yaml_tasks import TaskError, load_task
    from tests.test_yaml_tasks import mc_task

    mc_task(tmp_path / "suite")
    path = tmp_path / "suite" / "tiny_mc.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["doc_to_text"] = template
    path.write_text(yaml.safe_dump(raw))
    started = time.time()
    with pytest.raises(TaskError, match=f"tiny_mc.yaml: field 'doc_to_text' .*{why}"):
        load_task(path)
    assert time.time() - started < 30  # refused before the work, not after it


def routable_ipv4() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    import socket

    import psutil

    return next((a.address for addresses in psutil.net_if_addrs().values() for a in addresses
                 if a.family == socket.AF_INET and not a.address.startswith("127.")), None)


def refuses(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return True
    return False


def test_the_local_ray_cluster_listens_on_loopback_only():
    import os

    from ray._private import ray_constants

    from nofrog_core.ray_cluster import CLUSTER_SWITCH, local_cluster
    from tests.listeners import ListenerWatch

    ray = pytest.importorskip("ray")
    before = os.environ.get(CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    with ListenerWatch() as watch, local_cluster(1):
        assert ray.get(ray.remote(lambda: os.getpid()).remote()) != os.getpid()  # a worker ran
        watch.sample()
        # gRPC binds 127.0.0.1 as "::ffff:127.0.0.1" on a dual-stack socket: loopback all the same, and
        # the proof is behaviour: through this machine's routable address, every port refuses.
        routable = routable_ipv4()
        if routable:
            assert all(refuses(routable, port) for _, port, _ in watch.seen), watch.seen
    names = {name for _, _, name in watch.seen}
    assert {"gcs_server", "raylet"} <= names, watch.seen  # the cluster's servers were seen listening,
    assert not watch.outside_loopback()  # each on 127.0.0.1 only (Ray's default was every interface)
    assert (os.environ.get(CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER) == before  # restored for a later run


class WritesMarker:
    """A pickle payload: unpickling it creates `path` (what a planted cache record could run)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_cache_record_rewritten_as_pickle_is_refused_not_run(prefect_server, tiny_overrides, tmp_path):
    import base64
    import json

    import cloudpickle
    from prefect.results import ResultRecord
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from nofrog_flows.parts import replay_only
    from nofrog_tasks.json_results import ForeignCacheRecord

    storage = tmp_path / "prefect-storage"
    overrides = [*tiny_overrides, "replay.num_samples=4", "replay.max_new_tokens=4"]
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}):
        replay_only(None, overrides)
        (record_file,) = storage.glob("replay-*")
        record = json.loads(record_file.read_text())
        assert record["metadata"]["serializer"]["type"] == "json"

        marker = tmp_path / "payload-ran"
        record["metadata"]["serializer"] = {"type": "pickle", "picklelib": "cloudpickle", "picklelib_version": None}
        record["result"] = base64.b64encode(cloudpickle.dumps(WritesMarker(marker))).decode()
        record_file.write_text(json.dumps(record))
        with pytest.raises(ForeignCacheRecord, match=f"{record_file}.*'pickle'"):
            replay_only(None, overrides)
        assert not marker.exists()
        ResultRecord.deserialize(record_file.read_bytes())  # what Prefect's own cache read would have done
        assert marker.exists()


def test_a_failed_task_is_stored_as_json_not_pickle(prefect_server, tiny_overrides, tmp_path):
    import json

    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from nofrog_flows.parts import replay_only

    storage = tmp_path / "prefect-storage"
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}), pytest.raises(Exception):
        replay_only(None, [*tiny_overrides, f"model.name_or_path={tmp_path / 'no-such-model'}"])
    # The task's failure is a result record, the flow's is the bare value: both JSON (were cloudpickle).
    stored = [json.loads(path.read_text()) for path in storage.iterdir()]
    records = [s for s in stored if "metadata" in s]
    assert records and {r["metadata"]["serializer"]["type"] for r in records} == {"json"}
    values = [json.loads(r["result"]) for r in records] + [s for s in stored if "metadata" not in s]
    assert all(v["__exc_type__"] == "nofrog_core.errors.ModelError" for v in values), values
