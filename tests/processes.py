"""Process counting for the tests (Linux /proc): who a process started."""

from __future__ import annotations

from pathlib import Path


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            out[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # gone while being read
            continue
    return out


def children(pid: int) -> list[int]:
    """The processes ``pid`` started directly."""
    return [child for child, parent in _parents().items() if parent == pid]


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``: its children, theirs, and so on."""
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found - {pid}
        found |= frontier
    return found
