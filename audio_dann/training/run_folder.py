"""The run folder ``train`` writes: begun (:func:`start_run_folder`) and read back (:func:`read_run`).

``runs/NAME/``: ``model.pt`` (selected), ``last.pt`` (resume), ``init.pt`` (the initial weights),
``config.yaml``, ``metrics.jsonl`` (one line per evaluation), ``summary.json``, plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config, dump_config
from ..errors import RunError
from ..files import atomic_write_text, json_line

if TYPE_CHECKING:
    from ..nn.classifier import AudioClassifier
    from .loop import TrainState

__all__ = ["REPORT_ONLY_NOTE", "FinishedRun", "read_run", "start_run_folder"]

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


def start_run_folder(out: Path, config: Config, model: AudioClassifier, state: TrainState | None) -> None:
    """config.yaml, metrics.jsonl as far as the saved history goes (a resumed run drops lines logged
    after last.pt), and the initial weights for the report's before/after maps."""
    out.mkdir(parents=True, exist_ok=True)
    dump_config(config, out / "config.yaml")
    atomic_write_text(out / "metrics.jsonl", "".join(json_line(h) + "\n" for h in (state.history if state else [])))
    if state is None:
        model.save(out / "init.pt", step=0)
