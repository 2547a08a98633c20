"""``prepare``: folders or manifests of recordings -> a training-ready feature store.

Files are decoded in parallel DataLoader workers (decode, mono, resample,
slice, and the batched log-mel frontend on each file's clips), and the main
process streams the float16 features into ``features.npy``. Bad files are skipped and listed
in ``skipped.csv``. Progress is checkpointed in ``progress.json`` so a killed
run resumes where it stopped; ``prepared.json``, written last, marks the
folder complete.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .audio import AudioError, gather_windows, load_mono, plan_windows
from .config import Config, config_to_dict, dump_config
from .frontend import LogMel
from .scan import Item, ScanError, scan_input
from .store import FORMAT_VERSION, INDEX_COLUMNS, PREPARED_MARKER, FeatureFile, write_json
from .workers import cpu_cores, file_chunks, file_loader

__all__ = ["PrepareError", "PrepareSummary", "plan_items", "prepare"]

_OUR_FILES = {"config.yaml", "index.csv", "features.npy", "stats.json", "classes.json", "domains.json",
              "skipped.csv", "progress.json", PREPARED_MARKER}


class PrepareError(ValueError):
    """The inputs or the output folder cannot be used; the message names the path."""


@dataclass
class PrepareSummary:
    out: str
    files_total: int
    files_read: int = 0
    files_skipped: int = 0
    clips_written: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    clips_by_split: dict[str, int] = field(default_factory=dict)
    resumed_from_file: int = 0
    already_complete: bool = False

    def line(self) -> str:
        return (f"{self.files_read} files read, {self.clips_written} clips written, "
                f"{self.files_skipped} files skipped -> {self.out}")


def _domain_name(path: str | Path, taken: set[str]) -> str:
    base = Path(path).stem if Path(path).suffix.lower() == ".csv" else Path(path).name
    name, k = base or "target", 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def _split_source(items: list[Item], val_fraction: float, seed: int) -> list[Item]:
    """Stratified train/val split by class at file level; a manifest's own split wins."""
    by_class: dict[str, list[Item]] = defaultdict(list)
    out = []
    for it in items:
        (out.append(it) if it.split else by_class[it.label].append(it))
    rng = np.random.default_rng([seed, 0xDA7A])
    for label in sorted(by_class):
        group = by_class[label]
        order = rng.permutation(len(group))
        n_val = int(np.floor(len(group) * val_fraction + 0.5)) if val_fraction > 0 else 0
        if val_fraction > 0 and len(group) >= 2:
            n_val = min(max(n_val, 1), len(group) - 1)
        val = set(order[:n_val].tolist())
        out += [replace(it, split="val" if i in val else "train") for i, it in enumerate(group)]
    return sorted(out, key=lambda it: it.path)


def plan_items(source: str | Path, targets: Sequence[str | Path], target_eval: str | Path | None = None,
               val_fraction: float = 0.1, seed: int = 0) -> tuple[list[Item], list[str], list[str]]:
    """Scan the inputs and assign splits: returns ``(items, classes, domains)``.

    Source files are split train/val; target files are ``train`` (unlabelled for
    training); target-eval files are ``test`` (report only).
    """
    src = [replace(i, domain="source") for i in scan_input(source, "source", labelled=True)]
    bad = sorted({i.split for i in src if i.split not in (None, "train", "val")})
    if bad:
        raise ScanError(f"{source}: source split must be train or val, got {', '.join(bad)}")
    src = _split_source(src, val_fraction, seed)
    classes = sorted({i.label for i in src})
    items = list(src)
    taken = {"source"}
    target_domains: list[str] = []
    for t in targets:
        name = _domain_name(t, taken)
        found = [replace(i, split="train") for i in scan_input(t, name, labelled=False)]
        for d in sorted({i.domain for i in found}):
            if d not in taken:
                taken.add(d)
                target_domains.append(d)
        items += sorted(found, key=lambda it: it.path)
    if target_eval is not None:
        default = target_domains[0] if len(target_domains) == 1 else "target-eval"
        items += sorted((replace(i, split="test") for i in scan_input(target_eval, default, labelled=True)),
                        key=lambda it: it.path)
    return items, classes, ["source", *target_domains]


def _fingerprint(config: Config, items: list[Item], classes: list[str]) -> tuple[str, list[int]]:
    """A hash of the settings and inputs (paths, labels, splits, sizes, mtimes); and each file's size."""
    h = hashlib.sha256()
    h.update(json.dumps(config_to_dict(config)["features"], sort_keys=True).encode())
    h.update(json.dumps(classes).encode())
    sizes = []
    for it in items:
        try:
            st = os.stat(it.path)
            stamp, size = f"{st.st_size}:{st.st_mtime_ns}", st.st_size
        except OSError:
            stamp, size = "missing", 0
        sizes.append(size)
        h.update(f"{it.path}\t{it.label}\t{it.domain}\t{it.split}\t{stamp}\n".encode())
    return h.hexdigest()[:16], sizes


