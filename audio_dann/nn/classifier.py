"""The deployable model: frontend + DANN in one module that maps waveforms to logits, and the
one place where a model becomes a bundle and a bundle a model.

``load_model(path)`` rebuilds it from a ``model.pt`` bundle alone.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config
from ..errors import BundleError
from ..files import check_distinct_paths, shown_paths
from .bundle import load_bundle, make_bundle, save_bundle
from .dann import DANN, build_dann
from .fold import for_inference
from .frontend import LogMel

__all__ = ["AudioClassifier", "build_classifier", "load_model", "load_checkpoint"]

_DOMAIN_HEAD_PREFIX = "dann.domain_head."


class AudioClassifier(nn.Module):
    """``forward(waveform)``: ``(batch, samples)`` at ``.sample_rate`` -> ``(batch, n_classes)`` logits.

    Attributes:
        classes: class names, in logit order.
        domains: domain names (the source first) the model was trained with.
        sample_rate: the rate the frontend expects.
        config: the resolved :class:`Config` it was trained with.
        calibration: accuracy and confidence on held-out source clips, measured by ``train`` (for the
            label-free accuracy estimates; ``None`` for bundles without one).
        adaptation: what ``adapt`` applied to it, oldest first (empty for a trained model).
    """

    def __init__(self, config: Config, classes: list[str], domains: list[str], domain_head: bool = False) -> None:
        super().__init__()
        self.config = config
        self.classes = list(classes)
        self.domains = list(domains)
        self.sample_rate = config.features.sample_rate
        self.frontend = LogMel.from_config(config.features)
        self.dann: DANN = build_dann(config.model, len(classes), len(domains) if domain_head else 0,
                                     n_mels=config.features.n_mels)
        self.calibration: dict | None = None
        self.adaptation: list[dict] = []

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(batch, samples) -> (batch, n_mels, frames)`` log-mels."""
        return self.frontend(waveform)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from log-mels: ``forward(w) == classify(features(w))``."""
        return self.dann(features, 0.0, with_domain=False)[0]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.classify(self.frontend(waveform))

    def for_inference(self, strided_pools: bool = True) -> "AudioClassifier":
        """An eval-mode copy for prediction (see :func:`fold.for_inference`): same outputs to ~1e-6,
        about twice as fast on CPU. Never train or save it."""
        fast = copy.deepcopy(self).eval()
        fast.dann = for_inference(fast.dann, strided_pools)
        return fast

    def to_bundle(self, **extra: Any) -> dict[str, Any]:
        """This model as a bundle dict (see :mod:`.bundle`); ``extra`` adds keys such as ``step``."""
        meta = {"calibration": self.calibration} if self.calibration else {}
        if self.adaptation:
            meta["adaptation"] = self.adaptation
        return make_bundle(self.config, self.classes, self.domains, self.state_dict(), **{**meta, **extra})

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write this model as a bundle, atomically."""
        save_bundle(self.to_bundle(**extra), path)

    @classmethod
    def from_bundle(cls, bundle: dict[str, Any], config: Config, where: str | Path = "bundle") -> "AudioClassifier":
        """Rebuild the model a bundle describes; a domain head exactly when the weights hold one.

        Bundles of format 1 written before source-only models lost their domain head carry an
        untrained one; it is loaded as it is and never used for prediction.
        """
        state = bundle["model_state"]
        has_head = any(k.startswith(_DOMAIN_HEAD_PREFIX) for k in state)
        model = cls(config, bundle["classes"], bundle["domains"], domain_head=has_head)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BundleError(f"{where}: weights do not fit the model (missing: {', '.join(missing[:3]) or '-'}; "
                              f"unexpected: {', '.join(unexpected[:3]) or '-'})")
        model.calibration = bundle.get("calibration")
        model.adaptation = list(bundle.get("adaptation") or [])
        return model


def build_classifier(config: Config, classes: list[str], domains: list[str], stats: dict | None = None,
                     domain_head: bool | None = None) -> AudioClassifier:
    """A fresh model for ``config``; a domain head for DANN training (default: ``train.method == "dann"``)."""
    if domain_head is None:
        domain_head = config.train.method == "dann"
    model = AudioClassifier(config, classes, domains, domain_head=domain_head)
    if stats is not None:
        model.dann.input_norm.set_stats(stats["mean"], stats["std"])
    return model


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[AudioClassifier, dict[str, Any]]:
    """A bundle's model (in eval mode, on ``device``) and the bundle itself (for resume state)."""
    bundle, config = load_bundle(path)
    try:
        model = AudioClassifier.from_bundle(bundle, config, path)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise BundleError(f"{path}: weights do not fit the model ({str(exc).splitlines()[-1].strip()[:160]})") from None
    return model.to(device).eval(), bundle


def reference_problem(reference: AudioClassifier, classes: list[str], features,
                      model: AudioClassifier | None = None) -> str | None:
    """Why ``reference`` cannot serve as a second model for the agreement estimate of a model with
    ``classes`` and ``features`` (the reason, to follow its path in an error), or None. With ``model``,
    a reference with exactly its weights (a copy under another name) is refused too: it would agree on
    every window and say nothing."""
    if reference.classes != classes:
        return f"the reference model's classes {reference.classes} differ from the model's {classes}"
    if reference.config.features != features:
        return ("the reference model cuts audio into other windows or features than the model; use one trained "
                "on the same features")
    if model is not None and _same_weights(reference, model):
        return "the reference model has exactly this model's weights (a copy?); give another seed's model"
    return None


def load_references(given: list, classes: list[str], features, *, model: AudioClassifier | None = None,
                    own: str | Path | None = None, error: type[Exception] = BundleError,
                    objects_ok: bool = False) -> list[AudioClassifier]:
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
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu())
                                          for k in sa)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> AudioClassifier:
    """Load a ``model.pt`` bundle as an :class:`AudioClassifier` in eval mode."""
    return load_checkpoint(path, device)[0]
