"""Target clips for source-free adaptation: the log-mel windows of unlabelled target audio, in memory.

Files are decoded in worker processes by the same :class:`~audio_dann.data.prepare.FileFeatures` that
``prepare`` uses (decode, mono, resample, window, log-mel), so adapting sees exactly the clips a
prepared folder would hold. At most ``max_clips`` windows are kept (a seeded, uniform choice of
windows), which bounds memory for large target folders.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..config import Config
from ..data.prepare import FileFeatures
from ..data.scan import Item, scan_input
from ..data.workers import file_chunks, file_loader
from ..errors import ScanError
from ..runtime import cpu_cores, derive_seed
from ..training.self_training import TargetClips

__all__ = ["load_target_clips"]


def load_target_clips(config: Config, targets: Sequence[str | Path], *, max_clips: int = 20000, seed: int = 0,
                      workers: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> TargetClips:
    """Decode the target folders or manifests (labels, if any, are ignored) into windows for ``config``."""
    targets = [targets] if isinstance(targets, (str, Path)) else list(targets)
    items: list[Item] = []
    for t in targets:
        items += [replace(i, label=None, split="train") for i in scan_input(t, Path(t).stem, labelled=False)]
    if not items:
        raise ScanError(f"{', '.join(map(str, targets))}: no audio files in the target folders or manifests")
    dataset = FileFeatures(items, file_chunks([1] * len(items), max_files=8), config)
    xs, files, paths, skipped, n = [], [], [], [], 0
    for i, decoded, reason in (r for chunk in file_loader(dataset, cpu_cores() if workers is None else workers)
                               for r in chunk):
        if progress is not None:
            progress(i + 1, len(items))
        if decoded is None:
            skipped.append((items[i].path, reason))
            continue
        clips = decoded[0]
        xs.append(clips)
        files.append(np.full(len(clips), len(paths)))
        paths.append(items[i].path)
        n += len(clips)
    if not xs:
        raise ScanError(f"{', '.join(map(str, targets))}: no readable target audio ({len(skipped)} files skipped)")
    x = np.concatenate(xs)
    file_index = np.concatenate(files)
    if len(x) > max_clips:
        keep = np.sort(np.random.default_rng(derive_seed(seed, "adapt/clips")).permutation(len(x))[:max_clips])
        x, file_index = x[keep], file_index[keep]
    return TargetClips(torch.from_numpy(np.ascontiguousarray(x)), file_index, paths, skipped)
