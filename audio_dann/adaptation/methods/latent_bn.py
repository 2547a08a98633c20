"""``latent-bn``: ``shot-file`` whose pseudo-labels come from the network's predictions with each
recording condition normalised by its own batch-norm statistics.

The target files are clustered by long-term spectrum into K = 2, 3, 4 conditions
(:mod:`audio_dann.adaptation.conditions`; Mancini et al., CVPR 2018), each cluster's clips are
normalised with that cluster's statistics (AdaBN per condition, Li et al. 2016), and the
probabilities are averaged over K = 1 (plain AdaBN) and each K; recomputed at every epoch. Given a
``teacher``, it is averaged with them at every epoch.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ...nn.outputs import probabilities
from ..conditions import clip_descriptors, discover_domains
from .adabn import adabn
from .base import TargetClips
from .shot import ShotFile

__all__ = ["LatentBN", "latent_conditions", "latent_bn_probabilities", "ensemble_probabilities"]


class LatentBN(ShotFile):
    name = "latent-bn"

    def begin(self, dann: nn.Module, clips: TargetClips) -> None:
        self.fixed = None
        self.conditions = latent_conditions(clips, self.cfg.latent_ks, self.cfg.seed)

    def _outputs(self, dann: nn.Module, clips: TargetClips) -> tuple[torch.Tensor, torch.Tensor]:
        z, _ = super()._outputs(dann, clips)
        p = latent_bn_probabilities(dann, clips.x, self.conditions, self.device).to(z.device)
        return z, p if self.teacher is None else 0.5 * (p + self.teacher.to(p.device, p.dtype))


def latent_conditions(clips: TargetClips, ks: tuple[int, ...] = (2, 3, 4), seed: int = 0) -> list[np.ndarray]:
    """The condition of each clip for K = 1 (all one) and each K of ``ks``: the target files clustered
    by long-term spectrum. Seeded: the same every call."""
    labels = [np.zeros(len(clips), dtype=int)]
    if ks:
        x = clips.x.numpy() if isinstance(clips.x, torch.Tensor) else np.asarray(clips.x)
        desc = clip_descriptors(x, clips.file_index)  # float32 one file at a time, not the whole pool
        labels += [discover_domains(desc, seed, k=k)[0][clips.file_index] for k in ks]
    return labels


@torch.no_grad()
def latent_bn_probabilities(
    dann: nn.Module, x: torch.Tensor, conditions: list[np.ndarray], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Class probabilities ``(len(x), classes)`` of ``dann``, averaged over the clusterings in
    ``conditions`` (:func:`latent_conditions`), each cluster's clips normalised with its own batch-norm
    statistics. ``dann`` is not changed."""
    device = torch.device(device)
    per_k = []
    for labels in conditions:
        probs = per_k[0].clone() if per_k else None  # a cluster of one clip keeps the K = 1 probabilities
        for j in np.unique(labels):
            sel = torch.from_numpy(labels == j)
            if probs is not None and int(sel.sum()) < 2:
                continue
            net = copy.deepcopy(dann).to(device)
            adabn(net, x[sel], device)
            p = torch.from_numpy(probabilities(net, x[sel], device))
            probs = torch.zeros(len(x), p.shape[1]) if probs is None else probs
            probs[sel] = p
        per_k.append(probs)
    return torch.stack(per_k).mean(0)


def ensemble_probabilities(
    nets: list[nn.Module],
    clips: TargetClips,
    normalisation: str = "latent-bn",
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[np.ndarray]:
    """Each network's class probabilities on the target clips, normalised per latent condition
    (``latent-bn``, K = 1-4) or with the running statistics they carry (``adabn``: pass networks
    after AdaBN): the members of an ensemble teacher (``train.ensemble_teacher``)."""
    if normalisation == "latent-bn":
        conditions = latent_conditions(clips, seed=seed)
        return [latent_bn_probabilities(net, clips.x, conditions, device).numpy() for net in nets]
    return [probabilities(net.to(device), clips.x, device) for net in nets]
