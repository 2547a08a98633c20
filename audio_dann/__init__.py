"""audio-dann: adapt audio classifiers to new recording conditions without new labels.

The public API mirrors the command line: ``prepare``, ``train``, ``adapt``, ``estimate``, ``evaluate``,
``predict``, ``export`` and ``load_model`` (see :mod:`audio_dann.api`). They are imported on first use, so that
``import audio_dann`` (and ``audio-dann --help``) does not wait for torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["prepare", "train", "adapt", "estimate", "evaluate", "predict", "export", "load_model", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module 'audio_dann' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
