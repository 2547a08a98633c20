"""The estimate of target accuracy from one model and its lower bound: a critic that looks for the
model's mistakes (after the disagreement discrepancy, Dis², Rosenfeld & Garg, NeurIPS 2023).

A critic, a linear head on the model's own embeddings, starts from the model's label head and is
trained to agree with the model's predictions on labelled source clips while disagreeing with them as
much as it can on the target clips. Its disagreement rate on the target minus its disagreement rate
on the source (the discrepancy) stands in for how much worse the model does on the target, so

    estimate = source accuracy - discrepancy.

Dis² lets the critic be any linear head. On audio shifts the target's embeddings are linearly separable
from the source's, so such a critic flips every target prediction and the bound is 0 (measured on
heart sounds: discrepancy 0.68-0.80 for every model). Here the critic stays near the model's head: a
penalty ``penalty * |W - W_model|^2`` on its change (weights and bias). A small penalty (a wide search,
more disagreement found) gives the lower bound, a larger one the point estimate. Both constants were
chosen by measurement on the FSDD and heart-sound grids (``recipes/estimates/grade.py``: 0.03 to 1.0
tried), so they are an empirical choice, not a theorem's, and the penalty is in the units of the
embeddings, which differ between architectures.

The source clips are read by a copy of the network with their own batch-norm statistics: a network
adapted to the target's statistics (AdaBN, the self-training stage) is judged on each domain as it
runs there. Read as deployed, the adapted models' source accuracy fell 5-30 points and the estimate
followed (FSDD, 36 models: 10.9 points off on average against 4.2). The critic is fitted on one half
of the files and its discrepancy measured on the other half, both ways (cross-fitting), so no figure is
read off the clips it was fitted on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn.outputs import model_outputs, take
from .methods.adabn import adabn_copy
from .target import choose_windows

__all__ = [
    "BOUND_PENALTY",
    "POINT_PENALTY",
    "SAMPLE_CLIPS",
    "critic_estimate",
    "disagreement_loss",
    "discrepancy_estimate",
    "keep_source_sample",
]

BOUND_PENALTY = 0.1  # the lower bound's critic: a wide search for the model's mistakes
POINT_PENALTY = 0.2  # the point estimate's critic: a narrower one
SAMPLE_CLIPS = 512  # labelled source clips a bundle carries for the estimate (float16 log-mels)
FEW_FILES = 50  # fewer source or target files than this: the estimate says it is rough
MAX_TARGET_CLIPS = 20000  # target windows the critic reads at most (adapt's and estimate's --max-clips)
STEPS = 300
LR = 0.01


def disagreement_loss(logits: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Dis²'s disagreement logistic loss: small where the critic's logit for the model's predicted class
    ``pred`` lies below the mean of its other logits; ``log(1 + exp(l_y - mean_{j != y} l_j))``."""
    k = logits.shape[1]
    own = logits.gather(1, pred[:, None])[:, 0]
    others = (logits.sum(1) - own) / max(k - 1, 1)
    return F.softplus(own - others).mean()


