"""The journal of a folder run: what ``predict`` has finished, so a rerun after a crash does only the rest.

``.<out name>.journal`` beside the output holds JSON lines: first the run's key (a hash of the model
and of every setting that changes results), then one entry per finished file with its size and
modification time and what the output needs of it (mean probabilities, or its detections). An entry
is one ``write`` of one line, flushed; a line torn by a crash is ignored on reading. A rerun with the
same key reuses the entries whose file is unchanged; another key starts a fresh journal (and says
so). The journal is removed once the output is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

__all__ = ["Journal", "run_key"]


def run_key(model_digest: str, settings: dict) -> str:
    return hashlib.sha256(json.dumps([model_digest, settings], sort_keys=True).encode()).hexdigest()[:20]


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class Journal:
    """Entries by path; ``append`` makes one durable, ``entries`` gives them in input order."""

    def __init__(self, out: Path, key: str) -> None:
        self.path = out.parent / f".{out.name}.journal"
        self.key = key
        self.done: dict[str, dict] = {}
        self.restarted_because: str | None = None
        self._f = None
        self._last_sync = time.monotonic()

    def open(self) -> Journal:
        """Load the finished entries whose file is unchanged; start the file afresh when the key differs."""
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        header = _parse(lines[0]) if lines else None
        if lines and (header is None or header.get("key") != self.key):
            self.restarted_because = "the model or a setting changed since the interrupted run"
            lines = []
        for line in lines[1:]:
            e = _parse(line)
            if e and "path" in e and tuple(e.get("stamp") or ()) == _stamp(e["path"]):
                self.done[e["path"]] = e
        fresh = not lines
        self._f = open(self.path, "w" if fresh else "a")
        if fresh:
            self._f.write(json.dumps({"key": self.key}) + "\n")
            self._f.flush()
        return self

    def append(self, entry: dict) -> None:
        entry = {**entry, "stamp": _stamp(entry["path"])}
        self._f.write(json.dumps(entry, default=_plain) + "\n")
        self._f.flush()
        if time.monotonic() - self._last_sync > 2.0:
            os.fsync(self._f.fileno())
            self._last_sync = time.monotonic()
        self.done[entry["path"]] = json.loads(json.dumps(entry, default=_plain))

    def entries(self, paths):
        return (self.done[p] for p in paths if p in self.done)

    def close(self, remove: bool = False) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        if remove:
            self.path.unlink(missing_ok=True)


def _parse(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)
