"""Where and how the work runs: device choice, autocast, seeds, and torchrun (DDP) helpers.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_from_env` starts the process group from them
(NCCL on GPUs, gloo on CPUs). Outside ``torchrun`` everything is a no-op with
rank 0 of 1.
"""

from __future__ import annotations

import contextlib
import os
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .errors import OptionError

__all__ = [
    "resolve_device",
    "autocast_for",
    "check_amp",
    "derive_seed",
    "seed_everything",
    "cpu_cores",
    "steady_heap",
    "is_main_process",
    "launched_by_torchrun",
    "init_from_env",
    "shutdown",
    "rank_world",
    "shard_range",
    "barrier",
    "all_reduce_sum",
]


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; asking for a missing device is an error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"--device {name}: no CUDA device is available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise OptionError(f"--device {name}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


def check_amp(amp: str) -> None:
    """Inference autocast: ``off``, ``bf16`` or ``fp16`` (training also accepts ``auto``)."""
    if amp not in ("off", "bf16", "fp16"):
        raise OptionError(f"--amp must be off, bf16 or fp16, got {amp!r}")


def autocast_for(device: torch.device, amp: str):
    """The autocast context for ``amp`` on ``device`` (a null context when off).

    ``auto`` means bf16 on a CUDA device that supports it, else off.
    """
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def derive_seed(seed: int, purpose: str, *more: int) -> int:
    """A seed for one named random stream, e.g. ``derive_seed(seed, "batches/target", epoch)``.

    Every stream that derives from the user's seed goes through here, so two purposes never
    share a stream by accident (no magic offsets such as ``seed + 7919``). A pure function:
    the same arguments give the same 63-bit seed on every machine and Python.
    """
    words = [int(seed) % 2**32, zlib.crc32(purpose.encode()), *(int(m) % 2**32 for m in more)]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    """Seed numpy's global stream and torch's default generator."""
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def steady_heap() -> None:
    """Stop glibc's heap from growing with the length of a stream of large, short-lived arrays.

    glibc raises its mmap threshold after each large free, so later blocks come from the heap and
    fragment it: streaming a 2-hour file grew the resident memory by 60% over a 10-minute one. A fixed
    1 MiB threshold (every large array mapped and returned whole) keeps it flat. A no-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def cpu_cores() -> int:
    """Cores this process may use, shared among the processes torchrun started on this node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


MAX_WORKERS = 1024  # more worker processes than any machine this runs on has cores: a typo, refused


def bounded_workers(asked: int | None, work: int, option: str = "--workers") -> int:
    """Worker processes to start: ``asked`` (None: one per core) capped at the cores this process may use
    (:func:`cpu_cores`) and at ``work`` (the chunks there are to hand out); 0 stays 0 (all in this
    process). Negative or absurd values are refused in one line."""
    if asked is not None and not 0 <= asked <= MAX_WORKERS:
        raise OptionError(
            f"{option} {asked}: must lie in 0-{MAX_WORKERS} (it is capped at the {cpu_cores()} cores anyway)"
        )
    n = cpu_cores() if asked is None else asked
    return max(0, min(n, cpu_cores(), work))


def memory_bytes() -> int:
    """The memory this process may still use: the smaller of the cgroup's limit (a container's) and the
    system's available memory (``/proc/meminfo``); 8 GiB where neither can be read."""
    limits = []
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(f).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limits.append(int(text))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return min(limits) if limits else 8 << 30


def check_fits_in_memory(need: int, what: str) -> None:
    """Refuse in one line, before any work, a job whose buffers (``need`` bytes) would take more than half
    the memory this process may use; ``what`` names the options that set the size."""
    have = memory_bytes()
    if need > have // 2:
        raise OptionError(
            f"{what}: needs about {need / 2**30:.1f} GiB of buffers, more than half the {have / 2**30:.1f} GiB "
            "this machine has free; lower it"
        )


def is_main_process() -> bool:
    """Rank 0 of a process group, or of a torchrun launch whose group has ended; True outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


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
