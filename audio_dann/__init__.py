"""audio-dann: adapt audio classifiers to new recording conditions without new labels.

The public API mirrors the command line: ``prepare``, ``train``, ``evaluate``,
``predict`` and ``load_model``.
"""
__version__ = "0.1.0"

from .classifier import load_model  # noqa: E402
from .predict import evaluate, predict  # noqa: E402
from .prepare import prepare  # noqa: E402
from .run import train  # noqa: E402

__all__ = ["prepare", "train", "evaluate", "predict", "load_model", "__version__"]
