"""``train``'s self-training stage: the same source-free methods ``adapt`` runs, applied to the run's
selected model on the prepared target pool, guarded by the label-free estimate.

``train`` calls :func:`run_stage` through :class:`StagePlan` and knows no method by name. With
ensemble members (DANN's ``train.latent_ensemble``), the pseudo-labels come from their mean
probabilities (:func:`ensemble_teacher`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nn.classifier import AudioClassifier
from ..nn.outputs import probabilities
from .critic import critic_estimate, keep_source_sample
from .estimators import agreement, calibrate, label_free_estimate
from .floor import floor_holds, floor_of, starting_state
from .guard import guard_decision
from .label_shift import class_shares
from .methods import AdaptConfig, TargetClips, adapt_network, ensemble_probabilities
from .target import choose_windows

__all__ = ["StagePlan", "LabelledClips", "run_stage", "ensemble_teacher"]


@dataclass(frozen=True)
class StagePlan:
    """What the stage does: the method, its settings, the guard and the ensemble teacher's normalisation."""

    method: str
    epochs: int = 10
    threshold: float = 0.0
    max_clips: int = 20000
    guard: bool = True
    seed: int = 0
    teacher_normalisation: str = "latent-bn"
    diversity_target: str = "uniform"  # or "estimated": the target's class shares, estimated before the stage


@dataclass(frozen=True)
class LabelledClips:
    """Log-mel clips ``x`` with labels ``y``: source validation (the guard calibrates on it) or the
    target test clips (report only)."""

    x: Any
    y: np.ndarray
    files: np.ndarray | None = None  # the file number of each clip (None: each clip its own file)


def run_stage(
    model: AudioClassifier,
    pool_x,
    pool_files: list[str],
    plan: StagePlan,
    device: torch.device,
    *,
    source_val: LabelledClips,
    members: list[tuple[str, nn.Module]] = (),
    test: LabelledClips | None = None,
    label_shift: bool = False,
) -> dict:
    """Adapt ``model`` in place on the unlabelled target pool and append the record to ``model.adaptation``.

    At most ``plan.max_clips`` windows are held in memory for the trained methods (the seeded choice of
    :func:`~audio_dann.adaptation.target.choose_windows`, as ``adapt --max-clips``); AdaBN reads the pool
    a batch at a time. With ``plan.guard`` the stage is undone (``kept: original``) where its label-free
    estimate falls below the lower bound of the network before it.
    ``members`` (name, network) add their probabilities to the teacher."""
    t0 = time.perf_counter()
    files = np.unique(np.asarray(pool_files), return_inverse=True)[1]
    x = pool_x
    if plan.method != "adabn":
        keep = choose_windows(files, plan.max_clips, plan.seed)
        x = (
            pool_x[torch.from_numpy(keep)]
            if isinstance(pool_x, torch.Tensor)
            else torch.from_numpy(np.asarray(pool_x[keep]))
        )
        files = np.unique(files[keep], return_inverse=True)[1]
    target = TargetClips(x, files, [], [])
    teacher, ensemble = None, None
    if members:
        teacher, ensemble = ensemble_teacher(model.dann, members, target, plan, device, test)
    estimated = plan.diversity_target == "estimated"
    # the network before the stage, calibrated once on source validation: the guard's ATC and the shares
    calibration = _calibration(model.dann, source_val, device) if plan.guard or estimated else None
    shares = _diversity_shares(model.dann, x, calibration, device) if estimated else ()
    settings = AdaptConfig(epochs=plan.epochs, threshold=plan.threshold, seed=plan.seed, class_shares=shares)
    net, info = adapt_network(model.dann, target, plan.method, settings, device, teacher=teacher)
    floored = floor_holds(model, plan.method)
    guard = (
        _stage_guard(model.dann, net, x, files, calibration, source_val, device, label_shift, floored)
        if plan.guard
        else None
    )
    if guard is None or guard["kept"] == "adapted":
        if floored:  # the estimate's floor reads the network it started from
            model.before_self_training = starting_state(model.dann)
        model.dann = net
    record = {
        "stage": "train.self_training",
        **info,
        "settings": dataclasses.asdict(settings),
        "clips": len(x),
        "pool_clips": len(pool_x),
        "seconds": time.perf_counter() - t0,
        "kept": guard["kept"] if guard else "adapted",
        **({"guard": guard} if guard else {}),
    }
    if ensemble is not None:
        record["ensemble"] = ensemble
    model.adaptation = [*model.adaptation, record]
    return record


