"""From window probabilities to detections: begin and end times, a confidence threshold, merged events.

Pure functions of one file's windows, so that the writers (csv, jsonl, Raven, Audacity) and the
journal of a resumable folder run all see the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Detection", "DetectionSettings", "detections"]


@dataclass(frozen=True)
class Detection:
    """One event of one class in one file (a window, or consecutive windows merged)."""

    begin_s: float
    end_s: float
    label: str
    confidence: float
    probs: tuple[float, ...]  # class probabilities of the window (of the most confident window when merged)


@dataclass(frozen=True)
class DetectionSettings:
    """``min_confidence``: keep windows whose top class (or, with ``all_classes``, any class) reaches it;
    ``merge``: join consecutive or overlapping windows of one class into one event."""

    min_confidence: float = 0.0
    all_classes: bool = False
    merge: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            from ..errors import OptionError

            raise OptionError(f"--min-confidence must lie in [0, 1], got {self.min_confidence}")


def detections(
    probs: np.ndarray,
    begins: np.ndarray,
    window_s: float,
    seconds: float,
    classes: list[str],
    settings: DetectionSettings = DetectionSettings(),
) -> list[Detection]:
    """Events of one file, in time order (then class order).

    Args:
        probs: ``(n_windows, n_classes)`` window probabilities.
        begins: ``(n_windows,)`` window starts in seconds.
        window_s: window length in seconds; an event ends at ``min(begin + window_s, seconds)``.
        seconds: the file's length (a short file's single, tiled window ends with the file).
    """
    events: list[Detection] = []
    for b, p in zip(begins, probs):
        end = float(min(b + window_s, seconds)) if seconds > 0 else float(b + window_s)
        picked = (
            np.flatnonzero(p >= settings.min_confidence)
            if settings.all_classes
            else [int(np.argmax(p))]
            if p.max() >= settings.min_confidence
            else []
        )
        events += [Detection(float(b), end, classes[k], float(p[k]), tuple(float(v) for v in p)) for k in picked]
    if settings.merge:
        events = _merge(events)
    return sorted(events, key=lambda d: (d.begin_s, classes.index(d.label)))


def _merge(events: list[Detection]) -> list[Detection]:
    """Join events of one class whose windows touch or overlap; keep the peak window's confidence."""
    open_by_class: dict[str, Detection] = {}
    merged: list[Detection] = []
    for ev in sorted(events, key=lambda d: d.begin_s):
        cur = open_by_class.get(ev.label)
        if cur is not None and ev.begin_s <= cur.end_s + 1e-9:
            peak = ev if ev.confidence > cur.confidence else cur
            open_by_class[ev.label] = Detection(
                cur.begin_s, max(cur.end_s, ev.end_s), ev.label, peak.confidence, peak.probs
            )
        else:
            if cur is not None:
                merged.append(cur)
            open_by_class[ev.label] = ev
    return merged + list(open_by_class.values())
