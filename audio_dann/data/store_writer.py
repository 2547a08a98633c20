"""Writing a prepared folder: features streamed into a growing ``.npy``, the index, the
skipped list, and the progress file that makes an interrupted ``prepare`` resumable.

``features.npy`` is written with a fixed-size header that is rewritten with the final
shape when the store is finished, so rows stream to disk (flat memory) and the result is an
ordinary ``.npy``. :class:`StoreWriter` owns all of a folder's files while ``prepare``
writes it; ``prepare`` itself only decides what goes in.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from ..files import write_json
from .store import INDEX_COLUMNS, PREPARED_MARKER, STORE_FORMAT

__all__ = ["FeatureFile", "StoreWriter"]

_HEADER_LEN = 128  # bytes, a multiple of 64 as the .npy format asks
# Progress (and the features behind it) is made durable at most this often: each save
# rewrites progress.json, which cost more than decoding a file when done per batch.
_SAVE_EVERY_SECONDS = 2.0
_MAX_PENDING_CLIPS = 2048


def _npy_header(shape: tuple[int, ...]) -> bytes:
    d = repr({"descr": "<f2", "fortran_order": False, "shape": tuple(shape)}).encode("latin1")
    pad = _HEADER_LEN - 10 - len(d) - 1
    if pad < 0:
        raise ValueError("shape too large for the fixed .npy header")
    return b"\x93NUMPY\x01\x00" + (_HEADER_LEN - 10).to_bytes(2, "little") + d + b" " * pad + b"\n"


class FeatureFile:
    """Append-only float16 rows of shape ``row_shape`` in ``.npy`` format."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], rows: int = 0) -> None:
        """Open for appending; ``rows`` > 0 keeps that many existing rows (resume), cutting any beyond."""
        self.path = path
        self.row_shape = tuple(row_shape)
        self.row_bytes = int(np.prod(row_shape)) * 2
        if rows and path.exists():
            self._f = open(path, "r+b")
            self._f.truncate(_HEADER_LEN + rows * self.row_bytes)
            self._f.seek(0, 2)
        else:
            rows = 0
            self._f = open(path, "wb")
            self._f.write(_npy_header((0, *self.row_shape)))
        self.rows = rows

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype="<f2")
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"row shape {rows.shape[1:]} != store shape {self.row_shape}")
        self._f.write(rows.tobytes())
        self.rows += len(rows)

    def flush(self) -> None:
        self._f.flush()

    def finish(self) -> None:
        """Write the final shape into the header and close."""
        self._f.flush()
        self._f.seek(0)
        self._f.write(_npy_header((self.rows, *self.row_shape)))
        self._f.close()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class StoreWriter:
    """Appends files' clips to a prepared folder and records, every few seconds, how far the
    outputs are durable, so that a killed run resumes from there with identical results.

    The resume state (``progress.json``) holds the input fingerprint, how many input files are
    done, the byte lengths of ``index.csv`` and ``skipped.csv`` and the row count of
    ``features.npy`` at the last save, the counters, and the running normalisation sums.
    """

    def __init__(self, out: Path, row_shape: tuple[int, int], fingerprint: str) -> None:
        self.out = out
        self.progress_path = out / "progress.json"
        n_mels = row_shape[0]
        self.state = {
            "fingerprint": fingerprint,
            "files_done": 0,
            "clips": 0,
            "index_bytes": 0,
            "skipped_bytes": 0,
            "files_read": 0,
            "files_skipped": 0,
            "audio_seconds": 0.0,
            "stats_sums": np.zeros((2, n_mels)).tolist(),
            "stats_frames": 0,
        }
        saved = self._saved_state(fingerprint)
        if saved is not None:
            self.state = saved
        self.resumed_from = self.state["files_done"]
        resume = self.resumed_from > 0
        self.features = FeatureFile(out / "features.npy", row_shape, rows=self.state["clips"] if resume else 0)
        self._index = self._open_table("index.csv", "index_bytes", INDEX_COLUMNS, resume)
        self._skipped = self._open_table("skipped.csv", "skipped_bytes", ("file", "reason"), resume)
        self._stats_sums = np.asarray(self.state["stats_sums"], dtype=np.float64)
        self._index_rows = self.features.rows  # rows of index.csv written (features may run ahead within a file)
        self._pending_feats: list[np.ndarray] = []
        self._pending_rows: list[list[str]] = []
        self._pending_skips: list[list[str]] = []
        self._last_save = time.monotonic()

    def _saved_state(self, fingerprint: str) -> dict | None:
        if not self.progress_path.is_file() or not (self.out / "features.npy").is_file():
            return None
        try:
            old = json.loads(self.progress_path.read_text())
        except ValueError:
            return None
        return old if old.get("fingerprint") == fingerprint and "stats_sums" in old else None

    def _open_table(self, name: str, key: str, header, resume: bool):
        f = open(self.out / name, "r+" if resume else "w", newline="")
        if resume:
            f.truncate(self.state[key])
            f.seek(self.state[key])
        else:
            f.write(",".join(header) + "\n")
        return f

    @property
    def clips(self) -> int:
        """Clips written so far, pending ones included."""
        return self._index_rows + len(self._pending_rows)

    def _flush_features(self) -> None:
        if self._pending_feats:
            self.features.append(np.concatenate(self._pending_feats))
            self._pending_feats.clear()

    def add(
        self,
        path: str,
        domain: str,
        label: str | None,
        split: str,
        clips: np.ndarray | str,
        offsets: np.ndarray,
        seconds: float,
        sums: np.ndarray,
    ) -> None:
        """One file's clips ``(n, n_mels, frames)`` and their start times; training clips count for the stats.

        ``clips`` may be the path of a spill file (raw float16 rows a worker wrote for a long recording):
        it is copied into the store a block at a time and removed, so memory stays flat.
        """
        base = self.clips
        if isinstance(clips, str):
            self._flush_features()  # earlier files' rows first, in order
            row_bytes = self.features.row_bytes
            n_rows = 0
            with open(clips, "rb") as f:  # plain reads: a memmap would keep the whole file's pages mapped
                while block := f.read(row_bytes * _MAX_PENDING_CLIPS):
                    rows = np.frombuffer(block, dtype="<f2").reshape(-1, *self.features.row_shape)
                    self.features.append(rows)
                    n_rows += len(rows)
            n_frames = n_rows * self.features.row_shape[1]
            Path(clips).unlink(missing_ok=True)
        else:
            self._pending_feats.append(clips)
            n_frames = clips.shape[0] * clips.shape[2]
        self._pending_rows.extend(
            [str(base + k), path, f"{off:.3f}", domain, label or "", split] for k, off in enumerate(offsets)
        )
        self.state["files_read"] += 1
        self.state["audio_seconds"] += float(seconds)
        if split == "train":  # normalisation stats: training clips of every domain
            self._stats_sums += sums
            self.state["stats_frames"] += n_frames

    def skip(self, path: str, reason: str) -> None:
        self._pending_skips.append([path, reason])
        self.state["files_skipped"] += 1

    def file_done(self, i: int) -> None:
        """Input file ``i`` (and every one before it) is handled; saves when enough is pending."""
        self.state["files_done"] = i + 1
        if len(self._pending_rows) >= _MAX_PENDING_CLIPS or time.monotonic() - self._last_save >= _SAVE_EVERY_SECONDS:
            self.save()

    def save(self) -> None:
        """Append what is pending, then record how far the outputs are durable (for resume)."""
        self._flush_features()
        if self._pending_rows:
            self._index.write(_csv_text(self._pending_rows))
            self._index_rows += len(self._pending_rows)
        if self._pending_skips:
            self._skipped.write(_csv_text(self._pending_skips))
        self._pending_rows.clear(), self._pending_skips.clear()
        self.features.flush(), self._index.flush(), self._skipped.flush()
        self.state.update(
            clips=self.features.rows,
            index_bytes=self._index.tell(),
            skipped_bytes=self._skipped.tell(),
            stats_sums=self._stats_sums.tolist(),
        )
        write_json(self.progress_path, self.state)
        self._last_save = time.monotonic()

    def close(self) -> None:
        self._index.close()
        self._skipped.close()
        self.features.close()

    def stats(self) -> dict[str, list[float]]:
        """Per-mel mean and std over every training frame written."""
        return mean_std(self.state["stats_sums"], self.state["stats_frames"])

    def finish(self, n_clips: int, summary: dict) -> None:
        """Seal a validated folder: final ``.npy`` header, ``stats.json``, then the completion marker."""
        FeatureFile(self.out / "features.npy", self.features.row_shape, rows=n_clips).finish()
        write_json(self.out / "stats.json", self.stats())
        sizes = {
            "features_bytes": (self.out / "features.npy").stat().st_size,
            "index_bytes": (self.out / "index.csv").stat().st_size,
        }
        write_json(
            self.out / PREPARED_MARKER,
            {"format_version": STORE_FORMAT, "fingerprint": self.state["fingerprint"], **sizes, **summary},
        )
        self.progress_path.unlink(missing_ok=True)


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def mean_std(sums, frames: int) -> dict[str, list[float]]:
    """Per-mel mean and std from running ``[sum, sum of squares]`` over ``frames`` frames."""
    total, total_sq = np.asarray(sums[0]), np.asarray(sums[1])
    mean = total / max(frames, 1)
    std = np.sqrt(np.maximum(total_sq / max(frames, 1) - mean**2, 1e-10))
    return {"mean": mean.tolist(), "std": std.tolist()}
