"""``predict``: every audio file of a folder into one table; under torchrun, a shard per rank."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..data.scan import list_inputs
from ..errors import OptionError
from ..files import atomic_path, check_output_file, output_lock
from ..nn.classifier import AudioClassifier, load_model
from ..runtime import barrier, check_amp, init_from_env, rank_world, shard_range, shutdown
from .engine import iter_predictions
from .writers import FORMATS, write_predictions

__all__ = ["predict"]


def predict(model: str | Path | AudioClassifier, inputs: str | Path | Sequence[str], out: str | Path, *,
            batch_size: int = 64, workers: int | None = None, window_seconds: float | None = None,
            hop_seconds: float | None = None, per_window: bool = False, fmt: str = "csv",
            device: str | torch.device = "cpu", amp: str = "off",
            progress: Callable[[int, int], None] | None = None) -> dict:
    """Predict every audio file of ``inputs`` (a folder, a file or a list) into ``out``.

    Returns ``{"files", "ok", "errors", "out"}``.
    """
    if fmt not in FORMATS:
        raise OptionError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    check_amp(amp)
    out = check_output_file(out)  # before any work: a folder or unwritable path fails now, not at the end
    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    paths = list(inputs) if isinstance(inputs, (list, tuple)) else list_inputs(inputs)
    kwargs = dict(batch_size=batch_size, workers=workers, window_seconds=window_seconds, hop_seconds=hop_seconds,
                  device=device, amp=amp)
    started = init_from_env(torch.device(device).type)
    try:
        rank, world = rank_world()
        if world == 1:
            cb = (lambda n: progress(n, len(paths))) if progress else None
            with output_lock(out):
                counts = write_predictions(iter_predictions(model, paths, **kwargs), model.classes, out, fmt,
                                           per_window, cb)
            return {**counts, "out": str(out)}
        return _predict_sharded(model, paths, out, fmt, per_window, kwargs, rank, world, progress)
    finally:
        shutdown(started)


def _predict_sharded(model, paths, out: Path, fmt: str, per_window: bool, kwargs: dict, rank: int, world: int,
                     progress) -> dict:
    """Each rank predicts a contiguous shard into a part file; rank 0 merges them in input order.

    Part files are named by a hash of the file list and settings, and written atomically, so a
    rerun after a crash keeps finished parts and redoes only the missing ones.
    """
    key = hashlib.sha256("\n".join([*paths, fmt, str(per_window), repr(sorted(kwargs.items()))]).encode()).hexdigest()[:10]
    part = lambda r: out.parent / f".{out.name}.{key}.part{r}of{world}"  # noqa: E731
    start, stop = shard_range(len(paths), rank, world)
    mine = part(rank)
    if not mine.exists():
        cb = (lambda n: progress(n, stop - start)) if progress and rank == 0 else None
        write_predictions(iter_predictions(model, paths[start:stop], **kwargs), model.classes, mine, fmt, per_window, cb)
    barrier()
    counts = {"files": len(paths), "ok": 0, "errors": 0, "out": str(out), "world_size": world}
    if rank == 0:
        with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
            for r in range(world):
                with open(part(r), newline="") as p:
                    lines = p.readlines()
                body = lines[1:] if (fmt == "csv" and r > 0) else lines
                f.writelines(body)
        for r in range(world):
            part(r).unlink()
    barrier()
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f)) if fmt == "csv" else [json.loads(x) for x in f if x.strip()]
    status = {row["path"]: row["status"] for row in rows}
    counts["ok"] = sum(1 for v in status.values() if v == "ok")
    counts["errors"] = len(status) - counts["ok"]
    return counts
