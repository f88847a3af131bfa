"""Evaluation on several workers: the tasks are dealt to Ray tasks, each loading the model and scoring
its share, and the results are merged in the order one process scores them.

A task's items stay together on one worker (a task's aggregate and its per-item scores are computed
where its items are), so every per-item score, id and part is the one a single process computes, and
the merged results JSON equals the single-process one except for the timings
(tests/test_evaluate.py compares them). Tasks are dealt largest first to the least-loaded worker by
item count; a built-in task counts as a typical one.
"""

from __future__ import annotations

import os
import time

# The results' per-task sections, merged in the single-process order.
PER_TASK = ("results", "versions", "configs", "n-samples", "task_info", "samples", "item_ids", "item_parts")
TYPICAL_TASK_ITEMS = 100


def deal(tasks: list[tuple[str, int | None]], workers: int) -> list[set[str]]:
    """Task names dealt to at most `workers` shares of similar item counts (largest first, to the lightest)."""
    loads, shares = [0] * min(workers, len(tasks)), [set() for _ in range(min(workers, len(tasks)))]
    for name, size in sorted(tasks, key=lambda t: -(t[1] or TYPICAL_TASK_ITEMS)):
        lightest = loads.index(min(loads))
        loads[lightest] += size or TYPICAL_TASK_ITEMS
        shares[lightest].add(name)
    return shares


def merge(order: list[str], parts: list[dict], seconds: float) -> dict:
    """One results dict from the workers' results, tasks in `order`."""
    merged = {key: {} for key in PER_TASK}
    for name in order:
        part = next(p for p in parts if name in p["results"])
        for key in PER_TASK:
            merged[key][name] = part[key][name]
    merged["config"] = {**parts[0]["config"], "workers": len(parts)}
    merged["total_evaluation_time_seconds"] = round(seconds, 2)
    return merged


def _worker(model_ref, config, tasks, part: str, only: set[str], cwd: str) -> dict:
    import torch

    from .runner import evaluate_model

    os.chdir(cwd)  # the config's relative paths mean the driver's directory
    torch.set_num_threads(config.eval.cpus_per_worker)
    return evaluate_model(model_ref, config, tasks, part, only=only)


def evaluate_on_ray(model_ref, config, tasks: list[str] | None, part: str) -> dict:
    """`evaluate_model` on `eval.workers` Ray tasks (compute.ray_address, else a local cluster on 127.0.0.1)."""
    import ray

    from ..ray_cluster import cluster
    from .runner import evaluation_tasks

    ec = config.eval
    if not ray.is_initialized():  # else a caller's cluster: use it, leave it running
        with cluster(config.compute.ray_address, ec.workers * ec.cpus_per_worker):
            return evaluate_on_ray(model_ref, config, tasks, part)
    planned = evaluation_tasks(config, tasks)
    worker = ray.remote(num_cpus=ec.cpus_per_worker, num_gpus=1 if config.compute.use_gpu else 0)(_worker)
    started = time.time()
    parts = ray.get([worker.remote(model_ref, config, tasks, part, share, os.getcwd())
                     for share in deal(planned, ec.workers)])
    return merge([name for name, _ in planned], parts, time.time() - started)