class _Decode(torch.utils.data.Dataset):
    """Worker side: a chunk of files -> per file, float16 log-mel clips (or the reason it failed)."""

    def __init__(self, items: list[Item], chunks: list[tuple[int, int]], config: Config) -> None:
        self.items, self.chunks, self.cfg = items, chunks, config.features
        self.batch = config.data.batch_size
        self._frontend: LogMel | None = None

    def _logmel(self, signal: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """float16 log-mels of the windows at ``starts``, cut a batch at a time: a long recording
        never has all its (overlapping) windows in memory at once."""
        if self._frontend is None:  # built lazily, once per worker process
            self._frontend = LogMel.from_config(self.cfg).eval()
        clip = self.cfg.clip_samples
        with torch.inference_mode():
            return torch.cat([self._frontend(torch.from_numpy(gather_windows(signal, starts[s:s + self.batch], clip)))
                              .half() for s in range(0, len(starts), self.batch)]).numpy()

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: int) -> list[tuple]:
        return [self._one(i) for i in range(*self.chunks[k])]

    def _one(self, i: int) -> tuple:
        cfg = self.cfg
        try:
            x = load_mono(self.items[i].path, cfg.sample_rate)
            if not x.any():
                return i, None, None, "all samples are zero (silent file)", None
            signal, offsets = plan_windows(x, cfg.clip_samples, int(round(cfg.hop_seconds * cfg.sample_rate)),
                                           cfg.pad_mode)
            clips = self._logmel(signal, offsets)
            sums = np.zeros((2, clips.shape[1]))
            for s in range(0, len(clips), 256):  # the stored float16 values, summed in float64 (in blocks)
                wide = clips[s:s + 256].astype(np.float64)
                sums += np.stack([wide.sum(axis=(0, 2)), np.square(wide).sum(axis=(0, 2))])
            return i, clips, offsets / cfg.sample_rate, len(x) / cfg.sample_rate, sums
        except AudioError as exc:
            return i, None, None, exc.reason, None
        except Exception as exc:  # noqa: BLE001 - one bad file must never stop the run
            return i, None, None, f"cannot read ({type(exc).__name__}: {exc})", None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PrepareError(f"{out}: output path exists and is not a folder")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in _OUR_FILES and not p.name.startswith(".")]
        if foreign:
            raise PrepareError(f"{out}: output folder holds other files ({', '.join(sorted(foreign)[:3])}); "
                               "choose an empty or new folder")


def _stats(sums: list[list[float]], frames: int) -> dict[str, list[float]]:
    """Per-mel mean and std from running ``[sum, sum of squares]`` over ``frames`` frames."""
    total, total_sq = np.asarray(sums[0]), np.asarray(sums[1])
    mean = total / max(frames, 1)
    std = np.sqrt(np.maximum(total_sq / max(frames, 1) - mean ** 2, 1e-10))
    return {"mean": mean.tolist(), "std": std.tolist()}


# Progress (and the features behind it) is made durable at most this often: each save
# rewrites progress.json, which cost more than decoding a file when done per batch.
_SAVE_EVERY_SECONDS = 2.0
_MAX_PENDING_CLIPS = 2048


