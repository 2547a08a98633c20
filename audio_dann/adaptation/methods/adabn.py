"""AdaBN (Li et al., "Revisiting batch normalization for practical domain adaptation", 2016): the
batch-norm statistics re-estimated on the target clips; nothing is trained. Every other method
starts and ends with it."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .base import TargetMethod

__all__ = ["AdaBN", "adabn", "adabn_copy", "BATCH_NORMS"]

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@torch.no_grad()
def adabn(dann: nn.Module, x, device: torch.device, batch_size: int = 256) -> None:
    """Replace every batch-norm layer's running statistics by those of ``x``: the average of the batch
    statistics, every batch weighted alike (exactly the mean over ``x`` when the batches are equal).

    ``x`` is a tensor or anything whose slices are arrays (a memmapped feature store): it is read one
    batch at a time, so a large pool is never held in memory."""
    bns = [m for m in dann.modules() if isinstance(m, BATCH_NORMS)]
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
        dann(batch.to(device, torch.float32))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    dann.eval()


def adabn_copy(dann: nn.Module, x, device: torch.device | str) -> nn.Module:
    """A copy of ``dann``, on ``device``, with the batch-norm statistics of the clips ``x``; ``dann`` is
    left as it was."""
    device = torch.device(device)
    net = copy.deepcopy(dann).to(device)
    adabn(net, x, device)
    return net


class AdaBN(TargetMethod):
    """Target batch-norm statistics only."""

    name = "adabn"
    trains = False
