"""Self-training on unlabelled target clips (source-free): used by ``adapt`` on any model, and by
``train`` as a stage after alignment (``train.self_training``).

- ``adabn`` (Li et al., 2016): batch-norm statistics re-estimated on the target; nothing trained.
- ``tent`` (Wang et al., ICLR 2021): the batch-norm scales and shifts trained to minimise the entropy
  of target predictions, normalising with target batch statistics; then AdaBN.
- ``shot`` (Liang et al., ICML 2020): the label head frozen, the feature extractor trained with
  information maximisation (confident and diverse predictions) and self-supervised pseudo-labels from
  class centroids in embedding space; then AdaBN.
- ``shot-file``: ``shot`` whose pseudo-labels are the argmax of probabilities averaged over each
  window's own file and its nearest neighbours in embedding space (NOTELA-style smoothing, Boudiaf et
  al., ICML 2023): windows of one recording share a label, which suits long field recordings.
  Given a ``teacher`` (probabilities of other models on the same windows, e.g. the mean of an
  ensemble), its pseudo-labels are instead the teacher's probabilities averaged over each file, fixed
  for the whole stage: the network is distilled towards the teacher on the target.
- ``latent-bn``: ``shot-file`` whose pseudo-labels come from the network's predictions under AdaBN
  per latent recording condition: the target files are clustered by long-term spectrum into K = 2,
  3, 4 conditions (``latent.py``), each cluster's clips are normalised with that cluster's batch-norm
  statistics, and the probabilities are averaged over K = 1 (plain AdaBN) and each K; recomputed at
  every epoch, as shot-file's are. Given a ``teacher``, it is averaged with them at every epoch.

All of them start from AdaBN (normalising with target statistics is the first thing a target-only
method can do) and finish with an AdaBN pass, so the saved model runs in eval mode with target
running statistics.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OptionError
from ..nn.augment import SpecWarp
from ..nn.calibration import probabilities
from ..runtime import derive_seed
from .latent import clip_descriptors, discover_domains

__all__ = ["METHODS", "AdaptConfig", "TargetClips", "adapt_network", "adabn", "latent_conditions",
           "latent_bn_probabilities", "ensemble_probabilities"]

METHODS = ("adabn", "tent", "shot", "shot-file", "latent-bn")


@dataclass
class TargetClips:
    """Unlabelled target windows: ``x`` float16 ``(N, n_mels, frames)``, the file of each window, the files."""

    x: torch.Tensor
    file_index: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.x)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of the trained methods (AdaBN has none)."""

    epochs: int = 10                 # passes over the target clips
    batch_size: int = 64
    lr: float = 0.005                # SGD, momentum 0.9 (TENT: Adam at lr / 5)
    pseudo_weight: float = 0.3       # SHOT's beta on the pseudo-label cross-entropy
    neighbours: int = 5              # shot-file: embedding neighbours averaged into a pseudo-label
    threshold: float = 0.0           # shot-file: pseudo-labels only where the smoothed probability reaches this
    warp: float = 0.0                # train on clips stretched by up to +-warp in mel and time (pseudo-labels
                                     #   come from the clips as they are: weak/strong views, FixMatch-style)
    latent_ks: tuple[int, ...] = (2, 3, 4)  # latent-bn: the numbers of target conditions, besides 1, averaged
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
                  "pseudo_weight": self.pseudo_weight >= 0, "neighbours": self.neighbours >= 0,
                  "threshold": 0.0 <= self.threshold <= 1.0, "warp": 0.0 <= self.warp < 0.5,
                  "latent_ks": all(isinstance(k, int) and k >= 2 for k in self.latent_ks)}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise OptionError(f"adapt settings out of range: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)} "
                              "(epochs, batch_size >= 1; lr > 0; threshold in [0, 1]; warp in [0, 0.5); "
                              "latent_ks integers >= 2)")


@torch.no_grad()
def adabn(dann: nn.Module, x, device: torch.device, batch_size: int = 256) -> None:
    """Replace every batch-norm layer's running statistics by those of ``x``: the average of the batch
    statistics, every batch weighted alike (exactly the mean over ``x`` when the batches are equal).

    ``x`` is a tensor or anything whose slices are arrays (a memmapped feature store): it is read one
    batch at a time, so a large pool is never held in memory."""
    bns = [m for m in dann.modules() if isinstance(m, _BN)]
    saved = [m.momentum for m in bns]
    dann.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every clip counts alike
        m.train()
    bounds = list(range(0, len(x), batch_size)) + [len(x)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]  # no batch of one clip: BatchNorm1d cannot take its statistics
    for s, e in zip(bounds[:-1], bounds[1:]):
        batch = x[s:e]
        batch = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))
        dann(batch.to(device, torch.float32), 0.0, with_domain=False)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    dann.eval()