def prepare(source: str | Path, targets: Sequence[str | Path], out: str | Path, *,
            target_eval: str | Path | None = None, config: Config | None = None,
            progress: Callable[[int, int, int, float], None] | None = None) -> PrepareSummary:
    """Build (or resume, or confirm) the prepared folder ``out``.

    Args:
        source: labelled folder or manifest.
        targets: unlabelled folders or manifests, one target domain each (manifests may name domains).
        out: the prepared folder to write.
        target_eval: optional labelled target clips (split ``test``, report only).
        config: features (clip slicing, log-mel) and data (val split, seed, workers) settings.
        progress: ``(files_done, files_total, clips_written, audio_seconds)`` callback.
    Raises:
        ScanError, PrepareError: bad inputs or output folder (one line naming the path).
    """
    t0 = time.perf_counter()
    config = (config or Config()).validate()
    out = Path(out)
    _check_out(out)
    if not targets:
        raise PrepareError("prepare needs at least one --target folder or manifest of unlabelled clips")
    items, classes, domains = plan_items(source, targets, target_eval, config.data.val_fraction, config.data.seed)
    fp, sizes = _fingerprint(config, items, classes)
    summary = PrepareSummary(out=str(out), files_total=len(items))

    marker = out / PREPARED_MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("fingerprint") == fp:
            summary.already_complete = True
            summary.__dict__.update({k: info[k] for k in ("files_read", "files_skipped", "clips_written",
                                                          "audio_seconds", "clips_by_split") if k in info})
            return summary
        marker.unlink()  # different inputs or settings: rebuild; the folder is now not complete

    out.mkdir(parents=True, exist_ok=True)
    cfg = config.features
    row_shape = (cfg.n_mels, cfg.n_frames)
    state = {"fingerprint": fp, "files_done": 0, "clips": 0, "index_bytes": 0, "skipped_bytes": 0,
             "files_read": 0, "files_skipped": 0, "audio_seconds": 0.0,
             "stats_sums": np.zeros((2, cfg.n_mels)).tolist(), "stats_frames": 0}
    progress_path = out / "progress.json"
    if progress_path.is_file():
        try:
            old = json.loads(progress_path.read_text())
            if old.get("fingerprint") == fp and "stats_sums" in old and (out / "features.npy").is_file():
                state = old
        except ValueError:
            pass
    resume = state["files_done"] > 0
    summary.resumed_from_file = state["files_done"]
    if not resume:
        dump_config(config, out / "config.yaml")
        write_json(out / "classes.json", classes)
        write_json(out / "domains.json", domains)
    features = FeatureFile(out / "features.npy", row_shape, rows=state["clips"] if resume else 0)
    index_f = open(out / "index.csv", "r+" if resume else "w", newline="")
    skipped_f = open(out / "skipped.csv", "r+" if resume else "w", newline="")
    for f, key, header in ((index_f, "index_bytes", INDEX_COLUMNS), (skipped_f, "skipped_bytes", ("file", "reason"))):
        if resume:
            f.truncate(state[key])
            f.seek(state[key])
        else:
            f.write(",".join(header) + "\n")
    class_ok = set(classes)

    workers = cpu_cores() if config.data.workers is None else config.data.workers
    loader = file_loader(_Decode(items, file_chunks(sizes, state["files_done"]), config), workers)

    pending_feats: list[np.ndarray] = []
    pending_rows: list[list[str]] = []
    pending_skips: list[list[str]] = []

    stats_sums = np.asarray(state["stats_sums"], dtype=np.float64)

    def save() -> None:
        """Append what is pending, then record how far the outputs are durable (for resume)."""
        if pending_feats:
            features.append(np.concatenate(pending_feats))
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(pending_rows)
            index_f.write(buf.getvalue())
        if pending_skips:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(pending_skips)
            skipped_f.write(buf.getvalue())
        pending_feats.clear(), pending_rows.clear(), pending_skips.clear()
        features.flush(), index_f.flush(), skipped_f.flush()
        state.update(clips=features.rows, index_bytes=index_f.tell(), skipped_bytes=skipped_f.tell(),
                     stats_sums=stats_sums.tolist())
        write_json(progress_path, state)

    last_save = time.monotonic()
    try:
        for i, clips, offsets, info, sums in (result for chunk in loader for result in chunk):
            item = items[i]
            if clips is None:
                pending_skips.append([item.path, info])
                state["files_skipped"] += 1
            elif item.label is not None and item.label not in class_ok:
                pending_skips.append([item.path, f"label {item.label!r} is not a source class"])
                state["files_skipped"] += 1
            else:
                pending_feats.append(clips)
                base = len(pending_rows) + features.rows
                pending_rows.extend([str(base + k), item.path, f"{off:.3f}", item.domain, item.label or "",
                                     item.split] for k, off in enumerate(offsets))
                state["files_read"] += 1
                state["audio_seconds"] += float(info)
                if item.split == "train":  # normalisation stats: training clips of every domain
                    stats_sums += sums
                    state["stats_frames"] += clips.shape[0] * clips.shape[2]
            state["files_done"] = i + 1
            if len(pending_rows) >= _MAX_PENDING_CLIPS or time.monotonic() - last_save >= _SAVE_EVERY_SECONDS:
                save()
                last_save = time.monotonic()
            if progress is not None:
                progress(state["files_done"], len(items), features.rows + len(pending_rows), state["audio_seconds"])
        save()
    finally:
        index_f.close()
        skipped_f.close()
        features.close()

    # Validate the result before calling it complete (one streaming pass over index.csv).
    n_clips, train_classes, target_domains = 0, set(), set()
    by_split: dict[str, int] = defaultdict(int)
    with open(out / "index.csv", newline="") as f:
        for r in csv.DictReader(f):
            n_clips += 1
            by_split[f"{'source' if r['domain'] == 'source' else 'target'}_{r['split']}"] += 1
            if r["split"] == "train":
                (train_classes.add(r["label"]) if r["domain"] == "source" else target_domains.add(r["domain"]))
    if not n_clips:
        raise PrepareError(f"{source}: no usable audio files (all {len(items)} skipped; see {out / 'skipped.csv'})")
    missing = [c for c in classes if c not in train_classes]
    if missing:
        raise PrepareError(f"{source}: source class {missing[0]!r} has no usable training files "
                           f"(see {out / 'skipped.csv'})")
    for d in domains[1:]:
        if d not in target_domains:
            raise PrepareError(f"target domain {d!r}: no usable files (see {out / 'skipped.csv'})")
    features = FeatureFile(out / "features.npy", row_shape, rows=n_clips)
    features.finish()
    write_json(out / "stats.json", _stats(state["stats_sums"], state["stats_frames"]))
    summary.files_read = state["files_read"]
    summary.files_skipped = state["files_skipped"]
    summary.clips_written = n_clips
    summary.audio_seconds = state["audio_seconds"]
    summary.clips_by_split = dict(by_split)
    summary.seconds = time.perf_counter() - t0
    write_json(marker, {"format_version": FORMAT_VERSION, "fingerprint": fp, **{
        k: v for k, v in asdict(summary).items() if k not in ("out", "already_complete", "resumed_from_file")}})
    progress_path.unlink(missing_ok=True)
    return summary


