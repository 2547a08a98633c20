"""The label head G_y and the domain head G_d (behind the gradient reversal layer)."""
from __future__ import annotations

import torch
from torch import nn

from .grl import grad_reverse

__all__ = ["LabelHead", "DomainHead"]


class LabelHead(nn.Module):
    """``(B, E) -> (B, n_classes)`` logits."""

    def __init__(self, embedding_dim: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_dim, n_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)


class DomainHead(nn.Module):
    """GRL -> MLP -> one logit (two domains) or K logits (K > 2 domains).

    ``forward(z, coeff)``: ``(B, E) -> (B, 1 or K)``; the gradient into ``z`` is
    multiplied by ``-coeff``, the head itself learns at full rate.
    """

    def __init__(self, embedding_dim: int, n_domains: int = 2, hidden: int = 128, dropout: float = 0.5,
                 layers: int = 2) -> None:
        super().__init__()
        if n_domains < 2:
            raise ValueError(f"a domain head needs at least 2 domains, got {n_domains}")
        self.n_domains = n_domains
        out = 1 if n_domains == 2 else n_domains
        blocks: list[nn.Module] = []
        width = embedding_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, out))

    def forward(self, z: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
        return self.net(grad_reverse(z, coeff))
