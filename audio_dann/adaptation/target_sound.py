"""The target's own sound on source clips: its background and its recording conditions' spectra.

A source-trained network never hears the target's noise or channel; the target enters the default
only through batch-norm statistics and pseudo-labels. Field practice mixes background recordings into
the training clips (BirdNET-Analyzer) and imposes device responses (DCASE task 1's device impulse
responses). We have the target audio itself, so both come from it:

- **Background.** Each target clip's quiet frames are its background: the frames within
  ``QUIET_DB`` dB of its noise floor (the 5th percentile of its frame levels, digital silence left
  out). Stationary noise varies by a dB or two from frame to frame; the tails of sounds lie further
  above it (a fixed quietest fifth of the frames held speech tails 8 dB above the floor on FSDD, and
  mixing those in cost 4 points on one shift). A source clip gets a stretch of one target clip's
  background at that clip's signal-to-noise ratio, so the ratios follow the target's distribution. The
  ratio of a clip is the level of its frames above their quiet level over the quiet level. Noise the
  source clip already has counts: only the power still missing is added.
- **Channel.** The target files are clustered by long-term spectrum into recording conditions (the
  clustering the self-training stage uses, :mod:`.conditions`). Each condition's spectrum over its
  active frames (above their clip's median level), divided by the source's, is a gain per mel band; a
  source clip gets the gain of the condition of the target clip its background comes from. Under the
  default input normalisation a constant gain per band is removed again (``clip_mean``), except where
  the log floor clips: the gain moves the source's level and colour to where the target's sit against
  the floor, which is what the network then sees.

- **Room.** The target's noise and channel alone are half a field recording: a source clip given them
  still sounds dry. On the demo's field (reverberant rooms) the self-training stage of a network trained
  with them traded pulses' and noise bursts' labels on most runs (most likely the network told them
  apart by the gaps between the pulses, which reverberation fills), and adding rooms mended it. A share
  of source clips therefore gets the late reverberation of a random room: each mel band's power
  envelope convolved with an exponential decay (60 dB over the reverberation time, drawn from
  ``REVERB_SECONDS``), its energy set by a direct-to-reverberant ratio drawn from ``REVERB_DRR_DB``
  (late reverberation adds incoherently, in power: Polack's statistical model, as used for
  reverberation suppression in the STFT domain, Lebart et al. 2001). Nothing of it is estimated from
  the target: it is a room, not the target's.

Reverberation is applied first, then the channel, then the background (the order of a recording).
All three act on log-mel features, ``log(mel power + floor)``: mel power is recovered (to float16's
rounding), the gain multiplies it and the background adds to it (powers of independent sounds add, in
expectation), and the log is taken again. Gains are kept within ``MAX_GAIN_DB`` and ratios at or above
``MIN_SNR_DB``. No audio is decoded in training and the cost is a few tensor operations a batch.
The draws use the CPU torch random stream, which the training loop seeds and saves.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn.outputs import take
from ..runtime import derive_seed
from .conditions import clip_descriptors, discover_domains
from .target import choose_windows

__all__ = [
    "QUIET_DB",
    "TargetSound",
    "build_target_sound",
    "late_reverb",
    "mel_power",
    "quiet_frames",
    "signal_and_noise",
]

QUIET_DB = 3.0  # a clip's frames within this many dB of its noise floor are its background
FLOOR_QUANTILE = 0.05  # a clip's noise floor: this quantile of its sounding frames' levels
SILENT = 0.01  # a frame whose mean mel power is under this share of the log floor is digital silence
MIN_QUIET_FRAMES = 4  # a target clip with fewer quiet frames gives no background
MAX_GAIN_DB = 20.0  # a condition's gain per band is kept within +-20 dB (a band the source lacks is not invented)
MIN_SNR_DB = 0.0  # a target clip with no sound event measures below 0 dB: it lends no ratio under this
REVERB_SECONDS = (0.2, 0.8)  # reverberation times drawn: a small office to a hall (RT60)
REVERB_DRR_DB = (-5.0, 5.0)  # direct-to-reverberant energy ratios drawn
MAX_CLIPS = 4000  # target (and source) clips read to build the bank: a seeded choice
CONDITIONS = 4  # recording conditions the target files are clustered into (the stage's largest K)


def mel_power(x: torch.Tensor, floor: float) -> torch.Tensor:
    """Mel power from log-mel features ``log(power + floor)``: 0 below ``SILENT * floor`` (float16 storage
    rounds ``log(floor)`` by about 0.4%, which would otherwise leave a residue in every silent band)."""
    power = x.float().exp() - floor
    return torch.where(power < SILENT * floor, torch.zeros_like(power), power)


def _levels(power: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's level (mean mel power) ``(N, frames)`` and whether it sounds (is above digital silence)."""
    level = power.mean(1)
    return level, level >= SILENT * floor