def _fit(
    head: nn.Linear, zs, ps, zt, pt, penalty: float, scale_free: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of a critic started at ``head`` (the model's), trained full-batch with Adam.

    The critic's change is ``dW / s`` and ``db``, penalised by ``penalty * (|dW|^2 + |db|^2)``. ``s`` is 1,
    or with ``scale_free`` the root mean square norm of the embeddings it is fitted on: then embeddings
    scaled by any factor (and the head scaled back, the same model) give the same critic, step by step,
    and the penalty weighs the change in logits. Deterministic (no random draw), and it trains under a
    caller's ``torch.no_grad()`` too."""
    w0, b0 = head.weight.detach().float().cpu(), head.bias.detach().float().cpu()
    s = float(torch.cat([zs, zt]).pow(2).sum(1).mean().sqrt().clamp_min(1e-12)) if scale_free else 1.0
    dw, db = nn.Parameter(torch.zeros_like(w0)), nn.Parameter(torch.zeros_like(b0))
    opt = torch.optim.Adam([dw, db], lr=LR)
    with torch.enable_grad():
        for _ in range(STEPS):
            opt.zero_grad()
            weight, bias = w0 + dw / s, b0 + db
            loss = F.cross_entropy(F.linear(zs, weight, bias), ps) + disagreement_loss(F.linear(zt, weight, bias), pt)
            loss = loss + penalty * ((dw**2).sum() + (db**2).sum())
            loss.backward()
            opt.step()
    return (w0 + dw / s).detach(), (b0 + db).detach()


def _half(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """True for the clips of a random half of the groups (files)."""
    uniq = np.unique(groups)
    return np.isin(groups, rng.permutation(uniq)[: max(1, len(uniq) // 2)])


def discrepancy_estimate(
    head: nn.Linear,
    z_source: np.ndarray | torch.Tensor,
    labels_source: np.ndarray,
    z_target: np.ndarray | torch.Tensor,
    *,
    penalty: float,
    files_source: np.ndarray | None = None,
    files_target: np.ndarray | None = None,
    seed: int = 0,
    scale_free: bool = False,
) -> dict:
    """The critic's figures for the model whose label head is ``head``, from its embeddings on labelled
    source clips (``labels_source``) and on target clips: ``estimate`` (source accuracy - discrepancy,
    clipped to [0, 1]), ``source_accuracy``, ``discrepancy`` (the mean of the two cross-fitted, held-out
    discrepancies) and ``critic_agreement`` (the critics' held-out agreement with the model on the
    target). ``files_*`` group clips of one file into the same half (each clip its own file if None)."""
    zs, zt = (
        torch.as_tensor(np.asarray(z_source, dtype=np.float32)),
        torch.as_tensor(np.asarray(z_target, dtype=np.float32)),
    )
    w, b = head.weight.detach().float().cpu(), head.bias.detach().float().cpu()
    ps, pt = F.linear(zs, w, b).argmax(1), F.linear(zt, w, b).argmax(1)
    source_accuracy = float((ps.numpy() == np.asarray(labels_source)).mean())
    fs = np.arange(len(zs)) if files_source is None else np.asarray(files_source)
    ft = np.arange(len(zt)) if files_target is None else np.asarray(files_target)
    rng = np.random.default_rng(seed)
    in_s, in_t = _half(fs, rng), _half(ft, rng)
    discrepancies, agreements = [], []
    for fold in (True, False):
        fit_s, fit_t = in_s == fold, in_t == fold
        if fit_s.all() or fit_t.all() or not fit_s.any() or not fit_t.any():  # one file: fit and measure on all
            fit_s, fit_t = np.ones(len(zs), bool), np.ones(len(zt), bool)
            held_s, held_t = fit_s, fit_t
        else:
            held_s, held_t = ~fit_s, ~fit_t
        cw, cb = _fit(head, zs[fit_s], ps[fit_s], zt[fit_t], pt[fit_t], penalty, scale_free)
        dis_s = (F.linear(zs[held_s], cw, cb).argmax(1) != ps[held_s]).float().mean().item()
        dis_t = (F.linear(zt[held_t], cw, cb).argmax(1) != pt[held_t]).float().mean().item()
        discrepancies.append(dis_t - dis_s)
        agreements.append(1.0 - dis_t)
    discrepancy = float(np.mean(discrepancies))
    return {
        "estimate": float(np.clip(source_accuracy - max(discrepancy, 0.0), 0.0, 1.0)),
        "source_accuracy": source_accuracy,
        "discrepancy": discrepancy,
        "critic_agreement": float(np.mean(agreements)),
        "penalty": penalty,
    }


def keep_source_sample(x, y: np.ndarray, files: np.ndarray | None = None, seed: int = 0) -> dict | None:
    """The labelled source clips a bundle carries for :func:`critic_estimate` (``adapt`` and ``estimate``
    have no source data): at most :data:`SAMPLE_CLIPS` of ``x`` (a seeded choice), as float16 log-mels
    with their class indices and file numbers; None without clips."""
    y = np.asarray(y)
    if len(y) < 2:  # batch-norm statistics need two clips
        return None
    keep = np.sort(np.random.default_rng(seed).permutation(len(y))[:SAMPLE_CLIPS])
    files = np.arange(len(y)) if files is None else np.unique(np.asarray(files), return_inverse=True)[1]
    return {
        "x": take(x, keep).half(),
        "y": torch.as_tensor(y[keep], dtype=torch.long),
        "files": torch.as_tensor(files[keep], dtype=torch.long),
    }


def critic_estimate(
    dann: nn.Module,
    sample: dict | None,
    target_x,
    *,
    target_files: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict:
    """The point estimate and lower bound of ``dann``'s accuracy on ``target_x`` (no target label read),
    from labelled source clips ``sample`` (:func:`keep_source_sample`): ``value`` (the critic at
    :data:`POINT_PENALTY`), ``lower_bound`` (at :data:`BOUND_PENALTY`, never above ``value``) and each
    critic's figures; ``{}`` without source or target clips.

    The source clips go through a copy of ``dann`` whose batch-norm statistics are the source's own
    (AdaBN on the sample), the target clips through ``dann`` as it is: a network adapted to the
    target's statistics is judged on each domain as it would run there, not charged on the source for
    statistics that were never meant for it."""
    if not sample or len(sample["y"]) < 2 or len(target_x) == 0:
        return {}
    if len(target_x) > MAX_TARGET_CLIPS:  # the seeded choice `adapt --max-clips` makes
        files = np.arange(len(target_x)) if target_files is None else np.asarray(target_files)
        keep = choose_windows(files, MAX_TARGET_CLIPS, seed)
        target_x, target_files = take(target_x, keep), files[keep]
    device = torch.device(device)
    home = next(dann.parameters()).device
    try:
        own = adabn_copy(dann, sample["x"].float(), device)
        zs = model_outputs(own, sample["x"], device)[0]
        zt = model_outputs(dann.to(device), target_x, device)[0]
    finally:
        dann.to(home)
    head = dann.label_head.fc
    figures = {
        name: discrepancy_estimate(
            head,
            zs,
            sample["y"].numpy(),
            zt,
            penalty=p,
            files_source=sample["files"].numpy(),
            files_target=target_files,
            seed=seed,
        )
        for name, p in (("point", POINT_PENALTY), ("bound", BOUND_PENALTY))
    }
    point = figures["point"]["estimate"]
    n_source = len(np.unique(sample["files"].numpy()))
    n_target = len(target_x) if target_files is None else len(np.unique(target_files))
    out = {"value": point, "lower_bound": min(figures["bound"]["estimate"], point), "critics": figures}
    if min(n_source, n_target) < FEW_FILES:
        out["caution"] = (
            f"the estimate rests on {n_source} labelled source files and {n_target} target files: with fewer "
            f"than {FEW_FILES} of either it is rough, whatever it says"
        )
    return out
