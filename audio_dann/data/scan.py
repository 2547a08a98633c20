"""Finding input files: labelled class folders, flat unlabelled folders, CSV manifests.

A labelled folder is ``ROOT/<class>/**`` audio, an unlabelled one ``ROOT/**``
audio (subfolder names ignored), a manifest a CSV with ``path,label`` and
optional ``domain,split`` columns, paths relative to the CSV. Results are
sorted, so every later step is deterministic.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ScanError
from .audio import AUDIO_EXTENSIONS

__all__ = [
    "Item",
    "scan_labelled",
    "scan_unlabelled",
    "read_manifest",
    "scan_input",
    "find_audio",
    "iter_audio",
    "list_inputs",
    "iter_inputs",
    "read_paths",
]


@dataclass(frozen=True)
class Item:
    """One input file: where it is, its class (None when unlabelled), its domain and split."""

    path: str
    label: str | None
    domain: str
    split: str | None = None


def find_audio(root: Path, exclude: Sequence[str | Path] = (), counts: dict[str, int] | None = None) -> list[Path]:
    """Audio files below ``root`` (any depth, hidden files skipped), sorted; each real file once
    (see :func:`iter_audio`)."""
    return sorted(iter_audio(root, exclude, counts))


def iter_audio(root: Path, exclude: Sequence[str | Path] = (), counts: dict[str, int] | None = None) -> Iterator[Path]:
    """Audio files below ``root`` as the walk finds them (each folder's files in name order, then its
    subfolders in name order): a folder of 100,000 files yields its first at once.

    Symbolic links are followed, but a folder or file reached again (the same device and inode: a
    link loop such as ``ln -s . again``, or two links to one file) is skipped and counted in
    ``counts["links_skipped"]``; folders in ``exclude`` (a command's own output) are never entered.
    A folder that cannot be listed (no permission) is yielded itself, after the files: the decoder then
    reports it as skipped with its reason, so its files are never left out in silence.
    """
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    excluded = {os.path.realpath(e) for e in exclude}
    skipped = 0
    unreadable: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable.append):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs or os.path.realpath(dirpath) in excluded:
            skipped += (st.st_dev, st.st_ino) in seen_dirs
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            path = Path(dirpath) / name
            try:
                fst = os.stat(path)
            except OSError:  # a dangling link: listed, and the decoder says why it cannot be read
                yield path
                continue
            if (fst.st_dev, fst.st_ino) in seen_files:
                skipped += 1
                continue
            seen_files.add((fst.st_dev, fst.st_ino))
            yield path
    for err in unreadable:  # a folder gone since it was listed is not worth a row
        if err.filename and not isinstance(err, FileNotFoundError):
            yield Path(err.filename)
    if counts is not None:
        counts["links_skipped"] = counts.get("links_skipped", 0) + skipped


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise ScanError(f"{path}: no such file or folder")
    return path


def scan_labelled(
    root: str | Path, domain: str = "source", exclude: Sequence[str | Path] = (), counts: dict[str, int] | None = None
) -> list[Item]:
    """``ROOT/<class>/**`` audio; a class folder without audio files is an error."""
    root = _existing(root)
    if not root.is_dir():
        raise ScanError(f"{root}: expected a folder of class folders or a .csv manifest")
    excluded = {os.path.realpath(e) for e in exclude}
    classes = sorted(
        d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and os.path.realpath(d) not in excluded
    )
    if not classes:
        loose = find_audio(root, exclude)
        hint = " (it holds audio files directly: put them in one folder per class)" if loose else ""
        raise ScanError(f"{root}: no class folders found{hint}")
    items = []
    for cls in classes:
        files = find_audio(cls, exclude, counts)
        if not files:
            raise ScanError(f"{cls}: class folder {cls.name!r} holds no audio files")
        items += [Item(str(f), cls.name, domain) for f in files]
    return items


def scan_unlabelled(
    root: str | Path, domain: str = "target", exclude: Sequence[str | Path] = (), counts: dict[str, int] | None = None
) -> list[Item]:
    """``ROOT/**`` audio, labels unknown."""
    root = _existing(root)
    if not root.is_dir():
        raise ScanError(f"{root}: expected a folder of audio files or a .csv manifest")
    files = find_audio(root, exclude, counts)
    if not files:
        raise ScanError(f"{root}: folder holds no audio files ({', '.join(AUDIO_EXTENSIONS[:4])}, ...)")
    return [Item(str(f), None, domain) for f in files]


def read_manifest(path: str | Path, domain: str, require_label: bool) -> list[Item]:
    """A CSV manifest with ``path,label[,domain,split]``; relative paths are taken from the CSV's folder."""
    path = _existing(path)
    base = path.parent
    items = []
    with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not part of the header
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
            items.append(
                Item(
                    str(full),
                    label,
                    (row.get("domain") or "").strip() or domain,
                    (row.get("split") or "").strip() or None,
                )
            )
    if not items:
        raise ScanError(f"{path}: manifest lists no files")
    return items


def scan_input(
    path: str | Path,
    domain: str,
    labelled: bool,
    exclude: Sequence[str | Path] = (),
    counts: dict[str, int] | None = None,
) -> list[Item]:
    """A folder or a ``.csv`` manifest, labelled or not (see :func:`find_audio` for ``exclude`` and ``counts``)."""
    path = _existing(path)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ScanError(f"{path}: expected a folder or a .csv manifest")
        return read_manifest(path, domain, require_label=labelled)
    if labelled:
        return scan_labelled(path, domain, exclude, counts)
    return scan_unlabelled(path, domain, exclude, counts)


def list_inputs(path: str | Path, counts: dict[str, int] | None = None) -> list[str]:
    """A single audio file, or every audio file below a folder (recursive, sorted, each real file once)."""
    path = Path(path)
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise ScanError(f"{path}: no such file or folder")
    files = [str(p) for p in find_audio(path, counts=counts)]
    if not files:
        raise ScanError(f"{path}: folder holds no audio files")
    return files


def iter_inputs(path: str | Path, counts: dict[str, int] | None = None) -> Iterator[str]:
    """:func:`list_inputs` as the walk finds the files (see :func:`iter_audio`); errors come at once."""
    path = Path(path)
    if path.is_file():
        yield str(path)
        return
    if not path.is_dir():
        raise ScanError(f"{path}: no such file or folder")
    empty = True
    for p in iter_audio(path, counts=counts):
        empty = False
        yield str(p)
    if empty:
        raise ScanError(f"{path}: folder holds no audio files")


def read_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Every path a command reads for ``inputs`` (folders, files, ``.csv`` manifests): the inputs
    themselves and, for a manifest, the files it lists, for the output rule to compare against."""
    paths: list[Path] = []
    for given in inputs:
        if not isinstance(given, (str, Path)):
            continue
        paths.append(Path(given))
        if Path(given).is_file() and Path(given).suffix.lower() == ".csv":
            try:
                paths += [Path(it.path) for it in read_manifest(given, "", require_label=False)]
            except (ScanError, OSError, UnicodeDecodeError, csv.Error):
                pass  # not a manifest the command could read either: it will say so itself
    return paths
