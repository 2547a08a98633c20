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
        source_sample: labelled source validation clips (at most 512 float16 log-mels ``x``, class
            indices ``y``, file numbers ``files``) kept by ``train`` for the label-free estimate's critic
            (:mod:`audio_dann.adaptation.critic`); ``None`` for bundles without them.
        before_self_training: for a model self-training changed (``train``'s stage, ``adapt``), the
            weights of ``dann`` before it (:mod:`audio_dann.adaptation.floor`); ``None`` otherwise.
    """

    def __init__(self, config: Config, classes: list[str], domains: list[str], domain_head: bool = False) -> None:
        super().__init__()
        self.config = config
        self.classes = list(classes)
        self.domains = list(domains)
        self.sample_rate = config.features.sample_rate
        self.frontend = LogMel.from_config(config.features)
        self.dann: DANN = build_dann(
            config.model, len(classes), len(domains) if domain_head else 0, n_mels=config.features.n_mels
        )
        self.calibration: dict | None = None
        self.adaptation: list[dict] = []
        self.source_sample: dict | None = None
        self.before_self_training: dict | None = None

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(batch, samples) -> (batch, n_mels, frames)`` log-mels."""
        return self.frontend(waveform)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from log-mels: ``forward(w) == classify(features(w))``."""
        return self.dann(features)[0]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.classify(self.frontend(waveform))

    def for_inference(self, strided_pools: bool = True) -> AudioClassifier:
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
        if self.source_sample:
            meta["source_sample"] = self.source_sample
        if self.before_self_training:
            meta["before_self_training"] = self.before_self_training
        return make_bundle(self.config, self.classes, self.domains, self.state_dict(), **{**meta, **extra})

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write this model as a bundle, atomically."""
        save_bundle(self.to_bundle(**extra), path)

    @classmethod
    def from_bundle(cls, bundle: dict[str, Any], config: Config, where: str | Path = "bundle") -> AudioClassifier:
        """Rebuild the model a bundle describes; a domain head exactly when the weights hold one.

        Bundles of format 1 written before source-only models lost their domain head carry an
        untrained one; it is loaded as it is and never used for prediction.
        """
        state = bundle["model_state"]
        has_head = any(k.startswith(_DOMAIN_HEAD_PREFIX) for k in state)
        model = cls(config, bundle["classes"], bundle["domains"], domain_head=has_head)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise BundleError(
                f"{where}: weights do not fit the model (missing: {', '.join(missing[:3]) or '-'}; "
                f"unexpected: {', '.join(unexpected[:3]) or '-'})"
            )
        model.calibration = bundle.get("calibration")
        model.adaptation = list(bundle.get("adaptation") or [])
        model.source_sample = bundle.get("source_sample")
        model.before_self_training = bundle.get("before_self_training")
        return model


def build_classifier(
    config: Config, classes: list[str], domains: list[str], stats: dict | None = None, domain_head: bool | None = None
) -> AudioClassifier:
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


def load_model(path: str | Path, device: str | torch.device = "cpu") -> AudioClassifier:
    """Load a ``model.pt`` bundle as an :class:`AudioClassifier` in eval mode."""
    return load_checkpoint(path, device)[0]