@torch.no_grad()
def _outputs(dann: nn.Module, x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    dann.eval()
    zs, ps = [], []
    for s in range(0, len(x), 512):
        logits, _, z = dann(x[s:s + 512].to(device, torch.float32), 0.0, with_domain=False)
        zs.append(z.float())
        ps.append(torch.softmax(logits.float(), 1))
    return torch.cat(zs), torch.cat(ps)


def _centroid_labels(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """SHOT's pseudo-labels: weighted class centroids (cosine), two rounds of nearest-centroid assignment."""
    zn = F.normalize(z, dim=1)
    centroids = F.normalize(p.T @ zn / p.sum(0)[:, None].clamp_min(1e-8), dim=1)
    labels = (zn @ centroids.T).argmax(1)
    onehot = F.one_hot(labels, p.shape[1]).float()
    centroids = F.normalize(onehot.T @ zn / onehot.sum(0)[:, None].clamp_min(1e-8), dim=1)
    return (zn @ centroids.T).argmax(1)


def latent_conditions(clips: TargetClips, ks: tuple[int, ...] = (2, 3, 4), seed: int = 0) -> list[np.ndarray]:
    """The condition of each clip for K = 1 (all one) and each K of ``ks``: the target files clustered
    by long-term spectrum (``latent.py``; Mancini et al., CVPR 2018). Seeded: the same every call."""
    labels = [np.zeros(len(clips), dtype=int)]
    if ks:
        x = clips.x.numpy() if isinstance(clips.x, torch.Tensor) else np.asarray(clips.x)
        desc = clip_descriptors(x, clips.file_index)  # float32 one file at a time, not the whole pool
        labels += [discover_domains(desc, seed, k=k)[0][clips.file_index] for k in ks]
    return labels


@torch.no_grad()
def latent_bn_probabilities(dann: nn.Module, x: torch.Tensor, conditions: list[np.ndarray],
                            device: torch.device | str = "cpu") -> torch.Tensor:
    """Class probabilities ``(len(x), classes)`` of ``dann``, averaged over the clusterings in
    ``conditions`` (``latent_conditions``), each cluster's clips normalised with its own batch-norm
    statistics (AdaBN per condition, Li et al. 2016). ``dann`` is not changed."""
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
            p = _outputs(net, x[sel], device)[1].cpu()
            probs = torch.zeros(len(x), p.shape[1]) if probs is None else probs
            probs[sel] = p
        per_k.append(probs)
    return torch.stack(per_k).mean(0)


def ensemble_probabilities(nets: list[nn.Module], clips: TargetClips, normalisation: str = "latent-bn",
                           seed: int = 0, device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Each network's class probabilities on the target clips, normalised per latent condition
    (``latent-bn``, K = 1-4) or with the running statistics they carry (``adabn``: pass networks
    after AdaBN): the members of an ensemble teacher (``train.ensemble_teacher``)."""
    if normalisation == "latent-bn":
        conditions = latent_conditions(clips, seed=seed)
        return [latent_bn_probabilities(net, clips.x, conditions, device).numpy() for net in nets]
    return [probabilities(net.to(device), clips.x, device) for net in nets]


def _file_mean(p: torch.Tensor, file_index: np.ndarray) -> torch.Tensor:
    """Each window's row replaced by the mean of ``p`` over the windows of its file."""
    files = torch.as_tensor(file_index, device=p.device)
    n_files = int(files.max()) + 1
    per_file = torch.zeros(n_files, p.shape[1], device=p.device).index_add_(0, files, p)
    return (per_file / torch.bincount(files, minlength=n_files).clamp_min(1)[:, None])[files]


def _confident_argmax(p: torch.Tensor, threshold: float) -> torch.Tensor:
    """The argmax of each row, or -1 (no pseudo-label) where its probability is under ``threshold``."""
    conf, labels = p.max(1)
    return torch.where(conf >= threshold, labels, torch.full_like(labels, -1))


def _file_neighbour_labels(z: torch.Tensor, p: torch.Tensor, file_index: np.ndarray, k: int,
                           threshold: float = 0.0) -> torch.Tensor:
    """Probabilities averaged over each window's file and its ``k`` nearest embedding neighbours; their
    argmax, or -1 (no pseudo-label) where its probability is under ``threshold``."""
    zn = F.normalize(z, dim=1)
    smoothed = torch.empty_like(p)
    for s in range(0, len(zn), 1024):
        sim = zn[s:s + 1024] @ zn.T
        idx = sim.topk(min(k + 1, len(zn)), dim=1).indices  # itself included
        smoothed[s:s + 1024] = p[idx].mean(1)
    return _confident_argmax(0.5 * smoothed + 0.5 * _file_mean(p, file_index), threshold)


def _teacher_labels(teacher: torch.Tensor, file_index: np.ndarray, threshold: float = 0.0) -> torch.Tensor:
    """The argmax of ``teacher`` probabilities averaged over each window's file, or -1 where that
    probability is under ``threshold``."""
    return _confident_argmax(_file_mean(teacher.float(), file_index), threshold)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-8))).sum(1).mean()


