"""A Ray cluster and a torch process group that listen on 127.0.0.1 only: what every stage that runs on
Ray (training, replay engines, evaluation workers) starts or joins.

The local cluster nofrog starts (no `compute.ray_address`) serves one machine, so nothing in it needs
a routable address. Three things would listen on every interface by default, each fixed here:

- **Ray's GCS, raylet and workers.** `_node_ip_address="127.0.0.1"` alone does not do it: Ray
  replaces a loopback node address with the machine's routable one
  (`services.resolve_ip_for_localhost`) unless multi-machine clusters are off, a switch
  (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`) that the driver reads when ray is imported and nowhere else
  (the node's processes get the address on their command line). `local_cluster` turns it off while
  the cluster runs and restores it after, for a later run that joins a real cluster.
- **torch's TCPStore**, the rendezvous the workers meet at, binds every interface whatever its host
  name. `LoopbackTorchConfig` sets the process group up over a store whose listening socket rank 0
  opened on 127.0.0.1 (`master_listen_fd`).
- **gloo's pairs** bind the address of the machine's host name unless told an interface:
  `GLOO_SOCKET_IFNAME` names the loopback one in every worker.

tests/test_security_probe.py and tests/test_default_pipeline.py check the listeners of a run.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import psutil
import ray
from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _TorchBackend

CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"


def loopback_interface() -> str:
    """The name of the interface that holds 127.0.0.1 ("lo" on Linux, "lo0" on macOS)."""
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == LOOPBACK for a in addresses):
            return name
    raise RuntimeError(f"no network interface holds {LOOPBACK}: a local Ray cluster needs the loopback interface")


@contextlib.contextmanager
def local_cluster(num_cpus: int, setup_hook: str | None = None):
    """A Ray cluster on this machine, listening on 127.0.0.1 only, for the length of the block; no
    dashboard. `setup_hook` ("module.function") runs in every worker process Ray starts."""
    from ray._private import ray_constants

    saved = os.environ.get(CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    runtime_env = {"env_vars": {"GLOO_SOCKET_IFNAME": loopback_interface()}}
    if setup_hook:
        runtime_env["worker_process_setup_hook"] = setup_hook
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK, runtime_env=runtime_env)
        yield
    finally:
        ray.shutdown()
        if saved[0] is None:
            os.environ.pop(CLUSTER_SWITCH, None)
        else:
            os.environ[CLUSTER_SWITCH] = saved[0]
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]


@contextlib.contextmanager
def connected(address: str):
    """The existing cluster at `address`, for the length of the block."""
    ray.init(address=address)
    try:
        yield
    finally:
        ray.shutdown()


def cluster(address: str | None, num_cpus: int, setup_hook: str | None = None):
    """The cluster a stage runs on: the one at `address` (compute.ray_address), else a local one of
    `num_cpus` on 127.0.0.1; a context manager for the length of the stage."""
    return connected(address) if address else local_cluster(num_cpus, setup_hook)


def on_loopback_only() -> bool:
    """Whether every live node of the connected cluster is this machine's loopback node."""
    return all(node["NodeManagerAddress"] == LOOPBACK for node in ray.nodes() if node["Alive"])


# Rank 0's listening socket, opened before any rank joins (so its port can be handed out) and owned
# by the store from then on; kept here so that it lives until the store takes it.
_store_socket: socket.socket | None = None


def _open_store_socket() -> int:
    global _store_socket
    _store_socket = socket.create_server((LOOPBACK, 0))
    return _store_socket.getsockname()[1]


def _join_process_group(backend: str, rank: int, world_size: int, port: int, timeout_s: int) -> None:
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    if rank == 0:
        store = dist.TCPStore(LOOPBACK, port, world_size, is_master=True, timeout=timeout,
                              wait_for_workers=False, master_listen_fd=_store_socket.fileno(), use_libuv=True)
    else:
        store = dist.TCPStore(LOOPBACK, port, world_size, is_master=False, timeout=timeout)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout)


class LoopbackTorchBackend(_TorchBackend):
    """Ray Train's torch backend, with the process group's store on rank 0's 127.0.0.1 socket."""

    def on_start(self, worker_group, backend_config):
        backend = backend_config.backend or "gloo"
        port = worker_group.execute_single(0, _open_store_socket)
        if not isinstance(worker_group, V1WorkerGroup):  # as Ray's own on_start: LOCAL_RANK, RANK, ...
            worker_group.execute(_set_torch_distributed_env_vars)
        ray.get([worker_group.execute_single_async(rank, _join_process_group, backend, rank,
                                                   world_size=len(worker_group), port=port,
                                                   timeout_s=backend_config.timeout_s)
                 for rank in range(len(worker_group))])


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """A TorchConfig whose workers meet on 127.0.0.1: for the cluster `local_cluster` starts."""

    @property
    def backend_cls(self):
        return LoopbackTorchBackend
