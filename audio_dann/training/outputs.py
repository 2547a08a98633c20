"""A model's outputs over many clips, in eval mode and batches: embeddings and class logits."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..runtime import autocast_for
from .batches import take

__all__ = ["model_outputs", "predict_logits"]


@torch.no_grad()
def model_outputs(model: nn.Module, x, device: torch.device | str = "cpu", amp: str = "off",
                  batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embeddings (N, E), class logits (N, C))`` of a DANN for every row of ``x``, float32 on the CPU.

    ``x``: a tensor, memmap or array of log-mel clips. The model is put back in the mode it was in.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    zs, logits = [], []
    for start in range(0, len(x), batch_size):
        idx = np.arange(start, min(start + batch_size, len(x)))
        with autocast_for(device, amp):
            out, _, z = model(take(x, idx, device), 0.0, with_domain=False)
        zs.append(z.float().cpu())
        logits.append(out.float().cpu())
    model.train(was_training)
    if not logits:
        return torch.empty(0), torch.empty(0)
    return torch.cat(zs), torch.cat(logits)


def predict_logits(model: nn.Module, x, batch_size: int = 256, device: torch.device | str = "cpu",
                   amp: str = "off") -> torch.Tensor:
    """Class logits for every row of ``x`` in eval mode, ``(N, n_classes)`` float32 on the CPU."""
    return model_outputs(model, x, device, amp, batch_size)[1]
