"""TENT (Wang et al., "Tent: fully test-time adaptation by entropy minimization", ICLR 2021): the
batch-norm scales and shifts trained to minimise the entropy of the target predictions, normalising
with target batch statistics; then AdaBN."""

from __future__ import annotations

import torch
from torch import nn

from ..objectives import entropy
from .adabn import BATCH_NORMS
from .base import TargetMethod

__all__ = ["Tent"]


class Tent(TargetMethod):
    name = "tent"

    def optimizer(self, dann: nn.Module) -> torch.optim.Optimizer:
        for p in dann.parameters():
            p.requires_grad_(False)
        params = [p for m in dann.modules() if isinstance(m, BATCH_NORMS) for p in (m.weight, m.bias) if p is not None]
        for p in params:
            p.requires_grad_(True)
        return torch.optim.Adam(params, lr=self.cfg.lr / 5)

    def loss(self, logits: torch.Tensor, pseudo: torch.Tensor | None) -> torch.Tensor:
        return entropy(logits)
