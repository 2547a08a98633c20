"""The agreement floor of a self-trained model, measured from the network it started from.

A model that ``train``'s stage or ``adapt`` self-trained (every method but AdaBN) from a network that
never saw the target (:func:`floor_holds`) carries the weights of that network
(``AudioClassifier.before_self_training``). Read with the target's batch-norm statistics (AdaBN), it is a
free second model of another kind: the self-trained model's agreement with it on the target clips is the
floor of its point estimate (:func:`~audio_dann.adaptation.estimators.agreement_floor`, where
:func:`~audio_dann.adaptation.estimators.floor_applies`); not of its lower bound, which it overshot on
synthetic -> real speech. Keeping it in the bundle lets ``estimate``, ``evaluate`` and a later ``adapt``
give the figure ``train`` and ``adapt`` gave, on any folder.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..nn.outputs import probabilities
from .estimators import agreement_floor
from .methods.adabn import adabn_copy

__all__ = ["floor_holds", "floor_of", "starting_network", "starting_state", "stored_floor"]


def floor_holds(model, method: str) -> bool:
    """Whether self-training ``model`` (an :class:`~audio_dann.nn.classifier.AudioClassifier`) with
    ``method`` earns the floor: a self-training method (not AdaBN, which only re-estimates batch-norm
    statistics and agrees with its own AdaBN copy), started from a network that never saw the target
    (source-only training, no adaptation kept). The floor counts on the stage correcting more of the
    starting network's mistakes than the two share; from an adapted network (``--method dann``, or a
    bundle adapted before) the stage changes few predictions and the agreement counts the shared mistakes:
    measured 0.935 for a true 0.885 (DANN, FSDD A) and 0.953 for 0.935 (C)."""
    adapted = any(r.get("kept", "adapted") == "adapted" for r in model.adaptation)
    return method != "adabn" and model.config.train.method != "dann" and not adapted


def floor_of(probs: np.ndarray, start: nn.Module, x, device: torch.device | str) -> float:
    """The floor of a model with target probabilities ``probs`` on ``x`` that was self-trained from the
    network ``start``: its agreement with ``start`` under AdaBN on ``x`` (``start`` is left as it was)."""
    return agreement_floor(probs, probabilities(adabn_copy(start, x, device), x, device))


def starting_state(dann: nn.Module) -> dict[str, torch.Tensor]:
    """The weights to keep as a self-trained model's ``before_self_training`` (CPU copies)."""
    return {k: v.detach().cpu().clone() for k, v in dann.state_dict().items()}


def starting_network(model) -> nn.Module | None:
    """The network the bundle ``model`` was self-trained from (its ``before_self_training``, on the CPU);
    None where it keeps none. ``train``'s stage and ``adapt`` keep it exactly when :func:`floor_holds` for
    the adaptation they keep, and ``adapt`` clears it when it keeps any other, so it belongs to the last
    kept adaptation."""
    if not model.before_self_training:
        return None
    start = copy.deepcopy(model.dann).cpu()
    start.load_state_dict(model.before_self_training)
    return start


def stored_floor(model, probs: np.ndarray, x, device: torch.device | str) -> float | None:
    """The floor of the bundle ``model`` on the clips ``x`` where its probabilities are ``probs``, from
    :func:`starting_network`; None where it keeps none (no floor, or bundles written before it was kept)."""
    start = starting_network(model)
    return None if start is None else floor_of(probs, start, x, device)
