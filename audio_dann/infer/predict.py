"""``predict``: every audio file of a folder into one table; under torchrun, a shard per rank."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from ..data.audio import AUDIO_EXTENSIONS
from ..data.scan import iter_inputs
from ..errors import OptionError
from ..files import atomic_path, check_output_dir, check_output_file, output_lock, path_list
from ..nn.classifier import AudioClassifier, load_model
from ..runtime import all_reduce_sum, barrier, check_amp, init_from_env, rank_world, shard_range, shutdown, steady_heap
from .detections import DetectionSettings, detections
from .engine import FileResult, iter_predictions, window_samples
from .journal import Journal, run_key
from .writers import DETECTION_FORMATS, FORMATS, write_table

__all__ = ["predict"]


def predict(
    model: str | Path | AudioClassifier,
    inputs: str | Path | Sequence[str],
    out: str | Path,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    per_window: bool = False,
    fmt: str | None = None,
    min_confidence: float = 0.0,
    all_classes: bool = False,
    merge: bool = False,
    device: str | torch.device = "cpu",
    amp: str = "off",
    progress: Callable[..., None] | None = None,
) -> dict:
    """Predict every audio file of ``inputs`` (a folder, a file or a list) into ``out``.

    ``fmt``: ``csv``, ``jsonl``, ``raven`` or ``audacity`` (None: ``jsonl`` for an ``out`` ending in
    ``.jsonl``, else ``csv``) (see :mod:`.writers`; the last two always
    list detections, and ``audacity`` makes ``out`` a folder). With ``per_window`` (or a detection
    format) each window whose top class (``all_classes``: any class) reaches ``min_confidence`` is a
    row with ``begin_s`` and ``end_s``; ``merge`` joins consecutive windows of one class. A folder run
    resumes: rerunning the same command after a crash decodes only the files not finished (journal
    beside ``out``). ``progress(files_done, files_total, text)``.

    Returns ``{"files", "ok", "errors", "resumed", "audio_seconds", "seconds", "out", "unreadable"
    (path, reason), "left_as_they_were"}`` (label files of the user's that ``audacity`` did not overwrite).
    """
    fmt = fmt or ("jsonl" if str(out).lower().endswith(".jsonl") else "csv")
    if fmt not in FORMATS:
        raise OptionError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    check_amp(amp)
    steady_heap()
    # detections are per window: a threshold or merging implies --per-window
    per_window = per_window or fmt in DETECTION_FORMATS or min_confidence > 0 or all_classes or merge
    settings = DetectionSettings(min_confidence, all_classes, merge)
    given = [model, *path_list(inputs)]  # before any work: no output may replace an input
    out = (
        check_output_dir(out, inputs=[model], beside_others=True)  # label files named after audio files
        if fmt == "audacity"
        else check_output_file(out, inputs=given, audio_suffixes=AUDIO_EXTENSIONS)
    )
    loaded = model if isinstance(model, torch.nn.Module) else load_model(model)
    digest = _digest(model)
    model = loaded
    window_samples(model, window_seconds, hop_seconds, batch_size, workers)  # refused now, before a journal exists
    root = Path(inputs) if isinstance(inputs, (str, Path)) and Path(inputs).is_dir() else None
    if isinstance(inputs, (list, tuple)):
        listed = [str(p) for p in inputs]
        walk = lambda: iter(listed)  # noqa: E731
    else:
        walk = lambda: iter_inputs(inputs)  # noqa: E731 - lazily: 100,000 files start at once
        next(walk())  # a missing or empty folder fails here, before any work
    kwargs = dict(
        batch_size=batch_size,
        workers=workers,
        window_seconds=window_seconds,
        hop_seconds=hop_seconds,
        device=device,
        amp=amp,
    )
    started = init_from_env(torch.device(device).type)
    try:
        rank, world = rank_world()
        if world > 1:
            if fmt not in ("csv", "jsonl") or per_window:
                raise OptionError("under torchrun, predict writes per-file csv or jsonl only (for now)")
            return _predict_sharded(model, list(walk()), out, fmt, per_window, kwargs, rank, world, progress)
        with output_lock(out):
            return _predict_journaled(model, digest, walk, out, fmt, per_window, settings, kwargs, root, progress)
    finally:
        shutdown(started)


def _digest(model) -> str:
    """A hash of the model: of the bundle file, or of the weights of a model given as an object."""
    h = hashlib.sha256()
    if isinstance(model, torch.nn.Module):
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    else:
        with open(model, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


_FILES_PER_PASS = 4096  # files listed, decoded and journaled per pass: memory does not grow with the folder


def _batches(items, n: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _predict_journaled(
    model: AudioClassifier,
    digest: str,
    walk,
    out: Path,
    fmt: str,
    per_window: bool,
    settings: DetectionSettings,
    kwargs: dict,
    root: Path | None,
    progress,
) -> dict:
    window_s = window_samples(model, kwargs["window_seconds"], kwargs["hop_seconds"])[0] / model.sample_rate
    key = run_key(
        digest,
        {
            "fmt": fmt,
            "per_window": per_window,
            **asdict(settings),
            "window": window_s,
            "hop": kwargs["hop_seconds"],
            "amp": kwargs["amp"],
            "out": str(out),
        },
    )
    journal = Journal(out, key).open()
    resumed, seen = len(journal.done), 0
    t0, audio = time.perf_counter(), 0.0  # audio decoded by this run (resumed files not counted)
    try:
        for batch in _batches(walk(), _FILES_PER_PASS):
            seen += len(batch)
            audio = _predict_batch(
                model,
                [p for p in batch if p not in journal.done],
                journal,
                per_window,
                settings,
                window_s,
                kwargs,
                progress,
                seen,
                t0,
                audio,
            )
        left = write_table(journal.entries(walk()), model.classes, out, fmt, per_window, model.sample_rate, root)
    finally:
        journal.close()
    journal.close(remove=True)
    unreadable = [(e["path"], e["error"]) for e in journal.entries(walk()) if e["error"] is not None]
    errors = len(unreadable)
    return {
        "files": seen,
        "ok": seen - errors,
        "errors": errors,
        "resumed": resumed,
        "restarted_because": journal.restarted_because,
        "audio_seconds": audio,
        "seconds": time.perf_counter() - t0,
        "out": str(out),
        "format": fmt,
        "unreadable": unreadable,
        "left_as_they_were": left,
    }


def _predict_batch(
    model,
    todo: list[str],
    journal: Journal,
    per_window: bool,
    settings: DetectionSettings,
    window_s: float,
    kwargs: dict,
    progress,
    seen: int,
    t0: float,
    audio: float,
) -> float:
    """Predict ``todo`` and journal each file as it finishes; returns the audio seconds decoded so far."""
    for res in iter_predictions(model, todo, **kwargs) if todo else ():
        journal.append(_entry(res, model.classes, per_window, window_s, settings))
        audio += res.seconds
        if progress:
            spent = time.perf_counter() - t0
            progress(
                len(journal.done),
                None,
                f"of {seen}+ files; {audio / 3600:.2f} h audio, real-time factor {audio / max(spent, 1e-9):.0f}",
            )
    return audio


def _entry(
    res: FileResult,
    classes: list[str],
    per_window: bool,
    window_s: float = 0.0,
    settings: DetectionSettings = DetectionSettings(),
) -> dict:
    """What a table needs of one file: its error, length and mean probabilities, and its detections."""
    entry = {"path": res.path, "error": res.error, "seconds": res.seconds}
    if res.error is None:
        entry["mean"] = res.mean_probs
        if per_window:
            entry["events"] = [
                (d.begin_s, d.end_s, d.label, d.confidence, d.probs)
                for d in detections(res.probs, res.offsets, window_s, res.seconds, classes, settings)
            ]
    return entry


def _predict_sharded(
    model, paths, out: Path, fmt: str, per_window: bool, kwargs: dict, rank: int, world: int, progress
) -> dict:
    """Each rank predicts a contiguous shard into a part file; rank 0 merges them in input order.

    Part files are named by a hash of the file list and settings, and written atomically, so a
    rerun after a crash keeps finished parts and redoes only the missing ones.
    """
    key = hashlib.sha256("\n".join([*paths, fmt, str(per_window), repr(sorted(kwargs.items()))]).encode()).hexdigest()[
        :10
    ]
    part = lambda r: out.parent / f".{out.name}.{key}.part{r}of{world}"  # noqa: E731
    start, stop = shard_range(len(paths), rank, world)
    mine = part(rank)
    t0, audio = time.perf_counter(), 0.0
    if not mine.exists():
        seconds = []

        def entries():  # streamed into the part file; the audio length is counted on the way
            for n, res in enumerate(iter_predictions(model, paths[start:stop], **kwargs), start=1):
                seconds.append(res.seconds)
                if progress and rank == 0:
                    progress(n, stop - start)
                yield _entry(res, model.classes, per_window=False)

        write_table(entries(), model.classes, mine, fmt, False, model.sample_rate)
        audio = sum(seconds)
    (audio,) = all_reduce_sum([audio])
    barrier()
    counts = {
        "files": len(paths),
        "ok": 0,
        "errors": 0,
        "out": str(out),
        "world_size": world,
        "resumed": 0,
        "restarted_because": None,
        "audio_seconds": audio,
    }
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
    counts["seconds"] = time.perf_counter() - t0
    return counts
