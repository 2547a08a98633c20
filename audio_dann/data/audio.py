"""Reading audio: decode (soundfile), mix to mono, resample, plan and cut fixed-length windows.

Every failure is an :class:`AudioError` whose message names the file and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError

__all__ = [
    "AUDIO_EXTENSIONS",
    "open_audio",
    "decode_error",
    "read_audio",
    "resample",
    "load_mono",
    "load_clip_source",
    "plan_windows",
    "gather_windows",
    "slice_windows",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus")


def decode_error(path: str | Path, exc: Exception) -> AudioError:
    """The one-line reason for an exception raised while opening or decoding ``path``."""
    if isinstance(exc, FileNotFoundError):
        return AudioError(path, "file not found")
    if isinstance(exc, PermissionError):
        return AudioError(path, "permission denied")
    return AudioError(path, f"cannot decode ({str(exc).split(':')[-1].strip() or type(exc).__name__})")


DECODE_ERRORS = (OSError, sf.LibsndfileError, RuntimeError, TypeError, ValueError)


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open ``path`` for decoding after checking that it exists, is readable and has a believable header."""
    path = Path(path)
    if path.is_dir():  # listed by the scan because it could not be read
        raise AudioError(path, "a folder that could not be read (permission denied?): its files were left out")
    if not path.is_file():
        raise AudioError(path, "file not found")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")
    try:
        f = sf.SoundFile(str(path))
    except DECODE_ERRORS as exc:
        raise decode_error(path, exc) from None
    try:
        _check_header(path, f)
    except AudioError:
        f.close()
        raise
    return f


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 mono in [-1, 1] at its own rate: ``(samples,), sample_rate``."""
    path = Path(path)
    with open_audio(path) as f:
        dtype, scale = _INTEGER_READS.get(f.subtype, ("float32", 1.0))
        try:
            data, sr = f.read(dtype=dtype, always_2d=True), f.samplerate
        except DECODE_ERRORS as exc:
            raise decode_error(path, exc) from None
    if data.shape[0] == 0:
        raise AudioError(path, "no samples (zero-length audio)")
    mono = _mix_to_mono(data, scale)
    if dtype == "float32" and not np.isfinite(mono).all():
        bad = int((~np.isfinite(mono)).sum())
        raise AudioError(path, f"{bad} of {len(mono)} samples are NaN or infinite")
    return mono, int(sr)


# What a header may claim before the file is refused: the rates and channel counts of real recorders.
MIN_RATE, MAX_RATE, MAX_CHANNELS = 1000, 768000, 64
_PCM_BYTES = {
    "PCM_S8": 1,
    "PCM_U8": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
    "ULAW": 1,
    "ALAW": 1,
}


_UNCOMPRESSED = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "RAW"}


def _check_header(path: Path, f: sf.SoundFile) -> None:
    """Refuse headers that contradict the file: a rate or channel count no recorder writes, or
    (for uncompressed formats) more samples than the file's bytes can hold."""
    if not MIN_RATE <= f.samplerate <= MAX_RATE:
        raise AudioError(path, f"header claims a sample rate of {f.samplerate} Hz (accepted: {MIN_RATE}-{MAX_RATE})")
    if f.channels > MAX_CHANNELS:
        raise AudioError(path, f"header claims {f.channels} channels (at most {MAX_CHANNELS})")
    width = _PCM_BYTES.get(f.subtype) if f.format in _UNCOMPRESSED else None
    if width is not None and f.frames > 0:
        size = os.path.getsize(path)
        if f.frames * f.channels * width > size:
            raise AudioError(
                path, f"header claims {f.frames / f.samplerate:.1f} s of audio, more than its {size} bytes can hold"
            )


# Integer PCM is read as integers and scaled here: libsndfile's own int -> float conversion
# (the same x / 2^15 or x / 2^31) took longer than decoding and resampling together.
_INTEGER_READS = {
    "PCM_16": ("int16", 2.0**-15),
    "PCM_S8": ("int16", 2.0**-15),
    "PCM_U8": ("int16", 2.0**-15),
    "PCM_24": ("int32", 2.0**-31),
    "PCM_32": ("int32", 2.0**-31),
}


def _mix_to_mono(data: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Average the channels of ``(samples, channels)`` and multiply by ``scale``: float32.

    Summing column by column is ~20x faster than ``data.mean(axis=1)``, whose
    reduction over the short, strided channel axis dominated decoding time.
    """
    mono = data[:, 0].astype(np.float32)  # always a fresh contiguous copy
    for c in range(1, data.shape[1]):
        mono += data[:, c]
    factor = scale / data.shape[1]
    if factor != 1.0:
        mono *= np.float32(factor)
    return mono


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality)."""
    if sr_in == sr_out:
        return x
    import soxr

    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def load_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode, mix to mono and resample to ``sample_rate``: ``(samples,)`` float32."""
    x, sr = read_audio(path)
    return resample(x, sr, sample_rate)


def load_clip_source(path: str | Path, sample_rate: int) -> np.ndarray:
    """:func:`load_mono` plus the one rule ``prepare`` and ``predict`` share: a file whose samples are
    all zero is refused (``AudioError``: skipped by prepare, an error row in predict), never scored."""
    x = load_mono(path, sample_rate)
    if not x.any():
        raise AudioError(path, "all samples are zero (silent file)")
    return x


def plan_windows(
    x: np.ndarray, clip_samples: int, hop_samples: int, pad_mode: str = "tile"
) -> tuple[np.ndarray, np.ndarray]:
    """Where the windows of ``x`` start, without cutting them: ``(signal, starts)``.

    A signal shorter than one window comes back as one window's worth, tiled
    (repeated) or zero-padded per ``pad_mode``; never dropped. Long signals give
    windows every ``hop_samples``, the last one aligned to the end so no tail is
    lost. Cut them with :func:`gather_windows`, a batch at a time for long files.
    """
    n = len(x)
    if n == 0:
        raise ValueError("cannot window an empty signal")
    if n <= clip_samples:
        if pad_mode == "tile":
            signal = np.tile(x, -(-clip_samples // n))[:clip_samples]
        else:
            signal = np.zeros(clip_samples, dtype=np.float32)
            signal[:n] = x
        return signal.astype(np.float32, copy=False), np.zeros(1, dtype=np.int64)
    starts = list(range(0, n - clip_samples + 1, hop_samples))
    if starts[-1] + clip_samples < n:
        starts.append(n - clip_samples)
    return x, np.asarray(starts, dtype=np.int64)


def gather_windows(signal: np.ndarray, starts: np.ndarray, clip_samples: int) -> np.ndarray:
    """``(len(starts), clip_samples)`` float32 windows of ``signal`` starting at ``starts``."""
    return signal[np.asarray(starts)[:, None] + np.arange(clip_samples)[None, :]].astype(np.float32, copy=False)


def slice_windows(
    x: np.ndarray, clip_samples: int, hop_samples: int, pad_mode: str = "tile"
) -> tuple[np.ndarray, np.ndarray]:
    """All windows of ``x`` at once: ``((n, clip_samples), starts (n,))`` (see :func:`plan_windows`)."""
    signal, starts = plan_windows(x, clip_samples, hop_samples, pad_mode)
    return gather_windows(signal, starts, clip_samples), starts
