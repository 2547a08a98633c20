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
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..config import Config, config_to_dict, dump_config
from ..errors import PrepareError, ScanError
from ..files import check_distinct_paths, check_output_dir, output_lock, path_list, write_json
from ..nn.frontend import LogMel
from ..runtime import cpu_cores, derive_seed, steady_heap
from .level_check import prepared_level_check
from .scan import Item, scan_input
from .store import PREPARED_MARKER
from .store_writer import StoreWriter
from .stream import stream_length, stream_mono, stream_windows
from .workers import ChunkDataset, file_chunks, file_loader

__all__ = ["FileFeatures", "PrepareSummary", "plan_items", "prepare"]

_OUR_FILES = {
    "config.yaml",
    "index.csv",
    "features.npy",
    "stats.json",
    "classes.json",
    "domains.json",
    "skipped.csv",
    "progress.json",
    PREPARED_MARKER,
}


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
    links_skipped: int = 0
    rebuilt_because: str | None = None
    level_check: dict | None = None  # can the source's classes be told apart by level alone? (level_check.py)

    def line(self) -> str:
        return (
            f"{self.files_read} files read, {self.clips_written} clips written, "
            f"{self.files_skipped} files skipped -> {self.out}"
        )


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
    rng = np.random.default_rng(derive_seed(seed, "split/source"))
    for label in sorted(by_class):
        group = by_class[label]
        order = rng.permutation(len(group))
        n_val = int(np.floor(len(group) * val_fraction + 0.5)) if val_fraction > 0 else 0
        if val_fraction > 0 and len(group) >= 2:
            n_val = min(max(n_val, 1), len(group) - 1)
        val = set(order[:n_val].tolist())
        out += [replace(it, split="val" if i in val else "train") for i, it in enumerate(group)]
    return sorted(out, key=lambda it: it.path)


def plan_items(
    source: str | Path,
    targets: Sequence[str | Path],
    target_eval: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    exclude: Sequence[str | Path] = (),
    counts: dict[str, int] | None = None,
) -> tuple[list[Item], list[str], list[str]]:
    """Scan the inputs and assign splits: returns ``(items, classes, domains)``.

    Source files are split train/val; target files are ``train`` (unlabelled for training: a
    ``label`` column in a target manifest is ignored); target-eval files are ``test`` (report
    only). Folders in ``exclude`` (the output) are not scanned; ``counts`` collects skipped links.
    """
    src = [replace(i, domain="source") for i in scan_input(source, "source", True, exclude, counts)]
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
        found = [replace(i, split="train", label=None) for i in scan_input(t, name, False, exclude, counts)]
        for d in sorted({i.domain for i in found}):
            if d not in taken:
                taken.add(d)
                target_domains.append(d)
        items += sorted(found, key=lambda it: it.path)
    if target_eval is not None:
        default = target_domains[0] if len(target_domains) == 1 else "target-eval"
        items += sorted(
            (replace(i, split="test") for i in scan_input(target_eval, default, True, exclude, counts)),
            key=lambda it: it.path,
        )
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


