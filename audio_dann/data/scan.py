"""Finding input files: labelled class folders, flat unlabelled folders, CSV manifests.

A labelled folder is ``ROOT/<class>/**`` audio, an unlabelled one ``ROOT/**``
audio (subfolder names ignored), a manifest a CSV with ``path,label`` and
optional ``domain,split`` columns, paths relative to the CSV. Results are
sorted, so every later step is deterministic.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ScanError
from .audio import AUDIO_EXTENSIONS

__all__ = ["Item", "scan_labelled", "scan_unlabelled", "read_manifest", "scan_input", "find_audio", "list_inputs"]


@dataclass(frozen=True)
class Item:
    """One input file: where it is, its class (None when unlabelled), its domain and split."""

    path: str
    label: str | None
    domain: str
    split: str | None = None


def find_audio(root: Path) -> list[Path]:
    """Audio files below ``root`` (any depth, hidden files skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return sorted(found)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise ScanError(f"{path}: no such file or folder")
    return path


def scan_labelled(root: str | Path, domain: str = "source") -> list[Item]:
    """``ROOT/<class>/**`` audio; a class folder without audio files is an error."""
    root = _existing(root)
    if not root.is_dir():
        raise ScanError(f"{root}: expected a folder of class folders or a .csv manifest")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        loose = find_audio(root)
        hint = " (it holds audio files directly: put them in one folder per class)" if loose else ""
        raise ScanError(f"{root}: no class folders found{hint}")
    items = []
    for cls in classes:
        files = find_audio(cls)
        if not files:
            raise ScanError(f"{cls}: class folder {cls.name!r} holds no audio files")
        items += [Item(str(f), cls.name, domain) for f in files]
    return items


def scan_unlabelled(root: str | Path, domain: str = "target") -> list[Item]:
    """``ROOT/**`` audio, labels unknown."""
    root = _existing(root)
    if not root.is_dir():
        raise ScanError(f"{root}: expected a folder of audio files or a .csv manifest")
    files = find_audio(root)
    if not files:
        raise ScanError(f"{root}: folder holds no audio files ({', '.join(AUDIO_EXTENSIONS[:4])}, ...)")
    return [Item(str(f), None, domain) for f in files]


def read_manifest(path: str | Path, domain: str, require_label: bool) -> list[Item]:
    """A CSV manifest with ``path,label[,domain,split]``; relative paths are taken from the CSV's folder."""
    path = _existing(path)
    base = path.parent
    items = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ScanError(f"{path}: a manifest needs a header with a 'path' column (and 'label')")
        if require_label and "label" not in reader.fieldnames:
            raise ScanError(f"{path}: a labelled manifest needs a 'label' column")
        for lineno, row in enumerate(reader, start=2):
            p = (row.get("path") or "").strip()
            if not p:
                raise ScanError(f"{path}:{lineno}: empty path")
            label = (row.get("label") or "").strip() or None
            if require_label and label is None:
                raise ScanError(f"{path}:{lineno}: empty label for {p}")
            full = Path(p) if Path(p).is_absolute() else base / p
            items.append(Item(str(full), label, (row.get("domain") or "").strip() or domain,
                              (row.get("split") or "").strip() or None))
    if not items:
        raise ScanError(f"{path}: manifest lists no files")
    return items


def scan_input(path: str | Path, domain: str, labelled: bool) -> list[Item]:
    """A folder or a ``.csv`` manifest, labelled or not."""
    path = _existing(path)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ScanError(f"{path}: expected a folder or a .csv manifest")
        return read_manifest(path, domain, require_label=labelled)
    return scan_labelled(path, domain) if labelled else scan_unlabelled(path, domain)


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
