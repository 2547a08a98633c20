"""Gradient reversal layer (Ganin & Lempitsky, arXiv 1409.7495).

Identity going forward; going back the gradient is multiplied by ``-coeff``.
The coefficient is an argument, never hidden state: the schedule that sets it
lives in the training loop, whose step is saved in every checkpoint.
"""

from __future__ import annotations

import torch

__all__ = ["GradReverse", "grad_reverse"]


class GradReverse(torch.autograd.Function):
    """``y = x``; ``dL/dx = -coeff * dL/dy``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # noqa: D401
        ctx.coeff = float(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output.neg() * ctx.coeff, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Reverse (and scale) the gradient flowing back through ``x``.

    Args:
        x: any tensor, shape unchanged.
        coeff: the scale ``lambda`` (>= 0); 0 blocks the gradient.
    """
    return GradReverse.apply(x, coeff)
