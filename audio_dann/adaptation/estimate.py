"""``estimate``: the label-free estimate of a model's accuracy on unlabelled target audio, without
adapting anything (a deployment folder, before or after ``adapt``, or to compare two seeds' models).

The target is decoded as ``adapt`` decodes it (:func:`~audio_dann.adaptation.target.load_target_clips`:
the windows a prepared folder would hold, at most ``max_clips`` of them, a seeded choice), and the
estimate is the toolkit's :func:`~audio_dann.adaptation.estimators.combined_estimate`, with its lower
bound: from the critic on the source clips the bundle keeps (:mod:`~audio_dann.adaptation.critic`) and
the prior bound (unless ``label_shift``), and for a self-trained bundle the floor of
:mod:`~audio_dann.adaptation.floor`; with ``reference`` models, the lowest of their mean agreement,
ATC-NE and the prior bound. No label is read, even where the folder has class sub-folders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import BundleError
from ..files import path_list, shown_paths
from ..nn.classifier import load_checkpoint
from ..nn.outputs import probabilities
from ..runtime import resolve_device
from .critic import critic_estimate
from .estimators import label_free_estimate
from .floor import stored_floor
from .references import load_references
from .target import load_target_clips

__all__ = ["estimate_accuracy"]


def estimate_accuracy(
    model: str | Path,
    targets: Sequence[str | Path] | str | Path,
    *,
    reference: str | Path | list[str | Path] | None = None,
    label_shift: bool = False,
    max_clips: int = 20000,
    seed: int = 0,
    workers: int | None = None,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """The label-free estimate of the bundle ``model``'s window accuracy on ``targets`` (folders or
    manifests): ``estimator``, ``value``, ``limited_by``, ``combines``, ``prior_bound`` (and a
    ``warning`` where the bound set it well below the rest), every figure (``all``), the predicted class
    shares, and the files read and skipped (an unreadable file is skipped and listed, not fatal)."""
    reference = path_list(reference)
    original = load_checkpoint(model)[0]
    refs = [
        r.dann
        for r in load_references(reference, original.classes, original.config.features, model=original, own=model)
    ]  # a bad one fails before any decoding
    if original.calibration is None and not refs:
        raise BundleError(
            f"{model}: the bundle has no calibration (a training checkpoint such as last.pt, or a bundle "
            "saved by an older version) and no --reference "
            "was given: there is nothing to estimate from"
        )
    dev = resolve_device(device)
    clips = load_target_clips(
        original.config, targets, max_clips=max_clips, seed=seed, workers=workers, progress=progress
    )
    probs = probabilities(original.dann.to(dev), clips.x, dev)
    critic = critic_estimate(original.dann, original.source_sample, clips.x, target_files=clips.file_index, device=dev)
    floor = None if refs else stored_floor(original, probs, clips.x, dev)  # a self-trained bundle's floor
    est = label_free_estimate(
        probs, original.calibration, [probabilities(r.to(dev), clips.x, dev) for r in refs], label_shift, critic, floor
    )
    shares = np.bincount(probs.argmax(1), minlength=len(original.classes)) / len(probs)
    return {
        **est,
        "predicted_share": {c: float(v) for c, v in zip(original.classes, shares)},
        "model": str(model),
        "targets": [str(t) for t in path_list(targets)],
        **({"reference": shown_paths(reference)} if reference else {}),
        "windows": len(clips),
        "files": len(clips.paths),
        "files_skipped": len(clips.skipped),
        "skipped": [{"file": str(f), "reason": r} for f, r in clips.skipped],
        "on": f"{len(clips)} target windows from {len(clips.paths)} files; no target label read",
    }
