"""Label-free estimates of a model's accuracy on target clips (no target label is read).

- ATC (average thresholded confidence, Garg et al., ICLR 2022): on held-out *source* clips, find
  the score threshold above which the share of clips equals the source accuracy; the estimate is the
  share of target clips above it. Scores: max softmax probability (``atc-mc``) or negative entropy
  (``atc-ne``, the paper's better variant).
- DoC (difference of confidences, Guillory et al., ICCV 2021): source accuracy minus the drop in mean
  max-probability from source to target.
- Agreement (Jiang et al., ICLR 2022): the share of target clips on which two models agree.

ATC and DoC need a calibration measured on labelled source clips *for the model being estimated*:
``train`` stores it in every bundle it writes (``calibration``, carried by
:class:`~audio_dann.nn.classifier.AudioClassifier`). A model changed by ``adapt`` keeps its
original's calibration; the recipes measure how much that costs. Pure functions of probabilities,
so training, inference and adaptation share them.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["ESTIMATORS", "DEFAULT_ESTIMATOR", "agreement", "calibrate", "estimate", "probabilities", "scores"]

DEFAULT_ESTIMATOR = "atc-ne"  # of the one-model estimators; two models: agreement, measured better (recipes/fsdd_speakers)

ESTIMATORS = ("atc-ne", "atc-mc", "doc")


def scores(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per clip: ``mc`` max probability, ``ne`` negative entropy (nats)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return {"mc": p.max(1), "ne": (p * np.log(p)).sum(1)}


def _threshold(score: np.ndarray, accuracy: float) -> float:
    """``t`` with ``mean(score > t) == accuracy`` (as near as the clips allow)."""
    return float(np.quantile(score, 1.0 - accuracy)) if 0 < accuracy < 1 else (
        float(score.min()) - 1e-9 if accuracy >= 1 else float(score.max()))


def calibrate(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The calibration record of a model from its probabilities on labelled held-out source clips."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    acc = float((probs.argmax(1) == labels).mean())
    s = scores(probs)
    return {"source_accuracy": acc, "source_mean_confidence": float(s["mc"].mean()),
            "atc_mc_threshold": _threshold(s["mc"], acc), "atc_ne_threshold": _threshold(s["ne"], acc),
            "n": int(len(labels))}


def estimate(probs: np.ndarray, calibration: dict | None) -> dict[str, float]:
    """Every estimator's figure for target probabilities ``(N, C)``; ``{}`` without a calibration."""
    if not calibration or len(probs) == 0:
        return {}
    s = scores(probs)
    return {
        "atc-ne": float((s["ne"] > calibration["atc_ne_threshold"]).mean()),
        "atc-mc": float((s["mc"] > calibration["atc_mc_threshold"]).mean()),
        "doc": float(np.clip(calibration["source_accuracy"] - (calibration["source_mean_confidence"]
                                                               - s["mc"].mean()), 0.0, 1.0)),
    }


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Share of clips on which two models' top classes agree."""
    return float((np.asarray(probs_a).argmax(1) == np.asarray(probs_b).argmax(1)).mean())


@torch.no_grad()
def probabilities(dann, x: torch.Tensor, device: torch.device | str = "cpu", batch_size: int = 512) -> np.ndarray:
    """Softmax outputs of a DANN network (eval mode) for clips ``x``."""
    dann.eval()
    out = [torch.softmax(dann(x[s:s + batch_size].to(device, torch.float32), 0.0, with_domain=False)[0].float(), 1)
           .cpu() for s in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0))
