"""Sharding an audit over processes started by ``torchrun`` (gloo on CPU, nccl on GPU).

Without torchrun (no ``WORLD_SIZE`` in the environment) everything runs in one process and these
helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class World:
    """This process's place among the audit's processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (small Python objects only)."""
        if self.size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, obj)
        return gathered

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def is_main_process() -> bool:
    """True in the process that reports and writes shared files: rank 0 under torchrun, the only process otherwise."""
    # the same rule as join_world: RANK counts only in a world of more than one process
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0


def rank_device(device: str | torch.device) -> torch.device:
    """The device this process should use: ``cuda:LOCAL_RANK`` for CUDA under torchrun."""
    device = torch.device(device)
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def join_world(device: str | torch.device) -> tuple[World, torch.device]:
    """Join the torchrun process group if there is one; return the world and this rank's device.

    ``device`` is where the job's model is (``jobs.checks.job_device``). Under torchrun with CUDA
    each rank runs on ``cuda:LOCAL_RANK``; a model already placed on another GPU is a one-line
    ``ValueError`` naming ``model`` before any work (its weights and the rank's images would be
    on different devices).
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(device)
    if size <= 1:
        return World(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        own = rank_device(device)
        if device.index is not None and device != own:
            raise ValueError(f"model: on {device}, but this torchrun process (LOCAL_RANK={local_rank}) runs on {own}; "
                             "move each process's model to cuda:LOCAL_RANK before the job")
        device = own
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        # Ranks wait for each other at the end; a long timeout covers uneven shares of the work.
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=6))
    return World(rank, size, local_rank, owns), device
