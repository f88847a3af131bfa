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
