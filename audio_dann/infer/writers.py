"""Prediction tables: one row per file (or per window), as CSV or JSON lines, written atomically."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..files import atomic_path
from .engine import FileResult

__all__ = ["FORMATS", "write_predictions", "prediction_rows"]

FORMATS = ("csv", "jsonl")


def prediction_rows(result: FileResult, classes: list[str], per_window: bool) -> list[dict]:
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
    """Write rows atomically to ``out`` (csv or jsonl); returns ``{"files", "ok", "errors"}``."""
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
            for row in prediction_rows(res, classes, per_window):
                if writer:
                    writer.writerow(row)
                else:
                    f.write(json.dumps(row) + "\n")
            if progress:
                progress(counts["files"])
    return counts
