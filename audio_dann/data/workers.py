"""Per-file work in DataLoader worker processes, results handed back as plain numpy.

``prepare`` and ``predict`` both map a list of files through a :class:`ChunkDataset`
whose items are chunks of consecutive files (:func:`file_chunks`), each returned as a
list of per-file tuples of numpy arrays; a file that fails gives its reason instead,
never an exception that would stop the run. The DataLoader's default conversion
turns numpy arrays into tensors, which torch then ships through shared-memory
file descriptors: one socket handshake per array, about 1 ms each, which cost
more than decoding a 4 s file. Returning the items untouched sends the arrays
through the worker's pipe as ordinary pickles instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import AudioError
from ..runtime import bounded_workers, cpu_cores

__all__ = ["ChunkDataset", "auto_workers", "file_chunks", "file_loader"]


class ChunkDataset(torch.utils.data.Dataset):
    """Item ``k``: the results of :meth:`work` for each file of chunk ``k``, in order.

    Subclasses implement ``work(i)`` for file ``i`` and may post-process a whole chunk in
    :meth:`finish`. A file whose ``work`` raises gives ``(i, None, reason)`` instead: the
    reason an :class:`AudioError` names, or the exception's type and message.
    """

    def __init__(self, chunks: list[tuple[int, int]]) -> None:
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: int) -> list[tuple]:
        return self.finish([self._safe(i) for i in range(*self.chunks[k])])

    def _safe(self, i: int) -> tuple[int, Any, str | None]:
        try:
            return i, self.work(i), None
        except AudioError as exc:
            return i, None, exc.reason
        except Exception as exc:  # noqa: BLE001 - one bad file must never stop the run
            return i, None, f"cannot read ({type(exc).__name__}: {exc})"

    def work(self, i: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, results: list[tuple[int, Any, str | None]]) -> list[tuple]:
        return results


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # one process per core: threads inside workers only contend
    die_with_parent()


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (even by ``kill -9``); elsewhere a no-op.

    Without it, decoding workers of a killed ``prepare`` lived on as orphans for minutes.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _as_is(item):
    return item


def file_loader(dataset: torch.utils.data.Dataset, workers: int, prefetch: int = 4) -> torch.utils.data.DataLoader:
    """Items of ``dataset`` in order, computed in ``workers`` processes (0: in this process), at most one
    per core this process may use and one per item (:func:`audio_dann.runtime.bounded_workers`)."""
    workers = bounded_workers(workers, len(dataset))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_is,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=prefetch if workers else None,
    )


def file_chunks(
    sizes: Sequence[int], start: int = 0, max_files: int = 16, max_bytes: int = 8 << 20
) -> list[tuple[int, int]]:
    """Consecutive ``[lo, hi)`` runs of files from ``start``: up to ``max_files`` files and
    about ``max_bytes`` of input each (a larger file is a chunk on its own).

    Workers take a chunk at a time: handing files over one by one cost the main process
    more than writing their features; capping the bytes bounds the memory a chunk holds.
    """
    chunks, lo, total = [], start, 0
    for i in range(start, len(sizes)):
        if i > lo and (i - lo >= max_files or total + sizes[i] > max_bytes):
            chunks.append((lo, i))
            lo, total = i, 0
        total += sizes[i]
    if lo < len(sizes):
        chunks.append((lo, len(sizes)))
    return chunks


def auto_workers() -> int:
    """Decoding processes feeding a GPU when not given: half the cores (at least one)."""
    return max(1, cpu_cores() // 2)
