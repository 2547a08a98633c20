"""The ``--reference`` models of the agreement estimate: loaded and checked before any audio is read."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import BundleError
from ..files import check_distinct_paths, shown_paths
from ..nn.classifier import AudioClassifier, load_checkpoint

__all__ = ["load_references", "reference_problem"]


def reference_problem(
    reference: AudioClassifier, classes: list[str], features, model: AudioClassifier | None = None
) -> str | None:
    """Why ``reference`` cannot serve as a second model for the agreement estimate of a model with
    ``classes`` and ``features`` (the reason, to follow its path in an error), or None. With ``model``,
    a reference with exactly its weights (a copy under another name) is refused too: it would agree on
    every window and say nothing."""
    if reference.classes != classes:
        return f"the reference model's classes {reference.classes} differ from the model's {classes}"
    if reference.config.features != features:
        return (
            "the reference model cuts audio into other windows or features than the model; use one trained "
            "on the same features"
        )
    if model is not None and _same_weights(reference, model):
        return "the reference model has exactly this model's weights (a copy?); give another seed's model"
    return None


def load_references(
    given: list,
    classes: list[str],
    features,
    *,
    model: AudioClassifier | None = None,
    own: str | Path | None = None,
    error: type[Exception] = BundleError,
    objects_ok: bool = False,
) -> list[AudioClassifier]:
    """The ``--reference`` models ``given`` (paths, or models where ``objects_ok``), each checked before
    any audio is read: distinct files, none of them ``own``, and no :func:`reference_problem` against
    ``classes``, ``features`` and ``model``; a problem raises ``error`` naming the reference."""
    refs = []
    for item in check_distinct_paths(given, "--reference", own, objects_ok=objects_ok):
        ref = item if isinstance(item, torch.nn.Module) else load_checkpoint(item)[0]
        problem = reference_problem(ref, classes, features, model)
        if problem:
            raise error(f"{shown_paths([item])}: {problem}")
        refs.append(ref)
    return refs


def _same_weights(a: AudioClassifier, b: AudioClassifier) -> bool:
    sa, sb = a.dann.state_dict(), b.dann.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa
    )
