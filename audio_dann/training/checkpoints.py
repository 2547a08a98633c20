"""The one owner of ``model.pt`` and ``last.pt`` during a run."""

from __future__ import annotations

import math
from pathlib import Path

from ..files import json_line
from ..nn.classifier import AudioClassifier, load_checkpoint
from .criteria import score as criterion_score
from .loop import TrainState

__all__ = ["Checkpoints"]


class Checkpoints:
    """After each evaluation: keeps the best model by the label-free criterion ``select`` in ``model.pt``
    (ties go to the later step), appends ``metrics.jsonl`` and writes ``last.pt``. ``extra`` (the run's
    plan and prepared folders) is saved in both. Only the writing process (rank 0) touches files; every
    rank tracks the same choice."""

    def __init__(self, out: Path, model: AudioClassifier, select: str, write: bool = True, **extra) -> None:
        self.out, self.model, self.select, self.write, self.extra = out, model, select, write, extra

    def on_eval(self, dann, optimizer, state: TrainState, metrics: dict) -> None:
        score = criterion_score(self.select, metrics)
        score = -math.inf if score is None else score
        if state.best is None or score >= state.best["score"]:
            state.best = {"step": state.step, "score": score, "criterion": self.select}
            if self.write:
                self.model.save(self.out / "model.pt", step=state.step, selected_by=self.select, **self.extra)
        if self.write:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json_line(metrics) + "\n")
            self.model.save(
                self.out / "last.pt",
                step=state.step,
                optimizer_state=optimizer.state_dict(),
                loop_state={"step": state.step, "history": state.history, "best": state.best, "rng": state.rng},
                **self.extra,
            )

    def selected(self) -> AudioClassifier:
        """The model ``model.pt`` holds."""
        return load_checkpoint(self.out / "model.pt")[0]

    def finish(self, selected: AudioClassifier, summary: dict) -> None:
        """Store the run summary (and the selected model's calibration) inside ``model.pt``."""
        bundle = load_checkpoint(self.out / "model.pt")[1]
        keep = {k: v for k, v in bundle.items() if k in ("step", "selected_by", *self.extra)}
        selected.save(self.out / "model.pt", **keep, summary=summary)
