"""The log-mel frontend's twin for export: the STFT as a strided 1-D convolution with DFT kernels.

:class:`~audio_dann.nn.frontend.LogMel` calls ``torch.stft``, which ONNX runtimes and small
devices handle unevenly; this module computes the same function from a convolution, a square,
a matrix product and a log, operations every ONNX runtime has (opset 11 and up). Its buffers
are derived from the LogMel it copies (window, mel filterbank, floor), so the two cannot drift
apart; a test pins them together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .frontend import LogMel

__all__ = ["ConvLogMel"]


class ConvLogMel(nn.Module):
    """``(batch, samples) -> (batch, n_mels, frames)``, equal to the LogMel it is built from (float32 rounding).

    The frame at hop ``t`` is ``x_padded[t * hop : t * hop + n_fft]`` (``center=True``, zero padding of
    ``n_fft // 2`` on both sides), times the window (zero-padded to ``n_fft`` in the middle, as
    ``torch.stft`` does), projected on cosines and sines of the ``n_fft // 2 + 1`` DFT bins; only the
    taps under the window are computed.
    """

    def __init__(self, logmel: LogMel) -> None:
        super().__init__()
        spec = logmel.mel.spectrogram
        n_fft, win_length, hop = spec.n_fft, spec.win_length, spec.hop_length
        window = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - win_length) // 2
        window[left : left + win_length] = spec.window.detach().double().cpu()
        bins = n_fft // 2 + 1
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        angle = 2 * math.pi * k * n / n_fft
        kernels = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2 * bins, n_fft)
        # Taps where the window is zero contribute nothing: keep [first, last] nonzero only (a window of
        # win_length < n_fft costs win_length taps, not n_fft), and shift the padding to match.
        nonzero = torch.nonzero(window).flatten()
        first, last = int(nonzero[0]), int(nonzero[-1])
        self.register_buffer("kernels", kernels[:, first : last + 1].float()[:, None, :].contiguous())
        self.pad_left, self.pad_right = n_fft // 2 - first, n_fft // 2 - (n_fft - 1 - last)
        self.register_buffer("fb", logmel.mel.mel_scale.fb.detach().float().clone())  # (bins, n_mels)
        self.n_fft, self.hop, self.bins = n_fft, hop, bins
        self.log_floor = float(logmel.log_floor)
        self.sample_rate = logmel.sample_rate

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = F.pad(waveform.float().unsqueeze(1), (self.pad_left, self.pad_right))
        spec = F.conv1d(x, self.kernels, stride=self.hop)  # (B, 2 * bins, frames)
        re, im = spec[:, : self.bins], spec[:, self.bins :]
        power = re * re + im * im  # (B, bins, frames)
        mel = torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)
        return torch.log(mel + self.log_floor)
