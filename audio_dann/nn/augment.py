"""Training-only augmentations of normalised log-mels, applied to every clip of a batch (source and
target alike). Each is stateless, so models with and without them save the same weights, and each is
the identity in eval mode.

- :class:`SpecAugment` (Park et al., 2019): masks over mel bands and frames.
- :class:`SpecWarp`: a random per-clip stretch of the mel axis (vocal-tract-length perturbation,
  Jaitly & Hinton, 2013: a shorter vocal tract moves every formant up by one factor) and of the time
  axis (speed perturbation, Ko et al., 2015), by one bilinear resampling.
- :class:`FreqMixStyle` (Schmid et al., DCASE 2023 task 1 winner; Kim et al., 2022): each clip's
  per-band statistics over time replaced by a random mix of its own and another clip's, so the
  network sees recording responses it was not given. Behind the default input normalisation
  (``clip_mean``: each clip's per-band mean already removed) only the per-band spreads are mixed.

They draw from the CPU torch random stream, which ``fit`` seeds and saves, so runs and resumes repeat
exactly on any device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

__all__ = ["SpecAugment", "SpecWarp", "FreqMixStyle", "build_augment"]


class SpecAugment(nn.Module):
    """``freq_masks`` masks of up to ``freq_mask_width`` mel bands and ``time_masks`` masks of up to
    ``time_mask_width`` frames, drawn per clip; masked cells are set to 0 (the standardised mean).

    ``(B, n_mels, frames) -> (B, n_mels, frames)``; the identity in eval mode or with no masks.
    """

    def __init__(
        self, freq_masks: int = 0, freq_mask_width: int = 7, time_masks: int = 0, time_mask_width: int = 10
    ) -> None:
        super().__init__()
        self.masks = [torchaudio.transforms.FrequencyMasking(freq_mask_width, iid_masks=True)] * freq_masks + [
            torchaudio.transforms.TimeMasking(time_mask_width, iid_masks=True)
        ] * time_masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.masks):
            return x
        x = x.unsqueeze(1)
        for mask in self.masks:
            x = mask(x)
        return x.squeeze(1)


def warp_grid(freq_factor: torch.Tensor, time_factor: torch.Tensor, n_mels: int, frames: int) -> torch.Tensor:
    """The ``grid_sample`` grid ``(B, n_mels, frames, 2)`` that stretches each clip's mel axis by
    ``freq_factor`` (anchored at the lowest band: output band f reads input band f / factor) and its
    time axis by ``time_factor`` (anchored at the centre). Factors are ``(B,)``; 1 is the identity."""
    fy = torch.linspace(-1.0, 1.0, n_mels, device=freq_factor.device)
    tx = torch.linspace(-1.0, 1.0, frames, device=freq_factor.device)
    y = -1.0 + (fy[None, :] + 1.0) / freq_factor[:, None]  # (B, n_mels)
    x = tx[None, :] / time_factor[:, None]  # (B, frames)
    return torch.stack(torch.broadcast_tensors(x[:, None, :], y[:, :, None]), dim=-1)


class SpecWarp(nn.Module):
    """Stretch each clip's mel axis by a factor drawn uniformly in ``[1 - freq, 1 + freq]`` and its time
    axis by one in ``[1 - time, 1 + time]``; edges repeat the border band or frame.

    ``(B, n_mels, frames) -> (B, n_mels, frames)``; the identity in eval mode or with both at 0.
    """

    def __init__(self, freq: float = 0.0, time: float = 0.0) -> None:
        super().__init__()
        self.freq, self.time = float(freq), float(time)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and (self.freq > 0 or self.time > 0)):
            return x
        b, n_mels, frames = x.shape
        draw = lambda width: 1.0 + width * (2.0 * torch.rand(b) - 1.0)  # noqa: E731  (CPU stream)
        grid = warp_grid(draw(self.freq), draw(self.time), n_mels, frames).to(x.device, x.dtype)
        return F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="border", align_corners=True).squeeze(
            1
        )


class FreqMixStyle(nn.Module):
    """With probability ``p`` per batch, normalise each clip's bands by their mean and deviation over
    time and rescale them with ``lam * own + (1 - lam) * other``'s, ``lam ~ Beta(alpha, alpha)`` per
    clip and the other clip a random one of the batch (statistics are not back-propagated through).

    ``(B, n_mels, frames) -> (B, n_mels, frames)``; the identity in eval mode or with ``p = 0``.
    """

    def __init__(self, p: float = 0.0, alpha: float = 0.3, eps: float = 1e-6) -> None:
        super().__init__()
        self.p, self.alpha, self.eps = float(p), float(alpha), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.p > 0 and len(x) > 1) or float(torch.rand(())) >= self.p:
            return x
        mu = x.mean(dim=2, keepdim=True).detach()
        sig = (x.var(dim=2, keepdim=True) + self.eps).sqrt().detach()
        perm = torch.randperm(len(x)).to(x.device)
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((len(x), 1, 1)).to(x.device, x.dtype)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sig_mix = lam * sig + (1 - lam) * sig[perm]
        return (x - mu) / sig * sig_mix + mu_mix


def build_augment(cfg) -> nn.Module:
    """The configured augmentations (``ModelConfig``) in their order: style, warp, masks."""
    parts: list[nn.Module] = []
    if cfg.mixstyle_p > 0:
        parts.append(FreqMixStyle(cfg.mixstyle_p, cfg.mixstyle_alpha))
    if cfg.freq_warp > 0 or cfg.time_warp > 0:
        parts.append(SpecWarp(cfg.freq_warp, cfg.time_warp))
    if cfg.freq_masks or cfg.time_masks:
        parts.append(SpecAugment(cfg.freq_masks, cfg.freq_mask_width, cfg.time_masks, cfg.time_mask_width))
    if not parts:
        return nn.Identity()
    return parts[0] if len(parts) == 1 else nn.Sequential(*parts)
