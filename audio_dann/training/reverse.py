"""Reverse validation (Ganin et al., JMLR 2016, sec. 5.1.2), a label-free selection criterion that trains.

Pseudo-label the target with the model, train a reverse model from the model's own weights for a
few steps with the pseudo-labelled target as source and the source as unlabelled target, and score
it on held-out source clips: lower reverse risk is better.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch

from ..config import TrainConfig
from ..nn.outputs import predict_logits
from .loop import TrainData, fit
from .schedules import lr_factor

__all__ = ["reverse_validation_risk"]


def reverse_validation_risk(
    model,
    source_x,
    source_y: torch.Tensor,
    val_x,
    val_y: np.ndarray,
    target_x,
    cfg: TrainConfig,
    steps: int = 25,
    device="cpu",
) -> float:
    """Reverse risk (1 - accuracy on held-out source) of a reverse model trained for ``steps`` steps."""
    if steps <= 0 or len(target_x) == 0:
        return float("nan")
    pseudo = predict_logits(model, target_x, device=device).argmax(1)
    reverse = copy.deepcopy(model)
    adversarial = cfg.method == "dann" and model.domain_head is not None
    rcfg = replace(
        cfg,
        steps=steps,
        eval_every=10**9,
        lr=cfg.lr * lr_factor(1.0, cfg.lr_alpha, cfg.lr_beta),
        lr_alpha=0.0,
        entropy_weight=0.0,
        method="dann" if adversarial else "source-only",
    )
    data = TrainData(target_x, pseudo, source_x, torch.ones(len(source_x), dtype=torch.long))
    with torch.random.fork_rng(devices=[]):
        fit(reverse, data, rcfg, device=device)
    pred = predict_logits(reverse, val_x, device=device).argmax(1).numpy()
    return float(1.0 - (pred == val_y).mean())
