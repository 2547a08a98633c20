"""The source-free methods, one file each, behind one interface (:class:`~.base.TargetMethod`).

- ``adabn``: target batch-norm statistics (:mod:`.adabn`);
- ``tent``: batch-norm affine parameters trained to minimise target entropy (:mod:`.tent`);
- ``shot`` and ``shot-file``: information maximisation with pseudo-labels (:mod:`.shot`);
- ``latent-bn``: ``shot-file`` with pseudo-labels from per-condition batch-norm statistics (:mod:`.latent_bn`).

All of them start from AdaBN (normalising with target statistics is the first thing a target-only
method can do) and finish with an AdaBN pass, so the adapted model runs in eval mode with target
running statistics. :func:`adapt_network` is the one entry point: ``adapt`` and ``train``'s stage call it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ...errors import OptionError
from .adabn import AdaBN, adabn
from .base import AdaptConfig, TargetClips, TargetMethod, fit_on_target
from .latent_bn import LatentBN, ensemble_probabilities, latent_bn_probabilities, latent_conditions
from .shot import Shot, ShotFile
from .tent import Tent

__all__ = [
    "METHODS",
    "DEFAULT_METHOD",
    "AdaptConfig",
    "TargetClips",
    "TargetMethod",
    "adapt_network",
    "adabn",
    "latent_conditions",
    "latent_bn_probabilities",
    "ensemble_probabilities",
]

_REGISTRY: dict[str, type[TargetMethod]] = {m.name: m for m in (AdaBN, Tent, Shot, ShotFile, LatentBN)}
METHODS = tuple(_REGISTRY)
DEFAULT_METHOD = "latent-bn"  # adapt's default, and the stage of train's default


def adapt_network(
    dann: nn.Module,
    clips: TargetClips,
    method: str,
    cfg: AdaptConfig = AdaptConfig(),
    device: torch.device | str = "cpu",
    teacher: torch.Tensor | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> tuple[nn.Module, dict]:
    """An adapted copy of ``dann`` (the original is untouched) and a record of what was done.

    Args:
        dann: the network to adapt.
        clips: the unlabelled target windows.
        method: one of :data:`METHODS`.
        cfg: the trained methods' settings.
        teacher: (``shot-file``, ``latent-bn``) probabilities ``(len(clips), classes)`` of other models
            on the same windows, used as pseudo-labels.
        on_epoch: ``(done, total)`` after each epoch of a trained method.
    """
    if method not in _REGISTRY:
        raise OptionError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    kind = _REGISTRY[method]
    if teacher is not None and (not kind.takes_teacher or teacher.ndim != 2 or len(teacher) != len(clips)):
        raise ValueError(
            f"a teacher needs method shot-file or latent-bn and one probability row per clip, got "
            f"{method!r}, {tuple(teacher.shape)} for {len(clips)} clips"
        )
    device = torch.device(device)
    net = copy.deepcopy(dann).to(device)
    adabn(net, clips.x, device)
    info: dict = {"method": method}
    if kind.trains:
        info.update(fit_on_target(net, clips, kind(cfg, device, teacher), on_epoch))
        if teacher is not None:
            info["pseudo_labels"] = "teacher"
        adabn(net, clips.x, device)
    return net.eval().cpu(), info
