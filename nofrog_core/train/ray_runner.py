"""Data-parallel training on Ray Train: one TorchTrainer, N workers, the same Trainer loop.

A local Ray cluster sized to the job starts by default, listening on 127.0.0.1 only
(ray_cluster.py); `compute.ray_address` (or $RAY_ADDRESS) connects to an existing one. Workers talk through gloo on
CPU and nccl on GPU. Checkpoints go through `ray.train.report`; after a worker
dies, `FailureConfig(max_failures)` restarts the group from the latest one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from .loop import NON_FINITE_MARK, NonFiniteLoss, SUMMARY_FILE

log = logging.getLogger(__name__)


# Ray Train's placement-group cleaner asks the State API every second whether the controller lives.
# The local cluster nofrog starts has no dashboard, so no State API: each check logs a warning (some
# 300 a run) that drowns the training's progress. That cluster ends with the run (ray.shutdown
# removes its placement groups), so the cleaner has nothing to do there and its warnings are quieted.
PLACEMENT_GROUP_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_placement_group_cleaner() -> None:
    """Ray's worker_process_setup_hook for the local cluster: runs in every worker process it starts."""
    logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).setLevel(logging.ERROR)


def _train_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    from .checkpoints import RayCheckpoints
    from .distributed import World
    from .inputs import load_worker_inputs
    from .loop import Trainer

    # Ray starts workers in its own session directory; the config's relative paths (data, replay,
    # model) mean the driver's directory, which a local cluster's worker can enter.
    if Path(loop_config["cwd"]).is_dir():
        os.chdir(loop_config["cwd"])
    config = loop_config["config"]
    torch.set_num_threads(config.compute.torch_threads or config.compute.cpus_per_worker)
    context = ray.train.get_context()
    world = World(context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device())
    inputs, _ = load_worker_inputs(config)
    # prepare_model moves the objective to the worker's device and wraps it in DDP.
    trainer = Trainer(config, inputs, Path(loop_config["out_dir"]), world, RayCheckpoints(),
                      wrap=ray.train.torch.prepare_model, hooks=loop_config["hooks"])
    trainer.run()


def train_with_ray(config, out_dir: Path, hooks=()) -> dict:
    """Runs the Trainer on `compute.num_workers` Ray workers; returns the main worker's summary."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ..ray_cluster import LoopbackTorchConfig, cluster, on_loopback_only

    compute = config.compute
    if not ray.is_initialized():  # else a caller's cluster (a test's, a notebook's): use it, leave it running
        with cluster(compute.ray_address, compute.num_workers * compute.cpus_per_worker,
                     f"{__name__}.quiet_placement_group_cleaner"):
            return train_with_ray(config, out_dir, hooks)
    # A URI (file://, s3://, gs://) goes to Ray Train as it is: its pyarrow filesystems write and read there.
    storage = compute.storage_path if compute.storage_path and "://" in compute.storage_path else \
        str(Path(compute.storage_path or out_dir / "ray").resolve())
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"config": config, "out_dir": str(Path(out_dir).resolve()), "hooks": list(hooks),
                           "cwd": os.getcwd()},
        scaling_config=ScalingConfig(num_workers=compute.num_workers, use_gpu=compute.use_gpu,
                                     resources_per_worker={"CPU": compute.cpus_per_worker}),
        # On a cluster of this machine alone, the workers meet on 127.0.0.1 (ray_cluster.py); else as Ray sets up.
        torch_config=(LoopbackTorchConfig if on_loopback_only() else TorchConfig)(
            backend="nccl" if compute.use_gpu else "gloo"),
        run_config=RunConfig(name="train", storage_path=storage,
                             failure_config=FailureConfig(max_failures=compute.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=config.train.checkpoints_to_keep)),
    )
    try:
        trainer.fit()
    except Exception as err:  # ray.train.TrainingFailedError, after max_failures restarts
        # A non-finite loss is the run's own doing, not the cluster's: report it as the user error it is.
        stopped = next((line for line in str(err).splitlines() if NON_FINITE_MARK in line), None)
        if stopped:
            raise NonFiniteLoss(stopped.split("NonFiniteLoss: ")[-1].strip()) from None
        raise RuntimeError(f"Ray Train failed after {compute.max_failures} restarts: {err}") from err
    return json.loads((Path(out_dir) / SUMMARY_FILE).read_text())
