"""SHOT (Liang et al., "Do we really need to access the source data?", ICML 2020) and ``shot-file``.

- ``shot``: the label head frozen (the source hypothesis), the feature extractor trained with
  information maximisation (confident and diverse predictions) and self-supervised pseudo-labels
  from class centroids in embedding space; then AdaBN.
- ``shot-file``: ``shot`` whose pseudo-labels are the argmax of probabilities averaged over each
  window's own file and its nearest neighbours in embedding space (NOTELA-style smoothing, Boudiaf
  et al., ICML 2023): windows of one recording share a label, which suits long field recordings.
  Given a ``teacher`` (probabilities of other models on the same windows, e.g. the mean of an
  ensemble), its pseudo-labels are the teacher's probabilities averaged over each file, fixed for the
  whole stage: the network is distilled towards the teacher on the target.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...nn.outputs import model_outputs
from ..objectives import diversity, entropy
from .base import TargetClips, TargetMethod

__all__ = ["Shot", "ShotFile", "file_mean"]


class Shot(TargetMethod):
    name = "shot"

    def optimizer(self, dann: nn.Module) -> torch.optim.Optimizer:
        for p in dann.parameters():
            p.requires_grad_(True)
        for p in dann.label_head.parameters():  # SHOT keeps the source hypothesis (the classifier)
            p.requires_grad_(False)
        params = [p for n, p in dann.named_parameters() if p.requires_grad and not n.startswith("domain_head")]
        return torch.optim.SGD(params, lr=self.cfg.lr, momentum=0.9, weight_decay=5e-4)

    @functools.cached_property
    def _shares(self) -> torch.Tensor | None:
        """The diversity term's class shares (None: equal shares), built once."""
        return torch.tensor(self.cfg.class_shares, device=self.device) if self.cfg.class_shares else None

    def pseudo_labels(self, dann: nn.Module, clips: TargetClips) -> torch.Tensor | None:
        if self.cfg.pseudo_weight <= 0:
            return None
        z, p = self._outputs(dann, clips)
        return self._labels(z, p, clips)

    def _outputs(self, dann: nn.Module, clips: TargetClips) -> tuple[torch.Tensor, torch.Tensor]:
        z, logits = model_outputs(dann, clips.x, self.device)
        return z.to(self.device), torch.softmax(logits, 1).to(self.device)

    def _labels(self, z: torch.Tensor, p: torch.Tensor, clips: TargetClips) -> torch.Tensor:
        return _centroid_labels(z, p)

    def loss(self, logits: torch.Tensor, pseudo: torch.Tensor | None) -> torch.Tensor:
        loss = entropy(logits) + diversity(logits, self._shares)
        if pseudo is not None and bool((pseudo >= 0).any()):
            loss = loss + self.cfg.pseudo_weight * F.cross_entropy(logits, pseudo, ignore_index=-1)
        return loss


class ShotFile(Shot):
    name = "shot-file"
    takes_teacher = True

    def begin(self, dann: nn.Module, clips: TargetClips) -> None:
        self.fixed = None  # given a teacher: its per-file labels throughout
        if self.teacher is not None:
            self.fixed = _confident_argmax(file_mean(self.teacher.float(), clips.file_index), self.cfg.threshold).to(
                self.device
            )

    def pseudo_labels(self, dann: nn.Module, clips: TargetClips) -> torch.Tensor | None:
        if self.fixed is not None:
            return self.fixed if self.cfg.pseudo_weight > 0 else None
        return super().pseudo_labels(dann, clips)

    def _labels(self, z: torch.Tensor, p: torch.Tensor, clips: TargetClips) -> torch.Tensor:
        return _file_neighbour_labels(z, p, clips.file_index, self.cfg.neighbours, self.cfg.threshold)


def _centroid_labels(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """SHOT's pseudo-labels: weighted class centroids (cosine), two rounds of nearest-centroid assignment."""
    zn = F.normalize(z, dim=1)
    centroids = F.normalize(p.T @ zn / p.sum(0)[:, None].clamp_min(1e-8), dim=1)
    labels = (zn @ centroids.T).argmax(1)
    onehot = F.one_hot(labels, p.shape[1]).float()
    centroids = F.normalize(onehot.T @ zn / onehot.sum(0)[:, None].clamp_min(1e-8), dim=1)
    return (zn @ centroids.T).argmax(1)


def file_mean(p: torch.Tensor, file_index: np.ndarray) -> torch.Tensor:
    """Each window's row replaced by the mean of ``p`` over the windows of its file."""
    files = torch.as_tensor(file_index, device=p.device)
    n_files = int(files.max()) + 1
    per_file = torch.zeros(n_files, p.shape[1], device=p.device).index_add_(0, files, p)
    return (per_file / torch.bincount(files, minlength=n_files).clamp_min(1)[:, None])[files]


def _confident_argmax(p: torch.Tensor, threshold: float) -> torch.Tensor:
    """The argmax of each row, or -1 (no pseudo-label) where its probability is under ``threshold``."""
    conf, labels = p.max(1)
    return torch.where(conf >= threshold, labels, torch.full_like(labels, -1))


def _file_neighbour_labels(
    z: torch.Tensor, p: torch.Tensor, file_index: np.ndarray, k: int, threshold: float = 0.0
) -> torch.Tensor:
    """Probabilities averaged over each window's file and its ``k`` nearest embedding neighbours; their
    argmax, or -1 (no pseudo-label) where its probability is under ``threshold``."""
    zn = F.normalize(z, dim=1)
    smoothed = torch.empty_like(p)
    for s in range(0, len(zn), 1024):
        sim = zn[s : s + 1024] @ zn.T
        idx = sim.topk(min(k + 1, len(zn)), dim=1).indices  # itself included
        smoothed[s : s + 1024] = p[idx].mean(1)
    return _confident_argmax(0.5 * smoothed + 0.5 * file_mean(p, file_index), threshold)
