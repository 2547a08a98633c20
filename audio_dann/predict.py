"""Batch inference over audio files, and evaluation against labels.

DataLoader workers take a chunk of files at a time. On CPU each worker decodes,
windows and classifies its files with an inference copy of the model (one
thread per worker); with a GPU the workers decode and window, and the main
process stacks windows from many files into batches for the device. A file's
prediction is the mean of its window probabilities. A file that cannot be
read gets a row whose status says why.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .atomic import atomic_path
from .audio import AudioError, load_mono, plan_windows
from .classifier import AudioClassifier, load_model
from .config import ConfigError
from .distributed import barrier, init_from_env, rank_world, shard_range, shutdown
from .loop import autocast_for
from .metrics import classification_report
from .scan import Item, ScanError, find_audio, scan_input
from .workers import auto_workers, cpu_cores, file_chunks, file_loader

__all__ = ["FileResult", "iter_predictions", "predict", "evaluate", "list_inputs"]


@dataclass
class FileResult:
    path: str
    probs: np.ndarray | None          # (n_windows, n_classes) window probabilities
    offsets: np.ndarray | None        # (n_windows,) window starts in seconds
    error: str | None = None

    @property
    def mean_probs(self) -> np.ndarray:
        return self.probs.mean(0)


def _check_amp(amp: str) -> None:
    if amp not in ("off", "bf16", "fp16"):
        raise ConfigError(f"--amp must be off, bf16 or fp16, got {amp!r}")


def _classify(model: AudioClassifier, items: list[tuple], window: int, sample_rate: int, batch_size: int,
              device: torch.device, amp: str = "off") -> list[tuple]:
    """``(i, signal, starts, error)`` per file -> ``(i, window probabilities, starts in seconds, error)``.

    Windows of consecutive files share forward passes of up to ``batch_size``; they are cut from
    the signals one batch at a time, so a long recording never has all its windows in memory.
    """
    where = [(k, int(start)) for k, (_, signal, starts, _) in enumerate(items) if signal is not None
             for start in starts]
    probs = np.empty((len(where), len(model.classes)), dtype=np.float32)
    with torch.inference_mode(), autocast_for(device, amp):
        for s in range(0, len(where), batch_size):
            waves = np.stack([items[k][1][start:start + window] for k, start in where[s:s + batch_size]])
            logits = model(torch.from_numpy(waves).to(device))
            probs[s:s + len(waves)] = torch.softmax(logits.float(), 1).cpu().numpy()
    out, pos = [], 0
    for i, signal, starts, err in items:
        if signal is None:
            out.append((i, None, None, err))
        else:
            out.append((i, probs[pos:pos + len(starts)], starts / sample_rate, None))
            pos += len(starts)
    return out


class _FileClips(torch.utils.data.Dataset):
    """Worker side: a chunk of files -> per file ``(index, signal, window starts, error)``.

    With ``model`` set, the worker also runs it: ``(index, window probabilities, starts in seconds, error)``.
    """

    def __init__(self, paths: Sequence[str], chunks: list[tuple[int, int]], sample_rate: int, window: int, hop: int,
                 pad_mode: str, model: AudioClassifier | None = None, batch_size: int = 64, amp: str = "off") -> None:
        self.paths, self.chunks, self.sr = list(paths), chunks, sample_rate
        self.window, self.hop, self.pad_mode = window, hop, pad_mode
        self.model, self.batch_size, self.amp = model, batch_size, amp

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: int) -> list[tuple]:
        items = [self._one(i) for i in range(*self.chunks[k])]
        if self.model is None:
            return items
        return _classify(self.model, items, self.window, self.sr, self.batch_size, torch.device("cpu"), self.amp)

    def _one(self, i: int) -> tuple:
        try:
            signal, starts = plan_windows(load_mono(self.paths[i], self.sr), self.window, self.hop, self.pad_mode)
            return i, signal, starts, None
        except AudioError as exc:
            return i, None, None, exc.reason
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
            return i, None, None, f"{type(exc).__name__}: {exc}"


def _sizes(paths: Sequence[str]) -> list[int]:
    sizes = []
    for p in paths:
        try:
            sizes.append(os.stat(p).st_size)
        except OSError:
            sizes.append(0)
    return sizes


def list_inputs(path: str | Path) -> list[str]:
    """A single audio file, or every audio file below a folder (recursive, sorted)."""
    path = Path(path)
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise ScanError(f"{path}: no such file or folder")
    files = [str(p) for p in find_audio(path)]
    if not files:
        raise ScanError(f"{path}: folder holds no audio files")
    return files


def iter_predictions(model: AudioClassifier, paths: Sequence[str], *, batch_size: int = 64,
                     workers: int | None = None, window_seconds: float | None = None,
                     hop_seconds: float | None = None, device: str | torch.device = "cpu",
                     amp: str = "off", network_in_workers: bool | None = None) -> Iterator[FileResult]:
    """Yield one :class:`FileResult` per path, in input order.

    On CPU every worker runs the whole pipeline (decode, log-mel, network) on its own chunks of
    files and the main process only puts the results in order: the network is most of the work,
    and this spreads it over all cores with no hand-over of features. On a GPU the workers decode
    and the main process batches windows from many files onto the device.

    ``workers``: worker processes (0: all in this process; None: every core on CPU, half the
    cores on a GPU). ``amp``: "off" (float32, the default), "bf16" or "fp16" autocast for the
    network: faster where the hardware has it (GPUs; CPUs with AMX or AVX-512 BF16), and
    probabilities that differ slightly from float32. ``network_in_workers``: override where the
    network runs (default: in the workers on CPU, in this process on a GPU).
    """
    _check_amp(amp)
    device = torch.device(device)
    if workers is None:
        workers = cpu_cores() if device.type == "cpu" else auto_workers()
    feats = model.config.features
    sr = model.sample_rate
    window = int(round((window_seconds or feats.clip_seconds) * sr))
    hop = int(round((hop_seconds or window_seconds or feats.hop_seconds) * sr))
    if window <= 0 or hop <= 0:
        raise ValueError("--window-seconds and --hop-seconds must be > 0")
    fast = model.for_inference().to(device)
    in_workers = device.type == "cpu" if network_in_workers is None else network_in_workers
    dataset = _FileClips(paths, file_chunks(_sizes(paths)), sr, window, hop, feats.pad_mode,
                         model=fast if in_workers else None, batch_size=batch_size, amp=amp)
    pending: list[tuple] = []

    def results(items: list[tuple]) -> Iterator[FileResult]:
        for i, probs, off, err in items:
            yield FileResult(paths[i], None, None, err) if probs is None else FileResult(paths[i], probs, off)

    def flush() -> Iterator[FileResult]:
        yield from results(_classify(fast, pending, window, sr, batch_size, device, amp))
        pending.clear()

    for chunk in file_loader(dataset, workers):
        if in_workers:
            yield from results(chunk)
            continue
        pending.extend(chunk)
        if sum(len(starts) for _, _, starts, _ in pending if starts is not None) >= batch_size:
            yield from flush()
    yield from flush()


def _rows(result: FileResult, classes: list[str], per_window: bool) -> list[dict]:
    if result.error is not None:
        row = {"path": result.path, "label": "", "confidence": ""}
        row.update({f"p_{c}": "" for c in classes})
        row["status"] = f"error: {result.error}"
        return [row]
    blocks = ([(f"{o:.3f}", p) for o, p in zip(result.offsets, result.probs)] if per_window
              else [(None, result.mean_probs)])
    rows = []
    for start, p in blocks:
        k = int(np.argmax(p))
        row = {"path": result.path}
        if per_window:
            row["window_start"] = start
        row.update({"label": classes[k], "confidence": f"{p[k]:.6f}"})
        row.update({f"p_{c}": f"{v:.6f}" for c, v in zip(classes, p)})
        row["status"] = "ok"
        rows.append(row)
    return rows


def write_predictions(results: Iterator[FileResult], classes: list[str], out: Path, fmt: str, per_window: bool,
                      progress: Callable[[int], None] | None = None) -> dict:
    """Write rows atomically to ``out`` (csv or jsonl); returns counts."""
    counts = {"files": 0, "ok": 0, "errors": 0}
    columns = ["path"] + (["window_start"] if per_window else []) + ["label", "confidence"] + \
              [f"p_{c}" for c in classes] + ["status"]
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n") if fmt == "csv" else None
        if writer:
            writer.writeheader()
        for res in results:
            counts["files"] += 1
            counts["errors" if res.error else "ok"] += 1
            for row in _rows(res, classes, per_window):
                if writer:
                    writer.writerow(row)
                else:
                    f.write(json.dumps(row) + "\n")
            if progress:
                progress(counts["files"])
    return counts


def predict(model: str | Path | AudioClassifier, inputs: str | Path | Sequence[str], out: str | Path, *,
            batch_size: int = 64, workers: int | None = None, window_seconds: float | None = None,
            hop_seconds: float | None = None, per_window: bool = False, fmt: str = "csv",
            device: str | torch.device = "cpu", amp: str = "off",
            progress: Callable[[int, int], None] | None = None) -> dict:
    """Predict every audio file of ``inputs`` (a folder, a file or a list) into ``out``.

    Returns ``{"files", "ok", "errors", "out"}``.
    """
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"--format must be csv or jsonl, got {fmt!r}")
    _check_amp(amp)
    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    paths = list(inputs) if isinstance(inputs, (list, tuple)) else list_inputs(inputs)
    kwargs = dict(batch_size=batch_size, workers=workers, window_seconds=window_seconds, hop_seconds=hop_seconds,
                  device=device, amp=amp)
    out = Path(out)
    started = init_from_env(torch.device(device).type)
    try:
        rank, world = rank_world()
        if world == 1:
            cb = (lambda n: progress(n, len(paths))) if progress else None
            counts = write_predictions(iter_predictions(model, paths, **kwargs), model.classes, out, fmt, per_window, cb)
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


def evaluate(model: str | Path | AudioClassifier, data: str | Path, *, batch_size: int = 64,
             workers: int | None = None, device: str | torch.device = "cpu", amp: str = "off",
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Accuracy (95% Wilson CI), macro-F1, per-class recall and confusion on a labelled folder or manifest.

    Files whose label is not a class of the model, and unreadable files, are
    counted under ``skipped`` (with reasons) and left out of the scores. When a
    manifest names domains, ``per_domain`` holds each domain's accuracy.
    """
    _check_amp(amp)
    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    items: list[Item] = scan_input(data, "eval", labelled=True)
    index = {c: i for i, c in enumerate(model.classes)}
    skipped: list[dict] = [{"file": it.path, "reason": f"label {it.label!r} is not a class of this model"}
                           for it in items if it.label not in index]
    items = [it for it in items if it.label in index]
    if not items:
        raise ScanError(f"{data}: no files whose label is one of the model's classes ({', '.join(model.classes)})")
    y_true, y_pred, domains = [], [], []
    for n, (it, res) in enumerate(zip(items, iter_predictions(model, [i.path for i in items], batch_size=batch_size,
                                                              workers=workers, device=device, amp=amp)),
                                  start=1):
        if res.error:
            skipped.append({"file": it.path, "reason": res.error})
        else:
            y_true.append(index[it.label])
            y_pred.append(int(res.mean_probs.argmax()))
            domains.append(it.domain)
        if progress:
            progress(n, len(items))
    if not y_true:
        raise ScanError(f"{data}: no file could be read")
    report = classification_report(np.asarray(y_true), np.asarray(y_pred), model.classes)
    by_domain: dict[str, list[bool]] = defaultdict(list)
    for d, t, p in zip(domains, y_true, y_pred):
        by_domain[d].append(t == p)
    if len(by_domain) > 1:
        report["per_domain"] = {d: {"accuracy": float(np.mean(v)), "n": len(v)} for d, v in sorted(by_domain.items())}
    report["skipped"] = skipped
    return report