def quiet_frames(power: torch.Tensor, floor: float, within_db: float = QUIET_DB) -> tuple[torch.Tensor, torch.Tensor]:
    """``(quiet, sounding)`` masks ``(N, frames)`` of clips' mel power ``(N, mels, frames)``: sounding
    frames are those above digital silence; quiet ones are sounding frames at most ``within_db`` dB above
    their clip's noise floor (the ``FLOOR_QUANTILE`` quantile of its sounding frames' levels)."""
    level, sounding = _levels(power, floor)
    noise_floor = torch.nanquantile(torch.where(sounding, level, torch.nan), FLOOR_QUANTILE, dim=1, keepdim=True)
    return sounding & (level <= noise_floor * 10.0 ** (within_db / 10.0)), sounding


def signal_and_noise(power: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clip's signal and noise level ``(N,)``, as mean mel power per frame: the noise is the mean of
    its quiet frames, the signal the mean of its sounding frames less the noise (at least 1e-12)."""
    quiet, sounding = quiet_frames(power, floor)
    level = power.mean(1)  # as quiet_frames reads it
    noise = (level * quiet).sum(1) / quiet.sum(1).clamp_min(1)
    active = (level * sounding).sum(1) / sounding.sum(1).clamp_min(1)
    return (active - noise).clamp_min(1e-12), noise


def late_reverb(power: torch.Tensor, frame_seconds: float, rt60: torch.Tensor, drr_db: torch.Tensor) -> torch.Tensor:
    """Mel power ``(B, mels, frames)`` with late reverberation added: each band's power at frame ``t``
    leaves a tail ``g * 10 ** (-6 k frame_seconds / rt60)`` at frame ``t + k`` (60 dB of decay over
    ``rt60`` seconds), ``g`` such that the tail's energy is ``10 ** (-drr_db / 10)`` times the direct
    sound's; ``rt60`` and ``drr_db`` ``(B,)``, one room per clip. The tail stops at the clip's end."""
    b, mels, t = power.shape
    taps = max(1, min(t - 1, int(np.ceil(float(rt60.max()) / frame_seconds))))
    k = torch.arange(1, taps + 1, device=power.device, dtype=power.dtype)
    decay = 10.0 ** (-6.0 * k[None, :] * frame_seconds / rt60[:, None].to(power))  # (B, taps)
    tail = decay * (10.0 ** (-drr_db[:, None].to(power) / 10.0) / decay.sum(1, keepdim=True))
    kernel = torch.cat([tail.flip(1), torch.zeros_like(tail[:, :1])], 1)  # taps for t - taps .. t - 1, 0 at t
    padded = F.pad(power, (taps, 0)).reshape(1, b * mels, t + taps)
    weights = kernel.repeat_interleave(mels, 0).unsqueeze(1)  # (B * mels, 1, taps + 1)
    return power + F.conv1d(padded, weights, groups=b * mels).reshape(b, mels, t)


def _log_spectrum(power: torch.Tensor, floor: float) -> torch.Tensor:
    """The log of the mean mel power ``(mels,)`` over the active frames (above their clip's median level)
    of clips: their long-term average spectrum."""
    level, sounding = _levels(power, floor)
    median = torch.nanquantile(torch.where(sounding, level, torch.nan), 0.5, dim=1, keepdim=True)
    active = (sounding & (level >= median)).unsqueeze(1)
    return torch.log(((power * active).sum((0, 2)) / active.sum((0, 2)).clamp_min(1)).clamp_min(1e-12))


class TargetSound(nn.Module):
    """The target's backgrounds, their signal-to-noise ratios and their conditions' gains, and random
    rooms, applied to source batches in training (:meth:`forward`); built by :func:`build_target_sound`.

    Buffers: ``frames`` ``(M, mels)`` the quiet frames' mel power, clip after clip; ``start`` and
    ``count`` ``(C,)`` each clip's run in ``frames``; ``snr_db`` ``(C,)``; ``gain`` ``(C, mels)`` the gain
    of each clip's condition.
    """

    def __init__(
        self, frames, start, count, snr_db, gain, floor: float, record: dict, frame_seconds: float = 0.01
    ) -> None:
        super().__init__()
        for name, value in (("frames", frames), ("start", start), ("count", count), ("snr_db", snr_db), ("gain", gain)):
            self.register_buffer(name, value, persistent=False)
        self.floor = float(floor)
        self.frame_seconds = float(frame_seconds)
        self.record = record

    def forward(self, x: torch.Tensor, background: float, channel: float, reverb: float = 0.0) -> torch.Tensor:
        """Source log-mels ``(B, mels, frames)``: each clip gets a random room's reverberation with
        probability ``reverb``, a random target clip's condition gain with probability ``channel`` and its
        background with probability ``background`` (None: 0, as for a configuration not resolved by a plan)."""
        background, channel, reverb = background or 0.0, channel or 0.0, reverb or 0.0
        b, _, t = x.shape
        pick = torch.randint(len(self.count), (b,))
        with_gain = torch.rand(b) < channel
        with_noise = torch.rand(b) < background
        offset = torch.rand(b)
        with_room = torch.zeros(b, dtype=torch.bool)
        if reverb > 0:  # drawn after the others: runs without rooms draw what they drew before rooms existed
            with_room = torch.rand(b) < reverb
            rt60 = torch.empty(b).uniform_(*REVERB_SECONDS)
            drr_db = torch.empty(b).uniform_(*REVERB_DRR_DB)
        if not (with_gain.any() or with_noise.any() or with_room.any()):
            return x
        dev = x.device
        pick, with_gain, with_noise, offset = pick.to(dev), with_gain.to(dev), with_noise.to(dev), offset.to(dev)
        power = mel_power(x, self.floor)
        if with_room.any():  # power is mel_power's own tensor: written in place
            room = with_room.to(dev)
            power[room] = late_reverb(
                power[room], self.frame_seconds, rt60[with_room].to(dev), drr_db[with_room].to(dev)
            )
        gain = torch.where(with_gain[:, None], self.gain[pick], torch.ones_like(self.gain[pick]))
        power = power * gain[:, :, None]
        if with_noise.any():
            signal, noise = signal_and_noise(power, self.floor)
            missing = (signal / 10.0 ** (self.snr_db[pick] / 10.0) - noise).clamp_min(0.0)
            count = self.count[pick]
            idx = (
                self.start[pick, None]
                + ((offset * count).long()[:, None] + torch.arange(t, device=dev)) % count[:, None]
            )
            background_power = self.frames[idx].transpose(1, 2)  # (B, mels, frames)
            scale = missing / background_power.mean((1, 2)).clamp_min(1e-12)
            sounding = _levels(power, self.floor)[1].unsqueeze(1)
            power = power + (with_noise[:, None, None] & sounding) * scale[:, None, None] * background_power
        return torch.log(power + self.floor).to(x.dtype)


def build_target_sound(
    target_x,
    target_files: list[str],
    source_x,
    floor: float,
    seed: int = 0,
    frame_seconds: float = 0.01,
    max_clips: int = MAX_CLIPS,
) -> TargetSound | None:
    """The bank of :class:`TargetSound` from unlabelled target clips (rows of ``target_x``, their files
    ``target_files``) and source clips; at most ``max_clips`` of each are read (seeded choices: the
    target's by the toolkit's one rule, :func:`~.target.choose_windows`). None when no target clip has a
    background (every clip too short or silent). ``frame_seconds``: the features' frame hop (the rooms'
    reverberation times are in seconds)."""
    all_files = np.unique(np.asarray(target_files), return_inverse=True)[1]
    rows = choose_windows(all_files, max_clips, seed)
    x = take(target_x, rows)
    power = mel_power(x, floor)
    quiet, _ = quiet_frames(power, floor)
    keep = quiet.sum(1) >= MIN_QUIET_FRAMES
    if not bool(keep.any()):
        return None
    files = np.unique(all_files[rows], return_inverse=True)[1]
    conditions, found = discover_domains(clip_descriptors(x.numpy(), files), seed, k=CONDITIONS)
    clip_condition = torch.from_numpy(conditions[files]).long()
    source_rows = np.arange(len(source_x))
    if len(source_rows) > max_clips:
        source_rows = np.sort(
            np.random.default_rng(derive_seed(seed, "target-sound/source")).choice(
                len(source_rows), max_clips, replace=False
            )
        )
    src = mel_power(take(source_x, source_rows), floor)
    source_spectrum = _log_spectrum(src, floor)
    limit = MAX_GAIN_DB / 10.0 * float(np.log(10.0))  # in natural-log units
    gains = torch.stack(
        [
            (_log_spectrum(power[clip_condition == k], floor) - source_spectrum).clamp(-limit, limit).exp()
            for k in range(found["k"])
        ]
    )
    signal, noise = signal_and_noise(power, floor)
    snr_db = (10.0 * torch.log10(signal / noise.clamp_min(1e-12))).clamp_min(MIN_SNR_DB)
    kept = torch.nonzero(keep).squeeze(1)
    quiet_kept = quiet[kept]
    frames = power[kept].transpose(1, 2)[quiet_kept]  # (M, mels): each clip's quiet frames in time order
    count = quiet_kept.sum(1)
    start = torch.cumsum(count, 0) - count
    record = {
        "target_clips": int(len(kept)),
        "conditions": int(found["k"]),
        "snr_db_quartiles": [round(float(q), 1) for q in torch.quantile(snr_db[kept], torch.tensor([0.25, 0.5, 0.75]))],
    }
    return TargetSound(frames, start, count, snr_db[kept], gains[clip_condition[kept]], floor, record, frame_seconds)
