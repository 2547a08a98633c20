"""The interface every source-free method implements, and the epoch loop they share.

A method sees the network and the unlabelled target clips only. It says which parameters train
(:meth:`TargetMethod.optimizer`), what it prepares once (:meth:`TargetMethod.begin`), its pseudo-labels
at the start of each epoch (:meth:`TargetMethod.pseudo_labels`, ``-1`` where a clip has none) and its
loss on a batch (:meth:`TargetMethod.loss`). :func:`fit_on_target` runs the epochs of shuffled
batches with batch norm on batch statistics, as tllib's self-training methods do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...errors import OptionError
from ...nn.augment import SpecWarp
from ...runtime import derive_seed

__all__ = ["AdaptConfig", "TargetClips", "TargetMethod", "fit_on_target"]


@dataclass
class TargetClips:
    """Unlabelled target windows: ``x`` float16 ``(N, n_mels, frames)``, the file of each window, the files
    read and those skipped (with the reason)."""

    x: torch.Tensor
    file_index: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of the trained methods (AdaBN has none)."""

    epochs: int = 10  # passes over the target clips
    batch_size: int = 64
    lr: float = 0.005  # SGD, momentum 0.9 (TENT: Adam at lr / 5)
    pseudo_weight: float = 0.3  # SHOT's beta on the pseudo-label cross-entropy
    neighbours: int = 5  # shot-file: embedding neighbours averaged into a pseudo-label
    threshold: float = 0.0  # shot-file: pseudo-labels only where the smoothed probability reaches this
    warp: float = 0.0  # train on clips stretched by up to +-warp in mel and time (pseudo-labels
    #   come from the clips as they are: weak/strong views, FixMatch-style)
    latent_ks: tuple[int, ...] = (2, 3, 4)  # latent-bn: the numbers of target conditions, besides 1, averaged
    class_shares: tuple[float, ...] = ()  # shot, shot-file, latent-bn: the diversity term's class shares
    #   (empty: equal shares, SHOT's own; e.g. the target's estimated shares under label shift)
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "pseudo_weight": self.pseudo_weight >= 0,
            "neighbours": self.neighbours >= 0,
            "threshold": 0.0 <= self.threshold <= 1.0,
            "warp": 0.0 <= self.warp < 0.5,
            "latent_ks": all(isinstance(k, int) and k >= 2 for k in self.latent_ks),
            "class_shares": all(v >= 0 for v in self.class_shares)
            and (not self.class_shares or sum(self.class_shares) > 0),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise OptionError(
                f"adapt settings out of range: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)} "
                "(epochs, batch_size >= 1; lr > 0; threshold in [0, 1]; warp in [0, 0.5); "
                "latent_ks integers >= 2; class_shares >= 0, not all 0)"
            )


class TargetMethod:
    """A source-free method. Subclasses set ``name`` and override what they change."""

    name = ""
    trains = True  # False: AdaBN alone, no epochs
    takes_teacher = False  # accepts a teacher's probabilities as pseudo-labels

    def __init__(self, cfg: AdaptConfig, device: torch.device, teacher: torch.Tensor | None = None) -> None:
        self.cfg, self.device, self.teacher = cfg, device, teacher

    def optimizer(self, dann: nn.Module) -> torch.optim.Optimizer:
        """Mark what trains and return its optimizer."""
        raise NotImplementedError

    def begin(self, dann: nn.Module, clips: TargetClips) -> None:
        """What the method computes once, before the first epoch."""

    def pseudo_labels(self, dann: nn.Module, clips: TargetClips) -> torch.Tensor | None:
        """One class per clip (``-1``: none) for the coming epoch, or None."""
        return None

    def loss(self, logits: torch.Tensor, pseudo: torch.Tensor | None) -> torch.Tensor:
        """The loss on a batch's ``logits`` ``(B, C)`` and its pseudo-labels ``(B,)`` (or None)."""
        raise NotImplementedError


def fit_on_target(
    dann: nn.Module, clips: TargetClips, method: TargetMethod, on_epoch: Callable[[int, int], None] | None = None
) -> dict:
    """Train ``dann`` in place with ``method``: ``epochs`` passes of shuffled target batches (full batches,
    or one if the pool is small), batch norm on batch statistics. Returns the steps and losses."""
    cfg, device = method.cfg, method.device
    opt = method.optimizer(dann)
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, f"adapt/{method.name}"))
    torch.manual_seed(derive_seed(cfg.seed, f"adapt/{method.name}/torch"))
    strong = SpecWarp(cfg.warp, cfg.warp).train() if cfg.warp > 0 else nn.Identity()
    method.begin(dann, clips)
    n, losses = len(clips), []
    for epoch in range(cfg.epochs):
        pseudo = method.pseudo_labels(dann, clips)
        dann.train()
        order = torch.randperm(n, generator=gen)
        for s in range(0, max(n - cfg.batch_size, 0) + 1, cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            logits = dann(strong(clips.x[idx].to(device, torch.float32)))[0].float()
            loss = method.loss(logits, None if pseudo is None else pseudo[idx.to(pseudo.device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        if on_epoch is not None:
            on_epoch(epoch + 1, cfg.epochs)
    for p in dann.parameters():
        p.requires_grad_(True)
    return {
        "epochs": cfg.epochs,
        "steps": len(losses),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
    }
