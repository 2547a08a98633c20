"""The library API, one function per command: what a notebook calls and what the CLI wraps.

```python
import audio_dann as ad
ad.prepare("studio/", ["field/"], "prepared/")
summary = ad.train("prepared/", "runs/dann", method="dann")
model = ad.load_model("runs/dann/model.pt")
ad.estimate("runs/dann/model.pt", "field/", reference="runs/dann_seed1/model.pt")["value"]
ad.evaluate(model, "field_labelled.csv")["accuracy"]
ad.predict(model, "recordings/", "predictions.csv")
ad.export("runs/dann/model.pt", "model.onnx")  # needs the [export] extra
```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from .adaptation.adapt import adapt
from .adaptation.estimate import estimate_accuracy as estimate
from .config import Config
from .data.prepare import prepare
from .deploy.onnx_export import export
from .infer.evaluate import evaluate
from .infer.predict import predict
from .nn.classifier import load_model
from .report.run_report import make_report
from .runtime import is_main_process
from .training.run import train as _train_run

__all__ = ["prepare", "train", "adapt", "estimate", "evaluate", "predict", "load_model", "export"]


def train(
    prepared: str | Path | list[str | Path],
    out: str | Path,
    *,
    config: Config | None = None,
    method: str | None = None,
    seed: int | None = None,
    device: str = "auto",
    resume: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
    report: bool = True,
    reference: str | Path | list[str | Path] | None = None,
    named: Iterable[str] = (),
    label_shift: bool = False,
) -> dict:
    """Train (see :func:`audio_dann.training.run.train` for the arguments), then write the run's
    ``report.md`` with its plots (``report=False`` skips it; ``audio-dann report RUN`` adds t-SNE maps)."""
    summary = _train_run(
        prepared,
        out,
        config=config,
        method=method,
        seed=seed,
        device=device,
        resume=resume,
        progress=progress,
        reference=reference,
        named=named,
        label_shift=label_shift,
    )
    if report and is_main_process():
        make_report(out, summary["prepared"], tsne=False)
    return summary
