"""Target clips for source-free adaptation: the log-mel windows of unlabelled target audio, in memory.

Files are decoded in worker processes by the same :class:`~audio_dann.data.prepare.FileFeatures` that
``prepare`` uses (decode, mono, resample, window, log-mel), so adapting sees exactly the clips a
prepared folder would hold. At most ``max_clips`` windows are kept, a seeded, uniform choice of
windows made while decoding (each window gets a random key from the seed and its file's position; the
``max_clips`` smallest keys are kept, pruned whenever twice that many are held), so memory stays
bounded by about ``2 * max_clips`` windows however large the target folder, and the choice does not
depend on the number of decoding workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..data.prepare import FileFeatures
from ..data.scan import Item, scan_input
from ..data.workers import file_chunks, file_loader
from ..errors import OptionError, ScanError
from ..files import check_distinct_paths
from ..runtime import cpu_cores, derive_seed
from .methods.base import TargetClips

__all__ = ["load_target_clips", "choose_windows", "window_keys"]


def load_target_clips(
    config: Config,
    targets: Sequence[str | Path],
    *,
    max_clips: int = 20000,
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TargetClips:
    """Decode the target folders or manifests (labels, if any, are ignored) into windows for ``config``."""
    targets = [targets] if isinstance(targets, (str, Path)) else list(targets)
    if not targets:
        raise OptionError("no target folder or manifest given")
    if max_clips < 1:
        raise OptionError(f"--max-clips {max_clips}: must be >= 1")
    if workers is not None and workers < 0:
        raise OptionError(f"--workers must be >= 0, got {workers}")
    check_distinct_paths(targets, "TARGET")  # a folder given twice would count its files twice
    items: list[Item] = []
    for t in targets:
        items += [replace(i, label=None, split="train") for i in scan_input(t, Path(t).stem, labelled=False)]
    if not items:
        raise ScanError(f"{', '.join(map(str, targets))}: no audio files in the target folders or manifests")
    dataset = FileFeatures(items, file_chunks([1] * len(items), max_files=8), config)
    held = _Held(max_clips, seed)
    paths, skipped = [], []
    for i, decoded, reason in (
        r for chunk in file_loader(dataset, cpu_cores() if workers is None else workers) for r in chunk
    ):
        if progress is not None:
            progress(i + 1, len(items))
        if decoded is None:
            skipped.append((items[i].path, reason))
            continue
        held.add(decoded[0], len(paths))
        paths.append(items[i].path)
    if not paths:
        raise ScanError(f"{', '.join(map(str, targets))}: no readable target audio ({len(skipped)} files skipped)")
    x, file_index = held.result()
    return TargetClips(torch.from_numpy(np.ascontiguousarray(x)), file_index, paths, skipped)


def window_keys(seed: int, file: int, n: int) -> np.ndarray:
    """The random keys of the ``n`` windows of the ``file``-th file: a stream of its own from the seed, so a
    window's key depends on neither the other files nor the order they were decoded in."""
    return np.random.default_rng([derive_seed(seed, "adapt/clips"), file]).random(n)


def choose_windows(file_index: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """The toolkit's one rule for "at most ``limit`` target windows": the ``limit`` windows with the smallest
    :func:`window_keys` (a seeded, uniform choice), as sorted positions; all of them under the limit.
    ``file_index``: the file (0..F-1) of each window."""
    file_index = np.asarray(file_index)
    if len(file_index) <= limit:
        return np.arange(len(file_index))
    order = np.argsort(file_index, kind="stable")  # each file's windows together, in their own order
    files, starts, counts = np.unique(file_index[order], return_index=True, return_counts=True)
    keys = np.empty(len(file_index))
    for f, s, n in zip(files, starts, counts):
        keys[order[s : s + n]] = window_keys(seed, int(f), int(n))
    return np.sort(np.argpartition(keys, limit - 1)[:limit])


class _Held:
    """The windows kept so far: all of them up to ``limit``, beyond it the ``limit`` windows with the
    smallest random keys (a uniform choice), pruned whenever ``2 * limit`` are held."""

    def __init__(self, limit: int, seed: int):
        self.limit, self.seed, self.seen, self.held = limit, seed, 0, 0
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # clips, file, order, key

    def add(self, clips: np.ndarray, file: int) -> None:
        key = window_keys(self.seed, file, len(clips))
        order = np.arange(self.seen, self.seen + len(clips))
        self.parts.append((clips, np.full(len(clips), file), order, key))
        self.seen += len(clips)
        self.held += len(clips)
        if self.held > 2 * self.limit:
            self.parts = [self._smallest()]
            self.held = len(self.parts[0][1])

    def _smallest(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        clips, file, order, key = (np.concatenate(a) for a in zip(*self.parts))
        if len(key) > self.limit:
            keep = np.argpartition(key, self.limit - 1)[: self.limit]
            clips, file, order, key = clips[keep], file[keep], order[keep], key[keep]
        return clips, file, order, key

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept windows in decoding order, and the position of each one's file."""
        clips, file, order, _ = self._smallest()
        ranked = np.argsort(order, kind="stable")
        return clips[ranked], file[ranked]
