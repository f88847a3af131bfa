"""Ray Train on a real local Ray cluster: two CPU workers (gloo), DDP, checkpoints, a killed worker."""

import json
import math
import os

import pytest

from nofrog_core.history import read_history
from nofrog_core.ray_cluster import local_cluster
from nofrog_core.train.stage import run_training
from tests import fault_injection
from tests.fault_injection import KillWorkerAt
from tests.listeners import ListenerWatch

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    with local_cluster(2):
        # The workers unpickle the test's hooks without importing the tests package.
        ray.cloudpickle.register_pickle_by_value(fault_injection)
        yield


def two_workers(tiny_config, *overrides):
    return tiny_config("compute.num_workers=2", "compute.cpus_per_worker=1", "compute.torch_threads=1", *overrides)


def test_two_workers_read_one_loss_and_set_identical_finch_lrs(ray_cluster, tiny_config, tmp_path):
    config = two_workers(tiny_config, "train.schedule=finch", "train.finch.base_lr=1e-3", "train.finch.lr_max=2e-3",
                         "train.max_steps=4", "train.checkpoint_every=0")
    with ListenerWatch() as listeners:
        out = run_training(config, tmp_path / "train")
    # The workers' rendezvous store and gloo pairs, like the cluster's servers, on 127.0.0.1 only.
    assert "ray::RayTrainWorker" in {name for _, _, name in listeners.seen}, listeners.seen
    assert not listeners.outside_loopback()
    history = read_history(out["history"])
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    for h in history:
        assert h["lr"] == pytest.approx(min(1e-3 / math.sqrt(h["ema_loss"]), 2e-3), rel=1e-12)
    ranks = [read_history(tmp_path / "train" / "workers" / f"train-rank{r}.jsonl") for r in (0, 1)]
    assert [w["lr"] for w in ranks[0]] == [w["lr"] for w in ranks[1]] == [h["lr"] for h in history]
    assert [w["loss"] for w in ranks[0]] == [w["loss"] for w in ranks[1]]  # the all-reduced L_t
    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    assert meta["training"]["world_size"] == 2 and meta["training"]["engine"] == "ray"
    from transformers import AutoModelForCausalLM
    assert AutoModelForCausalLM.from_pretrained(out["model_dir"]) is not None


def test_a_killed_worker_resumes_from_its_checkpoint_and_finishes(ray_cluster, tiny_config, tmp_path):
    # The checkpoints live on "remote" storage: a URI to another directory, written and read through
    # pyarrow's filesystem as an s3:// or gs:// one would be.
    remote = tmp_path / "remote"
    config = two_workers(tiny_config, "train.schedule=finch", "train.finch.base_lr=1e-3", "train.finch.lr_max=2e-3",
                         "train.max_steps=8", "train.checkpoint_every=2", "compute.max_failures=1",
                         f"compute.storage_path=file://{remote}")
    marker = tmp_path / "killed"
    out = run_training(config, tmp_path / "train", hooks=[KillWorkerAt(rank=1, step=6, marker=marker)])
    assert marker.exists()  # the worker really died at step 6
    assert list(remote.rglob("step-*")), "no checkpoint on the remote storage"
    assert not (tmp_path / "train" / "ray").exists()  # nothing went to the local default
    history = read_history(out["history"])
    assert [h["step"] for h in history] == list(range(1, 9))  # every step once, up to the configured end
    meta = json.loads((tmp_path / "train" / "metadata.json").read_text())
    resumed = meta["training"]["resumed_from_step"]
    assert resumed in (2, 4)  # from a checkpoint, not from scratch
    ema = [h["ema_loss"] for h in history]
    for before, after in zip(history, history[1:]):  # FINCH state came back with the checkpoint
        assert after["ema_loss"] == pytest.approx(0.9 * before["ema_loss"] + 0.1 * after["loss"], rel=1e-9)
    assert all(math.isfinite(e) for e in ema)


def test_a_non_finite_loss_under_ray_is_the_same_clear_error(ray_cluster, tiny_config, tmp_path):
    from nofrog_core.train.loop import NonFiniteLoss

    config = two_workers(tiny_config, "train.schedule=constant", "train.lr=1e30",
                         "train.grad_clip=null", "train.max_steps=6", "compute.max_failures=0")
    with pytest.raises(NonFiniteLoss, match=r"training stopped at step \d: loss .* is not finite"):
        run_training(config, tmp_path / "train")
    assert not (tmp_path / "train" / "model").exists()


def test_relative_paths_in_the_config_mean_the_driver_directory(ray_cluster, tiny_config, tiny_model_dir, tmp_path,
                                                                monkeypatch):
    # Ray starts its workers in a session directory of its own; a worker must still find what a
    # relative path names from where the user ran nofrog (a fresh clone's `runs/replay-cache/...`).
    monkeypatch.chdir(tmp_path)
    relative_model = os.path.relpath(tiny_model_dir, tmp_path)
    config = two_workers(tiny_config, f"model.name_or_path={relative_model}", "train.max_steps=1",
                         "train.checkpoint_every=0")
    out = run_training(config, tmp_path / "train")
    assert [h["step"] for h in read_history(out["history"])] == [1]


def test_two_workers_train_exactly_what_one_worker_trains_at_twice_the_batch(ray_cluster, tiny_config, tmp_path):
    common = ("train.schedule=finch", "train.finch.base_lr=1e-3", "train.finch.lr_max=2e-3", "train.max_steps=4",
              "train.checkpoint_every=0", "train.finch.init_batches=2")
    one = run_training(tiny_config(*common, "train.batch_size=8", "compute.num_workers=0"), tmp_path / "one")
    two = run_training(two_workers(tiny_config, *common, "train.batch_size=4"), tmp_path / "two")
    alone, together = read_history(one["history"]), read_history(two["history"])
    assert [h["step"] for h in together] == [1, 2, 3, 4]
    # The same rows each step (every worker takes its share of one global batch), the same ema_0 and
    # the same all-reduced loss: the same LRs and losses to float tolerance.
    for a, b in zip(alone, together):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-5)
