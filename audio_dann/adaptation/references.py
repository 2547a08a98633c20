"""The ``--reference`` models of ``adapt`` and ``estimate``: second models of the same task whose
agreement with the model enters the label-free estimate, checked before any audio is decoded."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import BundleError
from ..files import check_distinct_paths
from ..nn.classifier import AudioClassifier, load_checkpoint, reference_problem

__all__ = ["load_references", "reference_names"]


def load_references(reference: list, model: str | Path, original: AudioClassifier) -> list[nn.Module]:
    """The networks of the reference bundles ``reference`` (paths), each checked to be another model
    (not ``model`` itself, no path twice) with the classes and features of ``original``."""
    refs = []
    for path in check_distinct_paths(reference, "--reference", model):
        ref = load_checkpoint(path)[0]
        problem = reference_problem(ref, original.classes, original.config.features, original)
        if problem:
            raise BundleError(f"{path}: {problem}")
        refs.append(ref.dann)
    return refs


def reference_names(reference: list) -> str | list[str]:
    """The reference model(s) as summaries name them: a path, or a list of them."""
    names = [str(r) for r in reference]
    return names[0] if len(names) == 1 else names
