"""torch.distributed for ``torchrun`` launches: one helper for training and analysis.

A process started by ``torchrun`` sees WORLD_SIZE > 1 and joins the default process group
(NCCL on CUDA, gloo on the CPU); any other process is a world of one, where every
collective below is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        """The process group of a ``torchrun`` launch (WORLD_SIZE > 1), else a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(
            rank=int(os.environ["RANK"]),
            world_size=world,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints and writes."""
        return self.rank == 0

    def init(self, device: torch.device) -> None:
        """Join the default process group (once) when launched by torchrun."""
        if self.enabled and not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> None:
        """In place: the sum (or ``max``) of ``tensor`` over the ranks."""
        if not self.enabled:
            return
        if op not in ("sum", "max"):
            raise ValueError(f"all_reduce op must be sum or max, got {op!r}")
        tdist.all_reduce(tensor, op=tdist.ReduceOp.MAX if op == "max" else tdist.ReduceOp.SUM)

    def gather_rows(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's CPU copy of ``tensor``, in rank order (a list of one when alone)."""
        if not self.enabled:
            return [tensor.cpu()]
        parts: list = [None] * self.world_size
        tdist.all_gather_object(parts, tensor.cpu())
        return parts
