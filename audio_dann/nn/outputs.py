"""A network's outputs over many clips: the one batched forward pass of the toolkit.

:func:`model_outputs` is the functional core (embeddings and class logits, in eval mode and
batches); :func:`predict_logits` and :func:`probabilities` are thin views of it, as torchaudio's
transforms wrap ``torchaudio.functional``. Training, evaluation, the self-training methods, the
label-free estimates and the reports all call these.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..runtime import autocast_for

__all__ = ["model_outputs", "predict_logits", "probabilities", "take"]


def take(array, idx: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Rows ``idx`` of an array, memmap or tensor as a float32 tensor on ``device``.

    Memmaps are read in sorted order (sequential disk access), then put back in order.
    """
    if isinstance(array, torch.Tensor):
        return array[torch.as_tensor(idx)].to(device=device, dtype=torch.float32, non_blocking=True)
    order = np.argsort(idx, kind="stable")
    rows = np.asarray(array[idx[order]])
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return torch.from_numpy(rows[back]).to(device=device, dtype=torch.float32)


@torch.no_grad()
def model_outputs(
    model: nn.Module, x, device: torch.device | str = "cpu", amp: str = "off", batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embeddings (N, E), class logits (N, C))`` of a :class:`~audio_dann.nn.dann.DANN` for every row
    of ``x`` (a tensor, memmap or array of log-mel clips ``(N, n_mels, frames)``), float32 on the CPU.
    The model runs in eval mode and is put back in the mode it was in."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    zs, logits = [], []
    for start in range(0, len(x), batch_size):
        idx = np.arange(start, min(start + batch_size, len(x)))
        with autocast_for(device, amp):
            out, z = model(take(x, idx, device))
        zs.append(z.float().cpu())
        logits.append(out.float().cpu())
    model.train(was_training)
    if not logits:
        return torch.empty(0), torch.empty(0)
    return torch.cat(zs), torch.cat(logits)


def predict_logits(
    model: nn.Module, x, batch_size: int = 256, device: torch.device | str = "cpu", amp: str = "off"
) -> torch.Tensor:
    """Class logits ``(N, n_classes)`` for every row of ``x``, float32 on the CPU."""
    return model_outputs(model, x, device, amp, batch_size)[1]


def probabilities(
    model: nn.Module, x, device: torch.device | str = "cpu", amp: str = "off", batch_size: int = 256
) -> np.ndarray:
    """Class probabilities ``(N, n_classes)`` (softmax of the logits) for every row of ``x``, as numpy."""
    logits = predict_logits(model, x, batch_size, device, amp)
    return torch.softmax(logits, 1).numpy() if len(logits) else np.zeros((0, 0), dtype=np.float32)
