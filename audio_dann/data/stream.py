"""Streaming decode: a file read in blocks, mixed to mono and resampled with streaming state, then cut
into the same windows as whole-file decoding, so memory does not grow with the length of a file.

``stream_mono`` yields exactly the samples of :func:`~.audio.load_mono` (soxr's streaming resampler
gives the one-shot resampler's output bit for bit), and ``stream_windows`` the windows of
:func:`~.audio.plan_windows`: every ``hop`` samples, the last one ending at the file's end, a file
shorter than a window tiled or zero-padded to one. Only about one block and one window are held.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError
from .audio import _INTEGER_READS, _mix_to_mono, decode_error, open_audio

__all__ = ["stream_mono", "stream_windows", "BLOCK_SECONDS"]

BLOCK_SECONDS = 20.0


def stream_mono(path: str | Path, sample_rate: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Blocks of float32 mono samples at ``sample_rate``; failures are :class:`AudioError` naming the file."""
    path = Path(path)
    with open_audio(path) as f:
        dtype, scale = _INTEGER_READS.get(f.subtype, ("float32", 1.0))
        resampler = None
        if f.samplerate != sample_rate:
            import soxr

            resampler = soxr.ResampleStream(f.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
        total = 0
        try:
            for block in f.blocks(blocksize=max(1, int(block_seconds * f.samplerate)), dtype=dtype, always_2d=True):
                mono = _mix_to_mono(block, scale)
                if dtype == "float32" and not np.isfinite(mono).all():
                    raise AudioError(
                        path,
                        f"{int((~np.isfinite(mono)).sum())} of {len(mono)} samples (in a "
                        f"{block_seconds:g} s block) are NaN or infinite",
                    )
                total += len(mono)
                out = resampler.resample_chunk(mono, last=False) if resampler is not None else mono
                if len(out):
                    yield out
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise decode_error(path, exc) from None
        if total == 0:
            raise AudioError(path, "no samples (zero-length audio)")
        if resampler is not None:
            out = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(out):
                yield out


def stream_windows(
    blocks: Iterator[np.ndarray],
    window: int,
    hop: int,
    pad_mode: str = "tile",
    batch: int = 64,
    path: str | Path = "audio",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(starts (n,), windows (n, window))`` batches of at most ``batch`` windows, in order.

    Raises :class:`AudioError` at the end for a silent file (every sample zero): the rule that
    ``prepare`` and ``predict`` share, so any windows already yielded must be discarded by the caller.
    """
    buf = np.zeros(0, dtype=np.float32)
    buf_start = next_start = total = 0
    last_emitted = -1
    audible = False
    for block in blocks:
        audible = audible or bool(block.any())
        buf = np.concatenate([buf, block.astype(np.float32, copy=False)])
        total += len(block)
        starts = np.arange(next_start, total - window + 1, hop, dtype=np.int64)
        for s in range(0, len(starts), batch):
            part = starts[s : s + batch]
            yield part, buf[(part - buf_start)[:, None] + np.arange(window)[None, :]]
        if len(starts):
            last_emitted, next_start = int(starts[-1]), int(starts[-1]) + hop
        keep_from = max(min(next_start, total - window), buf_start)  # the last window's worth stays
        buf, buf_start = buf[keep_from - buf_start :], keep_from
    if not audible:
        raise AudioError(path, "all samples are zero (silent file)" if total else "no samples (zero-length audio)")
    if total < window:
        if pad_mode == "tile":
            one = np.tile(buf, -(-window // total))[:window]
        else:
            one = np.zeros(window, dtype=np.float32)
            one[:total] = buf
        yield np.zeros(1, dtype=np.int64), one[None, :].astype(np.float32, copy=False)
    elif last_emitted + window < total:
        yield np.array([total - window], dtype=np.int64), buf[None, total - window - buf_start : total - buf_start]


def stream_length(path: str | Path) -> float:
    """Seconds of audio a file's header declares (no decoding)."""
    return float(sf.info(str(path)).duration)