def _train(dann: nn.Module, clips: TargetClips, method: str, cfg: AdaptConfig, device: torch.device,
           teacher: torch.Tensor | None = None, on_epoch: Callable[[int, int], None] | None = None) -> dict:
    """TENT, SHOT or shot-file: ``epochs`` passes of shuffled target batches, BN on batch statistics."""
    if method == "tent":
        for p in dann.parameters():
            p.requires_grad_(False)
        params = [p for m in dann.modules() if isinstance(m, _BN) for p in (m.weight, m.bias) if p is not None]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=cfg.lr / 5)
    else:
        for p in dann.parameters():
            p.requires_grad_(True)
        for p in dann.label_head.parameters():  # SHOT keeps the source hypothesis (the classifier)
            p.requires_grad_(False)
        params = [p for n, p in dann.named_parameters() if p.requires_grad and not n.startswith("domain_head")]
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, f"adapt/{method}"))
    torch.manual_seed(derive_seed(cfg.seed, f"adapt/{method}/torch"))
    n, losses = len(clips), []
    strong = _strong_view(cfg.warp)
    conditions = latent_conditions(clips, cfg.latent_ks, cfg.seed) if method == "latent-bn" else None
    fixed = None  # shot-file given a teacher: its labels throughout (latent-bn averages it into every epoch's)
    if teacher is not None and conditions is None:
        fixed = _teacher_labels(teacher, clips.file_index, cfg.threshold).to(device)
    for epoch in range(cfg.epochs):
        pseudo = fixed if cfg.pseudo_weight > 0 else None
        if fixed is None and method != "tent" and cfg.pseudo_weight > 0:
            z, p = _outputs(dann, clips.x, device)
            if conditions is not None:
                p = latent_bn_probabilities(dann, clips.x, conditions, device).to(p.device)
                p = p if teacher is None else 0.5 * (p + teacher.to(p.device, p.dtype))
            pseudo = (_centroid_labels(z, p) if method == "shot"
                      else _file_neighbour_labels(z, p, clips.file_index, cfg.neighbours, cfg.threshold))
        dann.train()
        order = torch.randperm(n, generator=gen)
        for s in range(0, max(n - cfg.batch_size, 0) + 1, cfg.batch_size):  # full batches (one, if n is small)
            idx = order[s:s + cfg.batch_size]
            logits = dann(strong(clips.x[idx].to(device, torch.float32)), 0.0, with_domain=False)[0].float()
            prob = torch.softmax(logits, 1)
            loss = _entropy(prob)
            if method != "tent":
                mean = prob.mean(0)
                loss = loss + (mean * torch.log(mean.clamp_min(1e-8))).sum()  # minus the entropy of the mean
                if pseudo is not None:
                    target = pseudo[idx.to(pseudo.device)]
                    if bool((target >= 0).any()):
                        loss = loss + cfg.pseudo_weight * F.cross_entropy(logits, target, ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs)
    for p in dann.parameters():
        p.requires_grad_(True)
    return {"epochs": cfg.epochs, "steps": len(losses), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}


def _strong_view(warp: float) -> nn.Module:
    """The clips as the adapting network trains on them: log-mels stretched in mel and time by up to
    ``+-warp`` (before the network's own input normalisation), or as they are."""
    return SpecWarp(warp, warp).train() if warp > 0 else nn.Identity()


def adapt_network(dann: nn.Module, clips: TargetClips, method: str, cfg: AdaptConfig = AdaptConfig(),
                  device: torch.device | str = "cpu", teacher: torch.Tensor | None = None,
                  on_epoch: Callable[[int, int], None] | None = None) -> tuple[nn.Module, dict]:
    """An adapted copy of ``dann`` (the original is untouched) and what was done. ``teacher``
    (``shot-file`` only): probabilities ``(len(clips), classes)`` whose per-file argmax become the
    pseudo-labels."""
    if method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if teacher is not None and (method not in ("shot-file", "latent-bn") or teacher.ndim != 2
                                or len(teacher) != len(clips)):
        raise ValueError(f"a teacher needs method shot-file or latent-bn and one probability row per clip, got {method!r}, "
                         f"{tuple(teacher.shape)} for {len(clips)} clips")
    device = torch.device(device)
    net = copy.deepcopy(dann).to(device)
    adabn(net, clips.x, device)
    info: dict = {"method": method}
    if method != "adabn":
        info.update(_train(net, clips, method, cfg, device, teacher, on_epoch))
        if teacher is not None:
            info["pseudo_labels"] = "teacher"
        adabn(net, clips.x, device)
    return net.eval().cpu(), info
