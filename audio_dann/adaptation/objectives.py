"""The objectives of learning from unlabelled target clips: pure functions of class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["entropy", "diversity"]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of the softmax of ``logits`` ``(B, C)``: low when predictions are confident."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def diversity(logits: torch.Tensor) -> torch.Tensor:
    """Minus the entropy of the batch's mean prediction (SHOT's diversity term): low when the batch's
    predictions spread over the classes, so that minimising it keeps every class in use."""
    mean = torch.softmax(logits.float(), 1).mean(0)
    return (mean * torch.log(mean.clamp_min(1e-8))).sum()
