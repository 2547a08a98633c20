"""The feature store: a float16 ``.npy`` grown by appending, plus ``index.csv``.

``features.npy`` is written with a fixed-size header that is rewritten with
the final shape when the store is finished, so rows stream to disk (flat
memory) and the result is an ordinary ``.npy`` that ``np.load(mmap_mode="r")``
opens. The folder counts as complete only once ``prepared.json`` exists; it is
written last, atomically.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text
from .config import Config, load_config

__all__ = ["StoreError", "INDEX_COLUMNS", "FeatureFile", "PreparedData", "open_prepared", "write_json",
           "PREPARED_MARKER", "FORMAT_VERSION", "open_prepared_many", "ConcatRows"]

INDEX_COLUMNS = ("clip_id", "file", "offset", "domain", "label", "split")
PREPARED_MARKER = "prepared.json"
FORMAT_VERSION = 1
_HEADER_LEN = 128  # bytes, a multiple of 64 as the .npy format asks


class StoreError(ValueError):
    """A prepared folder is missing, incomplete or inconsistent."""


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


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


@dataclass
class PreparedData:
    """An opened, complete prepared folder."""

    root: Path
    config: Config
    features: np.ndarray          # (N, n_mels, frames) float16 memmap
    index: list[dict[str, str]]   # one dict per clip, INDEX_COLUMNS
    classes: list[str]
    domains: list[str]            # domains[0] is the source
    stats: dict[str, list[float]]
    roots: list[Path] | None = None  # all folders when several are opened together

    def rows(self, split: str, domain: str | None = None, source: bool | None = None) -> np.ndarray:
        """Row numbers of clips in ``split`` (optionally one domain, or source / non-source)."""
        src = self.domains[0]
        keep = [i for i, r in enumerate(self.index) if r["split"] == split
                and (domain is None or r["domain"] == domain)
                and (source is None or (r["domain"] == src) == source)]
        return np.asarray(keep, dtype=np.int64)

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """Class indices of ``rows`` (-1 where the clip has no known label)."""
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([lookup.get(self.index[i]["label"], -1) for i in rows], dtype=np.int64)

    def domain_ids(self, rows: np.ndarray) -> np.ndarray:
        lookup = {d: i for i, d in enumerate(self.domains)}
        return np.asarray([lookup[self.index[i]["domain"]] for i in rows], dtype=np.int64)


class ConcatRows:
    """Rows of several feature memmaps seen as one array (read-only, fancy-indexable)."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            k = int(np.searchsorted(self.offsets, idx, side="right") - 1)
            return self.parts[k][idx - self.offsets[k]]
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64)
        out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        for k in np.unique(which):
            mask = which == k
            out[mask] = self.parts[k][idx[mask] - self.offsets[k]]
        return out


def open_prepared_many(roots: list[str | Path]) -> PreparedData:
    """Several prepared folders (e.g. shards of one corpus) as one: same features and classes required.

    Domains are merged by name (the source first); normalisation stats are pooled, weighted by the
    number of training clips of each folder.
    """
    if len(roots) == 1:
        return open_prepared(roots[0])
    parts = [open_prepared(r) for r in roots]
    first = parts[0]
    for p in parts[1:]:
        if p.config.features != first.config.features:
            raise StoreError(f"{p.root}: prepared with other feature settings than {first.root}; prepare both alike")
        if p.classes != first.classes:
            raise StoreError(f"{p.root}: classes {p.classes} differ from {first.classes} in {first.root}")
    domains = list(first.domains)
    for p in parts[1:]:
        domains += [d for d in p.domains if d not in domains]
    weights = np.array([sum(1 for r in p.index if r["split"] == "train") for p in parts], dtype=float)
    weights = weights / max(weights.sum(), 1)
    means = np.array([p.stats["mean"] for p in parts])
    second = np.array([np.square(p.stats["std"]) + np.square(p.stats["mean"]) for p in parts])
    mean = weights @ means
    std = np.sqrt(np.maximum(weights @ second - mean ** 2, 1e-10))
    return PreparedData(first.root, first.config, ConcatRows([p.features for p in parts]),
                        [r for p in parts for r in p.index], first.classes, domains,
                        {"mean": mean.tolist(), "std": std.tolist()}, roots=[p.root for p in parts])


def open_prepared(root: str | Path) -> PreparedData:
    """Open a complete prepared folder, or raise :class:`StoreError` naming what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"{root}: prepared folder not found (run `audio-dann prepare` first)")
    marker = root / PREPARED_MARKER
    if not marker.is_file():
        raise StoreError(f"{root}: prepared folder is incomplete (no {PREPARED_MARKER}); run the same "
                         "`audio-dann prepare` command again to finish it")
    try:
        info = json.loads(marker.read_text())
        if int(info.get("format_version", 0)) > FORMAT_VERSION:
            raise StoreError(f"{root}: prepared with a newer audio-dann (format {info['format_version']})")
        config = load_config(root / "config.yaml")
        classes = json.loads((root / "classes.json").read_text())
        domains = json.loads((root / "domains.json").read_text())
        stats = json.loads((root / "stats.json").read_text())
        with open(root / "index.csv", newline="") as f:
            index = list(csv.DictReader(f))
        features = np.load(root / "features.npy", mmap_mode="r")
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"{root}: prepared folder is damaged ({exc})") from None
    if len(index) != len(features):
        raise StoreError(f"{root}: index.csv has {len(index)} rows but features.npy has {len(features)}")
    return PreparedData(root, config, features, index, classes, domains, stats)


