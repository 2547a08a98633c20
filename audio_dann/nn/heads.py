"""The label head G_y and the domain head G_d (behind the gradient reversal layer)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LabelHead", "DomainHead"]


class LabelHead(nn.Module):
    """``(B, E) -> (B, n_classes)`` logits."""

    def __init__(self, embedding_dim: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_dim, n_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)


class DomainHead(nn.Module):
    """MLP -> one logit (two domains) or K logits (K > 2 domains).

    ``forward(z, probs)``: ``(B, E) -> (B, 1 or K)``. The gradient reversal in front of it belongs to the
    training loss (:class:`audio_dann.training.adversarial.DomainAdversarialLoss`).

    With ``condition_classes`` = C > 0 the head sees the multilinear map of the embedding and the
    (detached) class probabilities, ``z ⊗ p`` (CDAN, Long et al., NeurIPS 2018), so it aligns the
    domains class by class instead of as whole mixtures; ``E * C`` above ``MULTILINEAR_MAX`` uses the
    randomised map ``(R_z z) * (R_p p) / sqrt(d)`` with fixed random matrices (as tllib does).
    """

    MULTILINEAR_MAX = 4096

    def __init__(
        self,
        embedding_dim: int,
        n_domains: int = 2,
        hidden: int = 128,
        dropout: float = 0.5,
        layers: int = 2,
        condition_classes: int = 0,
    ) -> None:
        super().__init__()
        if n_domains < 2:
            raise ValueError(f"a domain head needs at least 2 domains, got {n_domains}")
        self.n_domains = n_domains
        self.condition_classes = condition_classes
        out = 1 if n_domains == 2 else n_domains
        width = embedding_dim
        self.randomised = condition_classes > 0 and embedding_dim * condition_classes > self.MULTILINEAR_MAX
        if self.randomised:  # fixed, saved with the weights, never trained
            gen = torch.Generator().manual_seed(0)
            self.register_buffer("r_z", torch.randn(embedding_dim, self.MULTILINEAR_MAX, generator=gen))
            self.register_buffer("r_p", torch.randn(condition_classes, self.MULTILINEAR_MAX, generator=gen))
            width = self.MULTILINEAR_MAX
        elif condition_classes > 0:
            width = embedding_dim * condition_classes
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, out))

    def condition(self, z: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        """The head's input: ``z``, or its multilinear map with the detached class probabilities."""
        if not self.condition_classes:
            return z
        if probs is None:
            raise ValueError("a class-conditioned (CDAN) domain head needs the class probabilities")
        p = probs.detach().to(z.dtype)
        if self.randomised:
            return (z @ self.r_z) * (p @ self.r_p) / self.MULTILINEAR_MAX**0.5
        return torch.bmm(p.unsqueeze(2), z.unsqueeze(1)).flatten(1)

    def forward(self, z: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.condition(z, probs))
