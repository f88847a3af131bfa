"""Replay generation on several engines: Ray tasks, each starting its own engine on one shard of the
sample indices.

Every sample's randomness is fixed by its index, not by the engine that draws it: vLLM seeds each
request from the run seed and the sample's index (`vllm_backend.sample_seed`), and the hf backend
seeds each batch from its index (`hf_backend.batch_seed`). The shards are contiguous runs of whole
hf batches, so both backends draw the same set with any number of engines (tests/test_replay.py
compares one engine with two on hf; on vLLM the same comparison was byte-identical, docs/pipeline.md). On a machine without `compute.ray_address`, the tasks run on a local
Ray cluster that listens on 127.0.0.1 only (ray_cluster.py); one engine per GPU node on a real
cluster is the same code with `cpus_per_engine` and a GPU resource.
"""

from __future__ import annotations

import math
import os
import time

from ..errors import ReplayError


def shards(count: int, batch_size: int, engines: int) -> list[range]:
    """`count` sample indices in at most `engines` contiguous shards of whole batches."""
    per_shard = math.ceil(math.ceil(count / batch_size) / engines) * batch_size
    return [range(start, min(count, start + per_shard)) for start in range(0, count, per_shard)]


def _engine_task(config, base, bos_token_id: int, count: int, shard: range, cwd: str):
    import torch

    from .stage import engine_samples

    os.chdir(cwd)  # the config's relative paths mean the driver's directory
    torch.set_num_threads(config.replay.cpus_per_engine)
    return engine_samples(config, base, bos_token_id, count, shard)


def generate_on_ray(config, base, bos_token_id: int, count: int) -> tuple[str, list, float]:
    """(backend, the `count` samples in index order, wall seconds) from `replay.engines` Ray tasks."""
    import ray

    from ..ray_cluster import cluster

    rc = config.replay
    if not ray.is_initialized():  # else a caller's cluster: use it, leave it running
        with cluster(config.compute.ray_address, rc.engines * rc.cpus_per_engine):
            return generate_on_ray(config, base, bos_token_id, count)
    task = ray.remote(num_cpus=rc.cpus_per_engine)(_engine_task)
    started = time.time()
    results = ray.get([task.remote(config, base, bos_token_id, count, shard, os.getcwd())
                       for shard in shards(count, rc.batch_size, rc.engines)])
    backends = sorted({backend for backend, _, _ in results})
    if len(backends) > 1:  # replay.backend auto: vLLM started on some engines only
        raise ReplayError(f"replay.engines={rc.engines}: the engines used different backends {backends}, whose "
                          "samples differ; set replay.backend to one of them")
    return backends[0], [sample for _, samples, _ in results for sample in samples], time.time() - started
