"""The objectives of learning from unlabelled target clips: pure functions of class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["entropy", "diversity"]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of the softmax of ``logits`` ``(B, C)``: low when predictions are confident."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def diversity(logits: torch.Tensor, shares: torch.Tensor | None = None) -> torch.Tensor:
    """SHOT's diversity term: minus the entropy of the batch's mean prediction, low when the batch's
    predictions spread over the classes, so that minimising it keeps every class in use. Given the
    target's class ``shares`` ``(C,)`` (e.g. estimated under label shift), the Kullback-Leibler divergence
    of the mean prediction from them instead: low when the predictions are spread as the classes are.
    With equal shares the two differ by the constant ``log C``."""
    mean = torch.softmax(logits.float(), 1).mean(0)
    if shares is None:
        return (mean * torch.log(mean.clamp_min(1e-8))).sum()
    shares = shares.to(mean).clamp_min(1e-8)
    return (mean * (torch.log(mean.clamp_min(1e-8)) - torch.log(shares / shares.sum()))).sum()
