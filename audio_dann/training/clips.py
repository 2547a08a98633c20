"""The clips of one run, read from the prepared folder: training data, source validation, the
report-only target test clips and the unlabelled target pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..adaptation.conditions import discover_domains, file_descriptors
from ..data.store import PreparedData
from ..errors import RunError
from .loop import TrainData

__all__ = ["Clips", "load_clips", "RowView", "take_rows"]

_IN_MEMORY_LIMIT = 2 * 1024**3  # bytes of float16 features loaded into RAM; beyond, read from the memmap


@dataclass
class Clips:
    """The clips of one run: training data, source validation, report-only target test and pool."""

    data: TrainData
    n_source: int
    n_target: int
    val_x: Any
    val_y: np.ndarray
    test_x: Any
    test_y: np.ndarray
    pool_x: Any  # the unlabelled target training clips
    pool_y: np.ndarray | None  # their labels where a manifest carried them (report only), else None
    pool_files: list[str]  # the file of each pool clip
    domains: list[str]  # the domain head's classes: the source, then the target domains
    latent: dict | None = None  # how latent domains were discovered (train.latent_domains)
    val_files: np.ndarray | None = None  # the file number of each source validation clip


def load_clips(prep: PreparedData, training: str, latent_domains: int, seed: int) -> Clips:
    """The clips of a run whose loop runs ``training`` (``dann`` reads the target pool into its batches,
    and a flat target may be split into ``latent_domains`` discovered domains)."""
    adapt = training == "dann"
    src_rows = prep.rows("train", source=True)
    tgt_rows = prep.rows("train", source=False)
    val_rows = prep.rows("val", source=True)
    test_rows = prep.rows("test")
    if len(src_rows) == 0:
        raise RunError(f"{prep.root}: no labelled source training clips")
    needed = sum(len(r) for r in (src_rows, tgt_rows, val_rows, test_rows)) * prep.features[0].nbytes
    in_memory = needed <= _IN_MEMORY_LIMIT
    rows = lambda r: _rows_data(prep, r, in_memory)  # noqa: E731
    target_x = rows(tgt_rows)
    pool_files = [prep.index[i]["file"] for i in tgt_rows]
    domains, domain_ids, latent = list(prep.domains), prep.domain_ids(tgt_rows), None
    if adapt and latent_domains != 0 and len(prep.domains) == 2 and len(tgt_rows):
        desc, which = file_descriptors(prep.features, tgt_rows, pool_files)
        labels, latent = discover_domains(desc, seed, k=max(latent_domains, 0))
        if latent["k"] > 1:
            domains = [prep.domains[0], *[f"{prep.domains[1]}~{j}" for j in range(latent["k"])]]
            domain_ids = 1 + labels[which]
    data = TrainData(
        source_x=rows(src_rows),
        source_y=torch.from_numpy(prep.labels(src_rows)),
        target_x=target_x if adapt else None,
        target_domain=torch.from_numpy(np.asarray(domain_ids, dtype=np.int64)) if adapt else None,
    )
    pool_y = prep.labels(tgt_rows)
    has_pool_labels = len(tgt_rows) > 0 and bool((pool_y >= 0).all())
    return Clips(
        data,
        len(src_rows),
        len(tgt_rows),
        rows(val_rows),
        prep.labels(val_rows),
        rows(test_rows),
        prep.labels(test_rows),
        target_x,
        pool_y if has_pool_labels else None,
        pool_files,
        domains,
        latent,
        np.unique([prep.index[i]["file"] for i in val_rows], return_inverse=True)[1] if len(val_rows) else None,
    )


def _rows_data(prep: PreparedData, rows: np.ndarray, in_memory: bool):
    if in_memory:
        return torch.from_numpy(np.ascontiguousarray(prep.features[rows]))
    return RowView(prep.features, rows)


class RowView:
    """A lazy view ``features[rows]`` over a memmap (no copy until indexed)."""

    def __init__(self, features: np.ndarray, rows: np.ndarray) -> None:
        self.features, self.rows = features, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx):
        return self.features[self.rows[idx]]


def take_rows(x, rows: np.ndarray) -> torch.Tensor:
    """Rows of a tensor or a lazy view, as a tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x[rows]))) if not isinstance(x, torch.Tensor) else x[rows]