def _calibration(dann: nn.Module, source_val: LabelledClips, device: torch.device) -> dict | None:
    """``dann``'s calibration on the source validation clips; None where there are none."""
    return calibrate(_probs(dann, source_val.x, device), source_val.y) if len(source_val.y) else None


def _diversity_shares(dann: nn.Module, x, calibration: dict | None, device: torch.device) -> tuple[float, ...]:
    """The target's class shares estimated from ``dann``'s probabilities on ``x`` (no label read) and its
    ``calibration``; empty (equal shares) where there is no calibration to estimate them with."""
    shares = class_shares(_probs(dann, x, device), calibration) if calibration else None
    return tuple(float(v) for v in shares["estimate"]) if shares else ()


def _probs(dann: nn.Module, x, device: torch.device) -> np.ndarray:
    """Probabilities of ``dann`` for ``x``, run on ``device``; the network goes back where it was."""
    home = next(dann.parameters()).device
    try:
        return probabilities(dann.to(device), x, device)
    finally:
        dann.to(home)


def _stage_guard(
    before: nn.Module,
    after: nn.Module,
    x,
    files: np.ndarray,
    calibration: dict | None,
    source_val: LabelledClips,
    device: torch.device,
    label_shift: bool,
    floored: bool,
) -> dict:
    """The guard for the stage (:func:`~audio_dann.adaptation.guard.guard_decision`): the lower bound of
    the label-free estimate of the network ``before`` against the point estimate ``after``, on the stage's
    clips ``x`` (of the pool files ``files``): the critic on the source validation clips the bundle keeps,
    and the prior bound; no reference, which would have to go through the stage too. Without a
    calibration (no source validation clips), the stage is kept and the record says why."""
    if calibration is None:
        return {"kept": "adapted", "skipped": "no source validation clips to calibrate the estimate on"}
    sample = keep_source_sample(source_val.x, source_val.y, source_val.files)  # the one the bundle keeps
    probs = {"before": _probs(before, x, device), "after": _probs(after, x, device)}
    # the floor where it holds (floor_holds: a self-training stage started from a source-only network)
    floor = floor_of(probs["after"], before, x, device) if floored else None
    est = {
        k: label_free_estimate(
            probs[k],
            calibration,
            label_shift=label_shift,
            critic=critic_estimate(net, sample, x, target_files=files, device=device),
            floor=floor if k == "after" else None,
        )
        for k, net in (("before", before), ("after", after))
    }
    b, a = est["before"]["lower_bound"], est["after"]["value"]
    return {
        "before": b,
        "after": a,
        "compares": "the lower bound before, the estimate after",
        "estimate": {k: e["value"] for k, e in est.items()},
        "lower_bound": {k: e["lower_bound"] for k, e in est.items()},
        "limited_by": {k: e["limited_by"] for k, e in est.items()},
        "prior_bound": {k: e["prior_bound"] for k, e in est.items()},
        "agreement_with_adabn": floor,
        "label_shift": label_shift,
        **guard_decision(b, a),
        "note": "no target label read",
    }


def ensemble_teacher(
    dann: nn.Module,
    members: list[tuple[str, nn.Module]],
    target: TargetClips,
    plan: StagePlan,
    device: torch.device,
    test: LabelledClips | None = None,
) -> tuple[torch.Tensor, dict]:
    """The mean target probabilities of ``dann`` (after AdaBN) and the ``members``, each normalised as
    ``plan.teacher_normalisation`` says (``latent-bn``: batch-norm statistics per latent target condition,
    K = 1-4; ``adabn``: the pool's), and a record of how often each agrees with that mean (no label read;
    with ``test``, the test accuracies after AdaBN under report_only)."""
    nets = [adapt_network(dann, target, "adabn", device=device)[0], *(net for _, net in members)]
    probs = ensemble_probabilities(nets, target, plan.teacher_normalisation, plan.seed, device)
    mean = np.mean(probs, axis=0)
    record = {
        "members": [".", *(name for name, _ in members)],
        "normalisation": plan.teacher_normalisation,
        "agreement_with_teacher": [agreement(p, mean) for p in probs],
    }
    if test is not None and len(test.y):
        on_test = [_probs(net, test.x, device) for net in nets]
        hit = lambda p: float((p.argmax(1) == np.asarray(test.y)).mean())  # noqa: E731
        record["report_only"] = {
            "member_test_acc": [hit(p) for p in on_test],
            "teacher_test_acc": hit(np.mean(on_test, axis=0)),
        }
    return torch.from_numpy(mean).float(), record
