"""Pure schedule functions of training progress ``p = step / total`` in [0, 1]."""

from __future__ import annotations

import math

__all__ = ["grl_coeff", "lr_factor", "progress"]


def _check_p(p: float) -> float:
    p = float(p)
    if not (0.0 <= p <= 1.0) or math.isnan(p):
        raise ValueError(f"training progress p must lie in [0, 1], got {p}")
    return p


def progress(step: int, total: int) -> float:
    """``step / total`` clipped to [0, 1] (total <= 0 counts as finished)."""
    if total <= 0:
        return 1.0
    return min(max(step / total, 0.0), 1.0)


def grl_coeff(p: float, gamma: float = 10.0) -> float:
    """The paper's adaptation factor ``lambda_p = 2 / (1 + exp(-gamma p)) - 1``."""
    p = _check_p(p)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def lr_factor(p: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """The paper's learning-rate annealing ``1 / (1 + alpha p) ** beta``."""
    p = _check_p(p)
    return 1.0 / (1.0 + alpha * p) ** beta
