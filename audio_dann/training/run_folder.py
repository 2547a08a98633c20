"""The run folder ``train`` writes, read back: its summary and its evaluation history.

``runs/NAME/``: ``model.pt`` (selected), ``last.pt`` (resume), ``init.pt`` (the initial weights),
``config.yaml``, ``metrics.jsonl`` (one line per evaluation), ``summary.json``, plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunError

__all__ = ["REPORT_ONLY_NOTE", "FinishedRun", "read_run"]

REPORT_ONLY_NOTE = "target labels: reported only, never used for training, selection or stopping"


@dataclass(frozen=True)
class FinishedRun:
    """A finished run folder: ``summary.json`` and the lines of ``metrics.jsonl``."""

    path: Path
    summary: dict
    history: list[dict]

    def selected(self) -> dict:
        """The evaluation of the step ``model.pt`` holds (the last one if it is not logged)."""
        step = self.summary["selected"]["step"]
        return next((h for h in self.history if h["step"] == step), self.history[-1] if self.history else {})


def read_run(run: str | Path) -> FinishedRun:
    """Open a finished run folder, or raise :class:`RunError` naming what is missing or damaged."""
    run = Path(run)
    if not (run / "summary.json").is_file():
        raise RunError(f"{run}: not a finished run (no summary.json)")
    try:
        summary = json.loads((run / "summary.json").read_text())
        lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
        history = [json.loads(x) for x in lines if x.strip()]
    except (OSError, ValueError) as exc:
        raise RunError(f"{run}: run folder is damaged ({exc})") from None
    if isinstance(summary, dict) and "kept" in summary and "method" in summary:
        raise RunError(
            f"{run}: an `audio-dann adapt` output (no training history); report and select take "
            "`train` runs; evaluate or predict its model.pt"
        )
    if not isinstance(summary, dict) or "selected" not in summary:
        raise RunError(f"{run}: summary.json is not a run summary (no 'selected')")
    return FinishedRun(run, summary, history)
