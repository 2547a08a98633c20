"""The feature store's format, and reading it: ``features.npy`` (float16) plus ``index.csv``.

``features.npy`` is an ordinary ``.npy`` that ``np.load(mmap_mode="r")`` opens; the
folder counts as complete only once ``prepared.json`` exists (written last, atomically,
by :mod:`.store_writer`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config, load_config
from ..errors import StoreError

__all__ = [
    "INDEX_COLUMNS",
    "PreparedData",
    "open_prepared",
    "PREPARED_MARKER",
    "STORE_FORMAT",
    "open_prepared_many",
    "ConcatRows",
]

INDEX_COLUMNS = ("clip_id", "file", "offset", "domain", "label", "split")
PREPARED_MARKER = "prepared.json"
STORE_FORMAT = 1  # the prepared folder's format (model bundles have their own, nn.bundle.BUNDLE_FORMAT)


@dataclass
class PreparedData:
    """An opened, complete prepared folder."""

    root: Path
    config: Config
    features: np.ndarray  # (N, n_mels, frames) float16 memmap
    index: list[dict[str, str]]  # one dict per clip, INDEX_COLUMNS
    classes: list[str]
    domains: list[str]  # domains[0] is the source
    stats: dict[str, list[float]]
    roots: list[Path] | None = None  # all folders when several are opened together
    level_checks: list[dict] = field(default_factory=list)  # prepare's level checks (data/level_check.py)

    def rows(self, split: str, domain: str | None = None, source: bool | None = None) -> np.ndarray:
        """Row numbers of clips in ``split`` (optionally one domain, or source / non-source)."""
        src = self.domains[0]
        keep = [
            i
            for i, r in enumerate(self.index)
            if r["split"] == split
            and (domain is None or r["domain"] == domain)
            and (source is None or (r["domain"] == src) == source)
        ]
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
    seen: dict[Path, str | Path] = {}
    for r in roots:
        key = Path(r).resolve()
        if key in seen:
            raise StoreError(f"{r}: given twice (also as {seen[key]}); each prepared folder counts once")
        seen[key] = r
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
    std = np.sqrt(np.maximum(weights @ second - mean**2, 1e-10))
    return PreparedData(
        first.root,
        first.config,
        ConcatRows([p.features for p in parts]),
        [r for p in parts for r in p.index],
        first.classes,
        domains,
        {"mean": mean.tolist(), "std": std.tolist()},
        roots=[p.root for p in parts],
        level_checks=[c for p in parts for c in p.level_checks],
    )


def open_prepared(root: str | Path) -> PreparedData:
    """Open a complete prepared folder, or raise :class:`StoreError` naming what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"{root}: prepared folder not found (run `audio-dann prepare` first)")
    marker = root / PREPARED_MARKER
    if not marker.is_file():
        raise StoreError(
            f"{root}: prepared folder is incomplete (no {PREPARED_MARKER}); run the same "
            "`audio-dann prepare` command again to finish it"
        )
    try:
        info = json.loads(marker.read_text())
        if int(info.get("format_version", 0)) > STORE_FORMAT:
            raise StoreError(f"{root}: prepared with a newer audio-dann (format {info['format_version']})")
        config = load_config(root / "config.yaml")
        classes = json.loads((root / "classes.json").read_text())
        domains = json.loads((root / "domains.json").read_text())
        stats = json.loads((root / "stats.json").read_text())
        with open(root / "index.csv", newline="") as f:
            index = list(csv.DictReader(f))
        features = np.load(root / "features.npy", mmap_mode="r")
    except (OSError, ValueError, KeyError, EOFError) as exc:  # np.load of an empty file raises EOFError
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"{root}: prepared folder is damaged ({exc})") from None
    if len(index) != len(features):
        raise StoreError(f"{root}: index.csv has {len(index)} rows but features.npy has {len(features)}")
    checks = [info["level_check"]] if info.get("level_check") else []
    return PreparedData(root, config, features, index, classes, domains, stats, level_checks=checks)
