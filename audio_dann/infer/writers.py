"""Prediction tables: per file or per window/event, as CSV, JSON lines, a Raven Pro selection table or
Audacity label files; written atomically.

- ``csv`` / ``jsonl``: one row per file (``path, label, confidence, p_<class>..., status``), or with
  ``per_window`` one row per detection (``path, begin_s, end_s, label, confidence, p_<class>...,
  status``). Unreadable files get one row whose status is ``error: <reason>``.
- ``raven``: one tab-separated selection table for the whole run (Raven Pro's columns ``Selection,
  View, Channel, Begin Time (s), End Time (s), Low Freq (Hz), High Freq (Hz)``, then ``Begin Path,
  File Offset (s), Class, Confidence``). As in multi-file tables, ``Begin Time (s)`` runs on across
  the files in input order (each file starts where the previous one ended) and ``File Offset (s)``
  is the time within the file.
- ``audacity``: ``out`` is a folder with one label file per audio file (its relative path + ``.txt``),
  each line ``start<TAB>end<TAB>label`` (Audacity's label-track text format).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..files import atomic_path, atomic_write_text

__all__ = ["FORMATS", "DETECTION_FORMATS", "RAVEN_COLUMNS", "write_table"]

FORMATS = ("csv", "jsonl", "raven", "audacity")
DETECTION_FORMATS = ("raven", "audacity")  # always one entry per detection
RAVEN_COLUMNS = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Begin Path",
    "File Offset (s)",
    "Class",
    "Confidence",
)


def _table_rows(entries: Iterable[dict], classes: list[str], per_window: bool) -> Iterator[dict]:
    """csv/jsonl rows from file entries (``predict._entry``, as the journal keeps them)."""
    empty = {f"p_{c}": "" for c in classes}
    for e in entries:
        if e["error"] is not None:
            head = {"path": e["path"], **({"begin_s": "", "end_s": ""} if per_window else {})}
            yield {**head, "label": "", "confidence": "", **empty, "status": f"error: {e['error']}"}
        elif not per_window:
            p = e["mean"]
            k = int(np.argmax(p))
            yield {
                "path": e["path"],
                "label": classes[k],
                "confidence": f"{p[k]:.6f}",
                **{f"p_{c}": f"{v:.6f}" for c, v in zip(classes, p)},
                "status": "ok",
            }
        else:
            for b, end, label, conf, probs in e["events"]:
                yield {
                    "path": e["path"],
                    "begin_s": f"{b:.3f}",
                    "end_s": f"{end:.3f}",
                    "label": label,
                    "confidence": f"{conf:.6f}",
                    **{f"p_{c}": f"{v:.6f}" for c, v in zip(classes, probs)},
                    "status": "ok",
                }


def _typed(row: dict) -> dict:
    """A table row for JSON: numbers as numbers, empty cells as null."""
    out = {}
    for k, v in row.items():
        if k in ("path", "label", "status"):
            out[k] = v
        else:
            out[k] = float(v) if v != "" else None
    return out


def write_table(
    entries: Iterable[dict],
    classes: list[str],
    out: Path,
    fmt: str,
    per_window: bool,
    sample_rate: int,
    root: Path | None = None,
) -> list[str]:
    """Write the entries of every file, in input order, in ``fmt`` (atomically). Returns the outputs left
    as they were because audio-dann did not write them (``audacity``: a user's own label files)."""
    if fmt == "audacity":
        return _write_audacity(entries, out, root)
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
        if fmt == "raven":
            _write_raven(entries, f, sample_rate)
            return []
        columns = (
            ["path"]
            + (["begin_s", "end_s"] if per_window else [])
            + ["label", "confidence"]
            + [f"p_{c}" for c in classes]
            + ["status"]
        )
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n") if fmt == "csv" else None
        if writer:
            writer.writeheader()
        for row in _table_rows(entries, classes, per_window):
            (writer.writerow(row) if writer else f.write(json.dumps(_typed(row)) + "\n"))
    return []


def _write_raven(entries: Iterable[dict], f, sample_rate: int) -> None:
    w = csv.writer(f, delimiter="\t", lineterminator="\n")
    w.writerow(RAVEN_COLUMNS)
    selection, offset = 0, 0.0
    for e in entries:
        if e["error"] is None:
            for b, end, label, conf, _ in e["events"]:
                selection += 1
                w.writerow(
                    [
                        selection,
                        "Spectrogram 1",
                        1,
                        f"{offset + b:.3f}",
                        f"{offset + end:.3f}",
                        "0",
                        f"{sample_rate / 2:.1f}",
                        e["path"],
                        f"{b:.3f}",
                        label,
                        f"{conf:.4f}",
                    ]
                )
        offset += e.get("seconds") or 0.0


LEDGER = ".audio-dann-labels"  # in an audacity folder: the label files audio-dann wrote there, one a line


def _write_audacity(entries: Iterable[dict], out: Path, root: Path | None) -> list[str]:
    """One label file per audio file, named after the whole file name (``rec.wav.txt``, ``rec.flac.txt``:
    never two audio files on one label file). A label file that exists and that audio-dann did not write
    (it is not in the folder's ledger) is left as it is; its name is returned."""
    out.mkdir(parents=True, exist_ok=True)
    ledger = out / LEDGER
    ours = set(ledger.read_text().splitlines()) if ledger.is_file() else set()
    kept = []
    for e in entries:
        if e["error"] is not None:
            continue
        path = Path(e["path"])
        rel = path.relative_to(root) if root is not None and path.is_relative_to(root) else Path(path.name)
        name = str(rel) + ".txt"
        if (out / name).exists() and name not in ours:
            kept.append(str(out / name))
            continue
        buf = io.StringIO()
        for b, end, label, _, _ in e["events"]:
            buf.write(f"{b:.6f}\t{end:.6f}\t{label}\n")
        if name not in ours:  # recorded before the label file exists: a crash leaves no file of ours unlisted
            ours.add(name)
            with open(ledger, "a") as f:  # appended, one line a file: linear in the folder's size
                f.write(f"{name}\n")
        atomic_write_text(out / name, buf.getvalue(), tidy=False)
    return kept
