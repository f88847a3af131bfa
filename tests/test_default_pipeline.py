"""The shipped default pipeline on the tiny model: replay on the real vLLM engine, fine-tuning on a real
Ray Train cluster, evaluation, the gate with its interpolation fit, and the registry."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect.testing.utilities import prefect_test_harness
from ray._common.utils import get_default_ray_temp_dir  # where a local cluster keeps its sessions

from tests.listeners import ListenerWatch

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parent.parent
RAY_ROOT = Path(get_default_ray_temp_dir())


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_the_default_config_runs_replay_on_vllm_training_on_ray_and_the_fit(tiny_overrides, tmp_path):
    from nofrog_flows.retrain import retrain_pipeline

    # configs/default.yaml itself, scaled down to the tiny model; everything the default turns on stays on.
    overrides = [o for o in tiny_overrides if not o.startswith("replay.backend")] + [
        "data.demo_people=8", "train.max_steps=3", "compute.cpus_per_worker=1", "compute.torch_threads=1",
        "train.finch.base_lr=1e-2", "train.finch.lr_max=3e-2",  # the tiny model must move to forget
        "replay.num_samples=8", "replay.max_new_tokens=6", "replay.vllm_kv_cache_gib=0.25",
        "eval.forgetting_tasks=[general_text]",
        # A gate the trained model fails, so the fit runs: with only its top layer training, the tiny
        # model's general-text score barely moves (it may even improve), so the gate reads the
        # interval's upper bound, which 3 steps lift over 0.0005. A mix a millionth of the way to
        # the candidate is the base to within 1e-6 and passes.
        "gate.max_forgetting=0.0005", "gate.decide_on=upper_bound", "gate.min_task_gain=-100",
        "gate.fit_coefficients=[0.5, 1e-6]",
    ]
    sessions_before = set(RAY_ROOT.glob("session_2*"))
    with ListenerWatch() as listeners:
        result = retrain_pipeline(str(ROOT / "configs" / "default.yaml"), overrides)
    # Ray's cluster, the vLLM engine and the test's Prefect server all listened, on 127.0.0.1 only.
    assert {"gcs_server", "raylet"} <= {name for _, _, name in listeners.seen}, listeners.seen
    assert not listeners.outside_loopback()
    run_dir = Path(result["run_dir"])
    train_meta = json.loads((run_dir / "train" / "metadata.json").read_text())
    assert train_meta["training"]["engine"] == "ray" and train_meta["training"]["world_size"] == 1
    replay_meta = json.loads((Path(train_meta["replay"]["dir"]) / "metadata.json").read_text())
    assert replay_meta["backend"] == "vllm"
    assert train_meta["config"]["train"]["schedule"] == "finch" and train_meta["config"]["replay"]["mix"]["ratio"] > 0
    history = [json.loads(line) for line in (run_dir / "train" / "history.jsonl").read_text().splitlines()]
    assert all(h["replay_nll"] > 0 for h in history)  # the replay objective trained,
    assert train_meta["config"]["replay"]["mix"]["kl_weight"] > 0  # with the replay KL the default adds
    assert min(h["replay_kl"] for h in history) > -1e-6 and history[-1]["replay_kl"] > 0  # (0 at the base)
    unfitted = json.loads((run_dir / "forgetting_unfitted.json").read_text())
    assert unfitted["forgetting_clipped_ci"][1] > 0.0005  # the candidate as trained failed the gate
    fit = json.loads((run_dir / "fit" / "fit.json").read_text())
    alphas = [p["alpha"] for p in fit["points"]]
    # The grid walked down from the candidate until the first pass, then the default's 2 bisection
    # steps inside the bracket between that pass and the failure above it (the candidate at 1).
    first_pass = next(i for i, p in enumerate(fit["points"]) if p["passed"])
    grid, refined = alphas[:first_pass + 1], alphas[first_pass + 1:]
    bracket_top = grid[-2] if first_pass else 1.0
    assert grid == [0.5, 1e-6][:first_pass + 1] and len(refined) == 2
    assert all(grid[-1] < a < bracket_top for a in refined)
    assert fit["chosen"] is not None
    assert (run_dir / "fit" / "fit.png").stat().st_size > 0
    registered = result["registered"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                          registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    version = client.get_model_version(registered["registered_model"], registered["version"])
    assert registered["promoted"] and version.tags["fitted"] == f"interpolate alpha={fit['chosen']['alpha']}"
    assert version.tags["gate"] == "passed"  # the label the registry reads to find earlier passing versions
    assert json.loads((run_dir / "forgetting.json").read_text())["forgetting_clipped_ci"][1] <= 0.0005
    summary = json.loads((run_dir / "run_summary.json").read_text())
    # The local cluster has no State API; Ray Train's placement-group cleaner would warn every second
    # into its worker's log (and from there onto the driver's stderr).
    worker_logs = [p for session in set(RAY_ROOT.glob("session_2*")) - sessions_before
                   for p in (session / "logs").glob("worker-*.err")]
    assert worker_logs  # the run started its own cluster
    assert not any("Failed to query Ray Train Controller" in p.read_text(errors="replace") for p in worker_logs)
    assert summary["gate"]["passed"] and set(summary["stage_seconds"]) >= {"replay", "fine_tune", "fit"}
    engines = summary["stage_engines"]  # what ran each heavy stage, on how many workers
    assert engines["fine_tune"] == {"engine": "ray_train", "workers": 1} and engines["replay"]["workers"] == 1
