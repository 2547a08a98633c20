"""``evaluate``: accuracy with a 95% interval, macro-F1, per-class and per-domain scores on labelled audio."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..adaptation.critic import critic_estimate
from ..adaptation.estimators import label_free_estimate
from ..adaptation.floor import stored_floor
from ..adaptation.references import load_references
from ..adaptation.target import load_target_clips
from ..data.scan import Item, scan_input
from ..errors import ScanError
from ..files import path_list, shown_paths
from ..nn.classifier import AudioClassifier, load_model
from ..nn.outputs import probabilities
from ..runtime import check_amp, resolve_device
from .engine import iter_predictions
from .metrics import classification_report

__all__ = ["evaluate"]


def evaluate(
    model: str | Path | AudioClassifier,
    data: str | Path,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    device: str | torch.device = "cpu",
    amp: str = "off",
    reference: str | Path | AudioClassifier | list | None = None,
    label_shift: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Accuracy (95% Wilson CI), macro-F1, per-class recall and confusion on a labelled folder or manifest.

    Files whose label is not a class of the model, and unreadable files, are
    counted under ``skipped`` (with reasons) and left out of the scores. When a
    manifest names domains, ``per_domain`` holds each domain's accuracy. ``estimated_accuracy`` holds
    the label-free estimate of window accuracy next to the labelled one, with its lower bound, as
    ``estimate`` gives it (the files are decoded again for the critic and for each ``reference``);
    ``all`` holds every figure.
    """
    check_amp(amp)
    own = None if isinstance(model, torch.nn.Module) else model
    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    given = [reference] if isinstance(reference, torch.nn.Module) else path_list(reference)
    refs = load_references(
        given, model.classes, model.config.features, model=model, own=own, error=ScanError, objects_ok=True
    )
    items: list[Item] = scan_input(data, "eval", labelled=True)
    index = {c: i for i, c in enumerate(model.classes)}
    skipped: list[dict] = [
        {"file": it.path, "reason": f"label {it.label!r} is not a class of this model"}
        for it in items
        if it.label not in index
    ]
    items = [it for it in items if it.label in index]
    if not items:
        raise ScanError(f"{data}: no files whose label is one of the model's classes ({', '.join(model.classes)})")
    y_true, y_pred, domains, windows, window_true, read = [], [], [], [], [], []
    for n, (it, res) in enumerate(
        zip(
            items,
            iter_predictions(
                model, [i.path for i in items], batch_size=batch_size, workers=workers, device=device, amp=amp
            ),
        ),
        start=1,
    ):
        if res.error:
            skipped.append({"file": it.path, "reason": res.error})
        else:
            y_true.append(index[it.label])
            y_pred.append(int(res.mean_probs.argmax()))
            domains.append(it.domain)
            windows.append(res.probs)
            window_true.append(np.full(len(res.probs), index[it.label]))
            read.append(it.path)
        if progress:
            progress(n, len(items))
    if not y_true:
        raise ScanError(f"{data}: no file could be read")
    report = classification_report(np.asarray(y_true), np.asarray(y_pred), model.classes)
    by_domain: dict[str, list[bool]] = defaultdict(list)
    for d, t, p in zip(domains, y_true, y_pred):
        by_domain[d].append(t == p)
    if len(by_domain) > 1:
        report["per_domain"] = {d: {"accuracy": float(np.mean(v)), "n": len(v)} for d, v in sorted(by_domain.items())}
    ref_probs = [_reference_windows(r, read, batch_size, workers, device, amp) for r in refs]
    critic, floor = _critic_and_floor(model, data, device, workers, floor=not refs)  # a reference sets the figure
    est = _estimates(model, np.concatenate(windows), np.concatenate(window_true), ref_probs, label_shift, critic, floor)
    report["estimated_accuracy"] = est
    if refs:
        report["estimated_accuracy"]["reference"] = shown_paths(given)
    report["skipped"] = skipped
    return report


def _reference_windows(ref: AudioClassifier, paths: list[str], batch_size: int, workers, device, amp) -> np.ndarray:
    """The window probabilities of ``ref`` on ``paths``, in the order the model read them."""
    ref_windows = []
    for path, res in zip(
        paths, iter_predictions(ref, paths, batch_size=batch_size, workers=workers, device=device, amp=amp)
    ):
        if res.error:
            raise ScanError(f"{path}: the reference model could not read it ({res.error})")
        ref_windows.append(res.probs)
    return np.concatenate(ref_windows)


def _critic_and_floor(
    model: AudioClassifier, data: str | Path, device, workers: int | None, floor: bool = True
) -> tuple[dict | None, float | None]:
    """The estimate's critic and, with ``floor``, a self-trained bundle's floor
    (:mod:`audio_dann.adaptation.floor`) on the files of ``data`` (decoded again as ``estimate`` decodes
    them, labels not read), where the bundle keeps source clips; None otherwise."""
    if not model.source_sample:
        return None, None
    clips = load_target_clips(model.config, [data], workers=workers)  # labels, and files not scored, included
    critic = critic_estimate(model.dann, model.source_sample, clips.x, target_files=clips.file_index, device=device)
    if not (floor and model.before_self_training):
        return critic, None
    dev = resolve_device(device)
    return critic, stored_floor(model, probabilities(model.dann.to(dev), clips.x, dev), clips.x, dev)


def _estimates(
    model: AudioClassifier,
    probs: np.ndarray,
    truth: np.ndarray,
    reference_probs: list[np.ndarray] = (),
    label_shift: bool = False,
    critic: dict | None = None,
    floor: float | None = None,
) -> dict | None:
    """The label-free estimate of window accuracy (:func:`audio_dann.adaptation.estimators.label_free_estimate`,
    from the model's calibration, its ``critic`` and, with references, their agreement with the model; no
    label read), next to the window accuracy the labels give, so the two can be compared."""
    est = label_free_estimate(probs, model.calibration, reference_probs, label_shift, critic, floor)
    if not est:
        return None
    return {
        **est,
        "window_accuracy": float((probs.argmax(1) == truth).mean()),
        "windows": int(len(truth)),
        "note": "estimates read no label; window_accuracy is the labelled figure to compare with",
    }
