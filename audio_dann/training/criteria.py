"""Model selection without target labels, and domain-distance diagnostics.

Every criterion reads source labels and *unlabelled* target clips only:

- ``source-val``: accuracy on the held-out source clips (higher is better).
- ``dev``: deep embedded validation (You et al., ICML 2019): the source validation loss weighted
  by the density ratio p_target(z)/p_source(z) from a domain classifier on embeddings, with the
  control variate that lowers its variance (lower risk is better).
- ``snd``: soft neighbourhood density (Saito et al., ICCV 2021): the mean entropy of each target
  clip's softmax-similarity distribution over the other target clips, computed on L2-normalised
  class-probability vectors with temperature 0.05 (higher is better).
- ``rv``: reverse validation (Ganin et al., JMLR 2016, sec. 5.1.2): pseudo-label the target with the
  model, train a reverse model from the model's own weights for a few steps with the pseudo-labelled
  target as source and the source as unlabelled target, and score it on held-out source clips
  (lower reverse risk is better).

``score(name, value)`` turns each into "higher is better" for ranking. Reverse validation trains,
so it lives in :mod:`.reverse`; ranking finished runs is :mod:`audio_dann.report.ranking`'s job.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..runtime import derive_seed

__all__ = ["CRITERIA", "score", "logistic_regression", "proxy_a_distance", "dev_risk", "snd"]

CRITERIA = {"source-val": "source_val_acc", "dev": "dev_risk", "snd": "snd", "rv": "rv_risk"}
_HIGHER_IS_BETTER = {"source_val_acc": True, "snd": True, "dev_risk": False, "rv_risk": False}


def score(criterion: str, metrics: dict) -> float | None:
    """The value of ``criterion`` in one evaluation's metrics, signed so that higher is better."""
    key = CRITERIA[criterion]
    value = metrics.get("selection", {}).get(key, metrics.get(key))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if _HIGHER_IS_BETTER[key] else -value


def logistic_regression(x: torch.Tensor, y: torch.Tensor, steps: int = 200, weight_decay: float = 1e-3):
    """A linear classifier on standardised inputs (scikit-learn's L-BFGS logistic regression; its ``C``
    set so that the penalty is ``weight_decay * ||w||^2`` on the mean loss); returns
    ``predict_proba(x_new) -> (N, K)`` as a float64 tensor."""
    x = x.double().numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0 / (2 * weight_decay * len(x)), max_iter=steps))
    model.fit(x, y.numpy())
    return lambda x_new: torch.from_numpy(model.predict_proba(x_new.double().numpy()))


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(derive_seed(seed, "proxy-a-distance/halves")).permutation(n)
    return perm[: n // 2], perm[n // 2 :]


def proxy_a_distance(source: torch.Tensor, target: torch.Tensor, seed: int = 0) -> float:
    """``2 (1 - 2 err)`` of a linear domain classifier trained on half the clips, tested on the rest.

    About 0 when the two sets are indistinguishable, 2 when they are disjoint.
    """
    x = torch.cat([source, target]).float()
    y = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).long()
    tr, te = _halves(len(x), seed)
    proba = logistic_regression(x[tr], y[tr])(x[te])
    err = float((proba.argmax(1) != y[te]).float().mean())
    return 2.0 * (1.0 - 2.0 * min(err, 0.5))


def dev_risk(
    source_train_z: torch.Tensor, target_z: torch.Tensor, val_z: torch.Tensor, val_losses: torch.Tensor
) -> float:
    """Deep embedded validation risk of one model (lower is better)."""
    x = torch.cat([source_train_z, target_z]).float()
    y = torch.cat([torch.zeros(len(source_train_z)), torch.ones(len(target_z))]).long()
    proba = logistic_regression(x, y)(val_z.float())
    n_s, n_t = len(source_train_z), len(target_z)
    w = (proba[:, 1] / proba[:, 0].clamp_min(1e-6)) * (n_s / n_t)
    w = w.clamp(max=1e3)
    weighted = w * val_losses.double()
    var_w = w.var(unbiased=True)
    eta = 0.0 if float(var_w) < 1e-12 else float(-torch.stack([weighted, w]).cov()[0, 1] / var_w)
    return float(weighted.mean() + eta * w.mean() - eta)


def snd(target_logits: torch.Tensor, temperature: float = 0.05) -> float:
    """Soft neighbourhood density of target predictions (higher is better)."""
    p = F.normalize(torch.softmax(target_logits.float(), 1), dim=1)
    sim = p @ p.T
    sim.fill_diagonal_(float("-inf"))
    q = torch.softmax(sim / temperature, 1)
    ent = -(q * torch.log(q.clamp_min(1e-12))).sum(1)
    return float(ent.mean())
