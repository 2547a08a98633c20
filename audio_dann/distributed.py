"""PyTorch's own distributed engine, the few calls audio-dann needs.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_from_env` starts the process group from them
(NCCL on GPUs, gloo on CPUs). Outside ``torchrun`` everything is a no-op with
rank 0 of 1.
"""
from __future__ import annotations

import os
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

__all__ = ["launched_by_torchrun", "init_from_env", "shutdown", "rank_world", "shard_range", "barrier",
           "all_reduce_sum"]

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device_type: str) -> bool:
    """Start the process group when launched by ``torchrun``; returns True if this call started it."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return False
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def shutdown(started: bool) -> None:
    if started and dist.is_initialized():
        dist.destroy_process_group()


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of ``n`` items for ``rank``: concatenating ranks in order gives the input order."""
    per, extra = divmod(n, world)
    start = rank * per + min(rank, extra)
    return start, start + per + (1 if rank < extra else 0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum a few numbers over all ranks (identity outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()