class FileFeatures(ChunkDataset):
    """Worker side: file ``i`` -> ``(float16 log-mel clips, clip starts in s, seconds, stats sums)``.

    The file is decoded as a stream (:mod:`.stream`) and its windows turned into log-mels a batch at a
    time. With ``spill_dir`` set, the clips of a file beyond ``spill_clips`` go to a raw float16 spill
    file there, whose path is returned instead of the array: memory does not grow with a file's length.
    """

    def __init__(
        self,
        items: list[Item],
        chunks: list[tuple[int, int]],
        config: Config,
        spill_dir: Path | None = None,
        spill_clips: int = 2048,
    ) -> None:
        super().__init__(chunks)
        self.items, self.cfg = items, config.features
        self.batch = config.data.batch_size
        self.spill_dir, self.spill_clips = spill_dir, spill_clips
        self._frontend: LogMel | None = None

    def work(self, i: int) -> tuple:
        cfg, path = self.cfg, self.items[i].path
        if self._frontend is None:  # built lazily, once per worker process
            self._frontend = LogMel.from_config(cfg).eval()
        hop = int(round(cfg.hop_seconds * cfg.sample_rate))
        feats, starts, n, spill = [], [], 0, None
        sums = np.zeros((2, cfg.n_mels))
        spill_path = self.spill_dir / f"{i}.{os.getpid()}.f16" if self.spill_dir is not None else None
        try:
            for st, wins in stream_windows(
                stream_mono(path, cfg.sample_rate), cfg.clip_samples, hop, cfg.pad_mode, self.batch, path
            ):
                with torch.inference_mode():
                    clips = self._frontend(torch.from_numpy(wins)).half().numpy()
                wide = clips.astype(np.float64)  # the stored float16 values, summed in float64
                sums += np.stack([wide.sum(axis=(0, 2)), np.square(wide).sum(axis=(0, 2))])
                starts.append(st)
                if spill is None and spill_path is not None and n + len(clips) > self.spill_clips:
                    spill = open(spill_path, "wb")
                    for f in feats:
                        spill.write(f.tobytes())
                    feats = []
                (spill.write(clips.tobytes()) if spill is not None else feats.append(clips))
                n += len(clips)
        except BaseException:
            if spill is not None:
                spill.close()
                spill_path.unlink(missing_ok=True)
            raise
        if spill is not None:
            spill.close()
        out = str(spill_path) if spill is not None else np.concatenate(feats)
        return out, np.concatenate(starts) / cfg.sample_rate, stream_length(path), sums


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PrepareError(f"{out}: output path exists and is not a folder")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in _OUR_FILES and not p.name.startswith(".")]
        if foreign:
            raise PrepareError(
                f"{out}: output folder holds other files ({', '.join(sorted(foreign)[:3])}); "
                "choose an empty or new folder"
            )


def prepare(
    source: str | Path,
    targets: Sequence[str | Path],
    out: str | Path,
    *,
    target_eval: str | Path | None = None,
    config: Config | None = None,
    progress: Callable[[int, int, int, float], None] | None = None,
) -> PrepareSummary:
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
    targets = [targets] if isinstance(targets, (str, Path)) else list(targets)
    check_distinct_paths(targets, "--target")  # a folder given twice would be read twice
    out = check_output_dir(out, inputs=[source, *targets, *path_list(target_eval)], own="prepared folder")
    _check_out(out)
    if not targets:
        raise PrepareError("prepare needs at least one --target folder or manifest of unlabelled clips")
    steady_heap()
    with output_lock(out):
        return _prepare(source, targets, out, target_eval, config, progress, t0)


def _prepare(source, targets: list, out: Path, target_eval, config: Config, progress, t0: float) -> PrepareSummary:
    counts: dict[str, int] = {}
    items, classes, domains = plan_items(
        source, targets, target_eval, config.data.val_fraction, config.data.seed, exclude=[out], counts=counts
    )
    fp, sizes = _fingerprint(config, items, classes)
    summary = PrepareSummary(out=str(out), files_total=len(items), links_skipped=counts.get("links_skipped", 0))
    inputs = [str(Path(p).resolve()) for p in [source, *targets, *path_list(target_eval)]]
    if _already_complete(out, fp, summary, inputs):
        return summary

    out.mkdir(parents=True, exist_ok=True)
    cfg = config.features
    writer = StoreWriter(out, (cfg.n_mels, cfg.n_frames), fp)
    summary.resumed_from_file = writer.resumed_from
    if not writer.resumed_from:
        dump_config(config, out / "config.yaml")
        write_json(out / "classes.json", classes)
        write_json(out / "domains.json", domains)
    try:
        _decode_into(writer, items, sizes, config, set(classes), progress)
    finally:
        writer.close()

    n_clips, by_split = _validate(out, source, len(items), classes, domains)
    summary.files_read = writer.state["files_read"]
    summary.files_skipped = writer.state["files_skipped"]
    summary.clips_written = n_clips
    summary.audio_seconds = writer.state["audio_seconds"]
    summary.clips_by_split = by_split
    summary.level_check = prepared_level_check(out)
    summary.seconds = time.perf_counter() - t0
    writer.finish(
        n_clips,
        {
            k: v
            for k, v in asdict(summary).items()
            if k not in ("out", "already_complete", "resumed_from_file", "links_skipped", "rebuilt_because")
        }
        | {"inputs": inputs},
    )
    return summary


