"""The domain-adversarial loss of DANN (Ganin & Lempitsky, arXiv 1409.7495), in one place.

The embedding goes through the gradient reversal layer (identity forward, ``-coeff`` times the
gradient back) into the domain head, which tells the source (domain 0) from the target domains
(1..K). Minimising the head's loss trains the head to tell the domains apart and, through the
reversed gradient, the feature extractor to make them indistinguishable. With a class-conditioned
head (CDAN) the head also sees the class probabilities. As tllib's ``alignment/dann.py``, the loss
owns the reversal, the head's loss and its accuracy; the head itself is a plain MLP saved with the
model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.grl import grad_reverse
from ..nn.heads import DomainHead

__all__ = ["DomainAdversarialLoss", "domain_loss", "domain_correct"]


def domain_loss(logits: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits for one logit (source vs any target), cross-entropy for K logits (domain ids)."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits.squeeze(1).float(), (domains > 0).float())
    return F.cross_entropy(logits.float(), domains)


def domain_correct(logits: torch.Tensor, domains: torch.Tensor) -> int:
    """How many clips the domain head places in their domain (source vs target for one logit)."""
    if logits.shape[1] == 1:
        pred = (logits.squeeze(1) > 0).long()
        return int((pred == (domains > 0).long()).sum())
    return int((logits.argmax(1) == domains).sum())


class DomainAdversarialLoss(nn.Module):
    """``forward(z, domains, coeff, class_logits)``: the domain head's loss on the reversed embedding.

    Args (of ``forward``):
        z: embeddings ``(B, E)`` of source and target clips together.
        domains: ``(B,)`` domain ids, 0 for the source.
        coeff: the reversal's scale ``lambda_p`` at this step (0 blocks the gradient into ``z``).
        class_logits: ``(B, C)``, needed by a class-conditioned (CDAN) head only.
    After each call ``correct`` holds how many clips the head placed in their domain.
    """

    def __init__(self, head: DomainHead) -> None:
        super().__init__()
        self.head = head
        self.correct = 0

    def forward(
        self, z: torch.Tensor, domains: torch.Tensor, coeff: float, class_logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        probs = torch.softmax(class_logits.float(), 1) if self.head.condition_classes else None
        logits = self.head(grad_reverse(z, coeff), probs)
        self.correct = domain_correct(logits.detach(), domains)
        return domain_loss(logits, domains)
