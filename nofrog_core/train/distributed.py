"""The few collective operations the training loop needs, for one process or many.

In-process training is a world of one; under Ray Train every worker is one
rank of a torch.distributed group (gloo on CPU, nccl on GPU) that Ray set up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over all workers (every worker gets the same numbers)."""
        if self.size == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def shard(self, items: list) -> list:
        """This worker's share of a list: every size-th item from its rank."""
        return items[self.rank :: self.size]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def in_process_world(use_gpu: bool) -> World:
    device = torch.device("cuda") if use_gpu and torch.cuda.is_available() else torch.device("cpu")
    return World(device=device)
