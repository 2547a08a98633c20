"""Writing outputs safely: atomic writes (temp file, then rename), checks of output paths before any
work starts, and advisory locks so that two commands never write one output at once."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import OptionError, OutputLockedError

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "write_json",
    "json_line",
    "check_output_file",
    "check_output_dir",
    "output_lock",
    "WORK_MARKERS",
]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _remove_stale_temps(path: Path) -> None:
    """Temp files of ``path`` left by a process that was killed (its pid is in the name and dead)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 :].split(".")
        if parts and parts[0].isdigit() and int(parts[0]) != os.getpid() and not _pid_alive(int(parts[0])):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, tidy: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` keeps its old content. The temp
    file's name carries this process's id, so temp files of a killed run are removed by the next.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tidy:
        _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str, tidy: bool = True) -> None:
    """``text`` into ``path`` atomically; ``tidy=False`` skips the search for a killed run's temp files
    (for many small files written into one large folder, where each search lists the folder)."""
    with atomic_path(path, tidy) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    """``obj`` as indented, valid JSON (a NaN or infinite number becomes null), written atomically."""
    atomic_write_text(path, json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n")


def json_line(obj) -> str:
    """``obj`` as one line of valid JSON (a NaN or infinite number becomes null), for JSON-lines files."""
    return json.dumps(_finite(obj), allow_nan=False)


def _finite(obj):
    """``obj`` with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _writable_ancestor(path: Path, option: str) -> None:
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OptionError(f"{option} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OptionError(f"{option} {path}: folder {probe} is not writable (permission denied)")


def path_list(value) -> list:
    """``value`` (one path, several, or None) as a list: ``[]``, ``[value]`` or ``list(value)``."""
    return (
        []
        if value is None
        else [value]
        if isinstance(value, (str, Path)) or not hasattr(value, "__iter__")
        else list(value)
    )


def shown_paths(values: list) -> str | list[str]:
    """Paths as summaries show them: one as a string, several as a list (an object by its type name)."""
    names = [str(v) if isinstance(v, (str, Path)) else f"<{type(v).__name__} object>" for v in values]
    return names[0] if len(names) == 1 else names


def check_distinct_paths(paths: list, option: str, own: str | Path | None = None, objects_ok: bool = False) -> list:
    """``paths`` checked to name different files, none of them ``own`` (the model they serve); other
    objects (models given through the API) pass where ``objects_ok``, else they are refused."""
    seen: dict[Path, str] = {}
    for p in paths:
        if not isinstance(p, (str, Path)):
            if objects_ok:
                continue
            raise OptionError(f"{option}: expected the path of a model.pt, got a {type(p).__name__}")
        key = Path(p).resolve()
        if own is not None and key == Path(own).resolve():
            raise OptionError(
                f"{option} {p}: that is the model itself; give a second model of the task "
                "(e.g. another seed's model.pt)"
            )
        if key in seen:
            raise OptionError(f"{option} {p}: given twice (also as {seen[key]})")
        seen[key] = str(p)
    return list(paths)


# what other commands leave in a folder: a folder holding one of these files holds that work
WORK_MARKERS = {
    "prepared folder": ("prepared.json", "features.npy", "index.csv"),
    "training run": ("last.pt", "metrics.jsonl", "init.pt"),
    "model folder": ("model.pt", "summary.json"),
}


def check_output_file(path: str | Path, option: str = "--out", inputs=(), audio_suffixes: tuple[str, ...] = ()) -> Path:
    """The output rule for a file, checked before any work. Refused: a folder; an existing path that is
    not a regular file (a FIFO, a device) or is a symbolic link (the atomic rename would replace it);
    one that cannot be written; one of the command's ``inputs`` (paths resolved, links followed); and,
    inside an input folder, a name with one of ``audio_suffixes`` (a file the command reads there)."""
    if str(path).endswith(("/", os.sep)):
        raise OptionError(f"{option} {path}: names a folder (it ends with '/'); give a file name")
    path = Path(path)
    if path.is_symlink():
        raise OptionError(f"{option} {path}: is a symbolic link (to {os.path.realpath(path)}); give the real path")
    if path.is_dir():
        raise OptionError(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise OptionError(f"{option} {path}: is not a regular file (a pipe or a device); give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OptionError(f"{option} {path}: file is not writable (permission denied)")
    _writable_ancestor(path.parent if str(path.parent) else Path("."), option)
    _not_an_input(path, option, inputs, audio_suffixes)
    return path


def check_output_dir(
    path: str | Path,
    option: str = "--out",
    inputs=(),
    writes: tuple[str, ...] = (),
    own: str | None = None,
    beside_others: bool = False,
) -> Path:
    """The output rule for a folder, checked before any work. Refused: a file; a folder that cannot be
    written; one of the command's ``inputs`` or a folder that holds one; a folder holding another
    command's work (:data:`WORK_MARKERS`) than ``own`` (the kind this command writes and may continue),
    unless its files go ``beside_others`` under names no other command uses; and any file it ``writes``
    there that is an input."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OptionError(f"{option} {path}: exists and is not a folder")
    _writable_ancestor(path, option)
    here = path.resolve()
    for given in _paths(inputs):
        real = given.resolve()
        if real == here or here in real.parents:
            raise OptionError(
                f"{option} {path}: {'is' if real == here else 'holds'} an input ({given}); write to another folder"
            )
    if path.is_dir() and not beside_others:
        for kind, markers in WORK_MARKERS.items():
            if kind != own and any((path / m).exists() for m in markers) and not _owned(path, own):
                raise OptionError(f"{option} {path}: already holds a {kind}; choose a new --out")
    for name in writes:
        _not_an_input(path / name, option, inputs, ())
    return path


def _owned(path: Path, own: str | None) -> bool:
    """Whether ``path`` holds the ``own`` kind of work (a training run holds a model folder too)."""
    return own is not None and any((path / m).exists() for m in WORK_MARKERS.get(own, ()))


def _paths(inputs) -> list[Path]:
    return [Path(p) for p in path_list(inputs) if isinstance(p, (str, Path))]


def _not_an_input(path: Path, option: str, inputs, audio_suffixes: tuple[str, ...]) -> None:
    here = path.resolve()
    for given in _paths(inputs):
        real = given.resolve()
        if here == real:
            raise OptionError(f"{option} {path}: that is an input ({given}); write elsewhere")
        if given.is_dir() and real in here.parents and here.suffix.lower() in audio_suffixes:
            raise OptionError(f"{option} {path}: an audio file inside an input folder ({given}); write elsewhere")


def _lock_file(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"  # beside the output, for a file or a folder alike


@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold an advisory lock on an output (a folder or a file) while writing it.

    The lock file records the owner's pid and host. A second writer fails at once naming the
    holder; a lock left by a dead process on this host is taken over. The lock is removed on
    every normal or exceptional exit (a ``kill -9`` leaves it for the next run to take over).
    """
    path = Path(path)
    lock = _lock_file(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        _take_lock(path, lock)
    except OSError as exc:  # a read-only or virtual file system (/sys, /proc): name the output, not the lock
        raise OptionError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    try:
        yield
    finally:
        _release_lock(lock)


def _take_lock(path: Path, lock: Path) -> None:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                holder = {}
            stale = holder.get("host") == me["host"] and not _pid_alive(int(holder.get("pid", -1)))
            if not stale and holder:
                raise OutputLockedError(
                    f"{path}: being written by pid {holder.get('pid')} on {holder.get('host')} "
                    f"since {holder.get('since')}; wait for it or choose another output "
                    f"(remove {lock} if that process is gone)"
                ) from None
            lock.unlink(missing_ok=True)  # stale (or unreadable): take it over
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise OutputLockedError(f"{path}: could not take the lock {lock}")


def _release_lock(lock: Path) -> None:
    try:
        if json.loads(lock.read_text()).get("pid") == os.getpid():
            lock.unlink()
    except (OSError, ValueError):
        pass
