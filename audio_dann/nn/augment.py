"""SpecAugment masks (Park et al., 2019) on normalised log-mels, in training only."""
from __future__ import annotations

import torch
import torchaudio
from torch import nn

__all__ = ["SpecAugment"]


class SpecAugment(nn.Module):
    """``freq_masks`` masks of up to ``freq_mask_width`` mel bands and ``time_masks`` masks of up to
    ``time_mask_width`` frames, drawn per clip; masked cells are set to 0 (the standardised mean).

    ``(B, n_mels, frames) -> (B, n_mels, frames)``; the identity in eval mode or with no masks.
    Holds no state, so models with and without it save the same weights.
    """

    def __init__(self, freq_masks: int = 0, freq_mask_width: int = 7, time_masks: int = 0,
                 time_mask_width: int = 10) -> None:
        super().__init__()
        self.masks = ([torchaudio.transforms.FrequencyMasking(freq_mask_width, iid_masks=True)] * freq_masks +
                      [torchaudio.transforms.TimeMasking(time_mask_width, iid_masks=True)] * time_masks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.masks):
            return x
        x = x.unsqueeze(1)
        for mask in self.masks:
            x = mask(x)
        return x.squeeze(1)