def _already_complete(out: Path, fingerprint: str, summary: PrepareSummary, inputs: list[str]) -> bool:
    """True (and ``summary`` filled in) when ``out`` is complete for these inputs; a folder complete for
    other input folders is refused (it would be wiped); one whose input files or settings changed since
    loses its marker, to be rebuilt."""
    marker = out / PREPARED_MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        info = {}
    if info.get("inputs") is not None and info["inputs"] != inputs:
        raise PrepareError(
            f"{out}: already prepared from {', '.join(info['inputs'])}; choose a new --out for other inputs "
            "(or delete the folder)"
        )
    if info.get("fingerprint") != fingerprint or not _files_intact(out, info):
        marker.unlink()  # other inputs or settings, or files lost since: rebuilt from the start
        (out / "progress.json").unlink(missing_ok=True)
        summary.rebuilt_because = (
            "the inputs or feature settings differ from the finished folder's"
            if info.get("fingerprint") != fingerprint
            else "its files were damaged or lost"
        )
        return False
    summary.already_complete = True
    summary.__dict__.update(
        {
            k: info[k]
            for k in ("files_read", "files_skipped", "clips_written", "audio_seconds", "clips_by_split", "level_check")
            if k in info
        }
    )
    return True


def _files_intact(out: Path, info: dict) -> bool:
    """Do features.npy and index.csv still hold what prepared.json says was written?"""
    features, index = out / "features.npy", out / "index.csv"
    if not (features.is_file() and index.is_file() and (out / "stats.json").is_file()):
        return False
    if "features_bytes" in info:
        return features.stat().st_size == info["features_bytes"] and index.stat().st_size == info["index_bytes"]
    try:  # folders written before the sizes were recorded: the row count must match
        return len(np.load(features, mmap_mode="r")) == info.get("clips_written", -1)
    except (OSError, ValueError):
        return False


def _decode_into(
    writer: StoreWriter,
    items: list[Item],
    sizes: list[int],
    config: Config,
    classes: set[str],
    progress: Callable[[int, int, int, float], None] | None,
) -> None:
    """Decode the files not done yet in worker processes and hand each to ``writer``, in order."""
    workers = cpu_cores() if config.data.workers is None else config.data.workers
    spill = writer.out / ".spill"
    if spill.is_dir():  # spill files of a killed run
        for stale in spill.iterdir():
            stale.unlink()
    spill.mkdir(exist_ok=True)
    dataset = FileFeatures(items, file_chunks(sizes, writer.resumed_from), config, spill_dir=spill)
    for i, decoded, reason in (result for chunk in file_loader(dataset, workers) for result in chunk):
        item = items[i]
        if decoded is None:
            writer.skip(item.path, reason)
        elif item.label is not None and item.label not in classes:
            writer.skip(item.path, f"label {item.label!r} is not a source class")
        else:
            writer.add(item.path, item.domain, item.label, item.split, *decoded)
        writer.file_done(i)
        if progress is not None:
            progress(i + 1, len(items), writer.clips, writer.state["audio_seconds"])
    writer.save()
    spill.rmdir()


def _validate(out: Path, source, n_items: int, classes: list[str], domains: list[str]) -> tuple[int, dict[str, int]]:
    """Check the written index before calling the folder complete (one streaming pass over index.csv);
    returns the clip count and the clips per split."""
    n_clips, train_classes, target_domains = 0, set(), set()
    by_split: dict[str, int] = defaultdict(int)
    with open(out / "index.csv", newline="") as f:
        for r in csv.DictReader(f):
            n_clips += 1
            by_split[f"{'source' if r['domain'] == 'source' else 'target'}_{r['split']}"] += 1
            if r["split"] == "train":
                (train_classes.add(r["label"]) if r["domain"] == "source" else target_domains.add(r["domain"]))
    if not n_clips:
        raise PrepareError(f"{source}: no usable audio files (all {n_items} skipped; see {out / 'skipped.csv'})")
    missing = [c for c in classes if c not in train_classes]
    if missing:
        raise PrepareError(
            f"{source}: source class {missing[0]!r} has no usable training files (see {out / 'skipped.csv'})"
        )
    for d in domains[1:]:
        if d not in target_domains:
            raise PrepareError(f"target domain {d!r}: no usable files (see {out / 'skipped.csv'})")
    return n_clips, dict(by_split)
