"""How common each class is in the target recordings, estimated without labels (label shift).

A model's predicted class shares on the target are biased towards the source's class shares. Two
standard corrections, both pure functions of the model's target probabilities and what its
calibration records about the source:

- **EM** (Saerens, Latinne & Decaestecker, Neural Computation 2002): re-weight each clip's posterior
  by the ratio of the target's shares to the source's and re-estimate the shares as the mean
  posterior, until they settle. Needs calibrated posteriors.
- **BBSE** (black-box shift estimation, Lipton, Wang & Smola, ICML 2018): solve ``C w = mu`` where
  ``C[i, j]`` is the source validation joint share of (predicted i, true j) and ``mu`` the target's
  predicted shares; the target shares are ``w * source shares``. Needs only hard predictions, and a
  confusion matrix that can be inverted.

Both assume that the classes sound the same in both conditions (``p(x | y)`` unchanged), which a
device shift breaks in part: read them as estimates, compared on real shifts in the results pages.
"""

from __future__ import annotations

import numpy as np

__all__ = ["em_class_shares", "bbse_class_shares", "class_shares"]


def em_class_shares(probs: np.ndarray, source_shares: np.ndarray, iters: int = 200, tol: float = 1e-7) -> np.ndarray:
    """Target class shares by EM on the posteriors ``probs`` ``(N, C)`` of a model trained with
    ``source_shares`` ``(C,)`` (Saerens et al. 2002)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)
    prior = np.clip(np.asarray(source_shares, dtype=np.float64), 1e-12, None)
    prior = prior / prior.sum()
    shares = prior.copy()
    for _ in range(iters):
        weighted = p * (shares / prior)
        weighted /= weighted.sum(1, keepdims=True)
        new = weighted.mean(0)
        if np.abs(new - shares).max() < tol:
            return new
        shares = new
    return shares


def bbse_class_shares(probs: np.ndarray, joint: np.ndarray) -> np.ndarray | None:
    """Target class shares by BBSE (Lipton et al. 2018) from ``joint`` ``(C, C)``, the source validation
    share of (predicted i, true j); None where ``joint`` cannot be inverted (a class never predicted)."""
    joint = np.asarray(joint, dtype=np.float64)
    c = joint.shape[0]
    mu = np.bincount(np.asarray(probs).argmax(1), minlength=c)[:c] / max(len(probs), 1)
    if np.linalg.matrix_rank(joint) < c:
        return None
    w = np.clip(np.linalg.solve(joint, mu), 0.0, None)
    shares = w * joint.sum(0)  # joint.sum(0): the source's true class shares
    return shares / shares.sum() if shares.sum() > 0 else None


def class_shares(probs: np.ndarray, calibration: dict | None) -> dict | None:
    """The target's class shares: ``predicted`` (the model's argmax shares), ``em`` and ``bbse`` where the
    calibration holds what they need, and ``estimate`` (BBSE, else EM, else the predicted shares; ``by``
    says which)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) == 0:
        return None
    predicted = np.bincount(probs.argmax(1), minlength=probs.shape[1]) / len(probs)
    out = {"predicted": [float(v) for v in predicted]}
    prior = (calibration or {}).get("class_prior")
    if prior and len(prior) == probs.shape[1]:
        out["em"] = [float(v) for v in em_class_shares(probs, np.asarray(prior))]
    joint = (calibration or {}).get("joint")
    if joint is not None and np.asarray(joint).shape == (probs.shape[1],) * 2:
        bbse = bbse_class_shares(probs, np.asarray(joint))
        if bbse is not None:
            out["bbse"] = [float(v) for v in bbse]
    # BBSE first: it needs only hard predictions, while EM trusts the posteriors' calibration, which a
    # device shift breaks (PhysioNet e -> b, source-only: EM 0.98 abnormal for a true 0.20, BBSE 0.47)
    out["by"] = "bbse" if "bbse" in out else "em" if "em" in out else "predicted"
    out["estimate"] = out[out["by"]]
    return out
