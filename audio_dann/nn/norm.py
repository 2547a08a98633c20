"""Input normalisation inside the model: per-mel standardisation, then optionally each clip's mean removed."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InputNorm"]


class InputNorm(nn.Module):
    """Per-mel standardisation with stored stats, then (``mode="clip_mean"``) each clip's per-mel mean removed.

    ``(B, n_mels, frames) -> (B, n_mels, frames)``. Removing the clip mean in the
    log domain cancels a fixed gain and a fixed microphone response per clip, which
    is why no random gain/EQ augmentation is offered: it would be removed here.
    """

    def __init__(self, n_mels: int, mode: str = "clip_mean") -> None:
        super().__init__()
        if mode not in ("global", "clip_mean"):
            raise ValueError(f"model.input_norm: must be global or clip_mean, got {mode!r}")
        self.mode = mode
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def set_stats(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean[:, None]) / self.std[:, None]
        if self.mode == "clip_mean":
            x = x - x.mean(dim=-1, keepdim=True)
        return x
