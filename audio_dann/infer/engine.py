"""Batch inference over audio files: decode, window, log-mel, network; one result per file.

DataLoader workers take a chunk of files at a time. On CPU each worker decodes,
windows and classifies its files with an inference copy of the model (one
thread per worker); with a GPU the workers decode and window, and the main
process stacks windows from many files into batches for the device; a long
recording is never decoded whole: it streams through the network in blocks (in
the worker on CPU, in the main process on a GPU). A file that cannot be read
gets a result whose error says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.audio import load_clip_source, plan_windows
from ..data.stream import stream_length, stream_mono, stream_windows
from ..data.workers import ChunkDataset, auto_workers, file_chunks, file_loader
from ..errors import AudioError, OptionError
from ..nn.classifier import AudioClassifier
from ..runtime import autocast_for, bounded_workers, check_amp, check_fits_in_memory, cpu_cores, memory_bytes

__all__ = ["FileResult", "iter_predictions", "window_samples"]


@dataclass
class FileResult:
    path: str
    probs: np.ndarray | None  # (n_windows, n_classes) window probabilities
    offsets: np.ndarray | None  # (n_windows,) window starts in seconds
    error: str | None = None
    seconds: float = 0.0  # the file's length

    @property
    def mean_probs(self) -> np.ndarray:
        """The file's prediction: the mean of its window probabilities."""
        return self.probs.mean(0)


def _stream_scores(
    model: AudioClassifier,
    path: str,
    sample_rate: int,
    window: int,
    hop: int,
    pad_mode: str,
    batch_size: int,
    device: torch.device,
    amp: str,
    seconds: float,
) -> tuple:
    """A long file decoded block by block and classified as it streams (flat memory):
    ``("scored", window probabilities, starts in seconds, seconds)``."""
    probs, starts = [], []
    with torch.inference_mode(), autocast_for(device, amp):
        for st, wins in stream_windows(stream_mono(path, sample_rate), window, hop, pad_mode, batch_size, path):
            logits = model(torch.from_numpy(wins).to(device))
            probs.append(torch.softmax(logits.float(), 1).cpu().numpy())
            starts.append(st)
    return "scored", np.concatenate(probs), np.concatenate(starts) / sample_rate, seconds


def _classify(
    model: AudioClassifier,
    items: list[tuple],
    window: int,
    sample_rate: int,
    batch_size: int,
    device: torch.device,
    amp: str = "off",
) -> list[tuple]:
    """``(i, payload, error)`` per file -> ``(i, (window probabilities, starts in seconds, seconds), error)``.

    A payload is ``("plan", signal, starts, seconds)`` for a file decoded whole, or already
    ``("scored", probs, starts in seconds, seconds)`` for a long file classified as it streamed.
    Windows of consecutive planned files share forward passes of up to ``batch_size``, cut from the
    signals one batch at a time.
    """
    where = [(k, int(start)) for k, (_, p, _) in enumerate(items) if p is not None and p[0] == "plan" for start in p[2]]
    probs = np.empty((len(where), len(model.classes)), dtype=np.float32)
    with torch.inference_mode(), autocast_for(device, amp):
        for s in range(0, len(where), batch_size):
            waves = np.stack([items[k][1][1][start : start + window] for k, start in where[s : s + batch_size]])
            logits = model(torch.from_numpy(waves).to(device))
            probs[s : s + len(waves)] = torch.softmax(logits.float(), 1).cpu().numpy()
    out, pos = [], 0
    for i, p, err in items:
        if p is None:
            out.append((i, None, err))
        elif p[0] == "scored":
            out.append((i, p[1:], None))
        else:
            starts = p[2]
            out.append((i, (probs[pos : pos + len(starts)], starts / sample_rate, p[3]), None))
            pos += len(starts)
    return out


def _is_long(item: tuple) -> bool:
    return item[1] is not None and item[1][0] == "long"


def _streamed(
    model: AudioClassifier,
    item: tuple,
    sample_rate: int,
    window: int,
    hop: int,
    pad_mode: str,
    batch_size: int,
    device: torch.device,
    amp: str,
) -> tuple:
    """A ``("long", path, seconds)`` item scored by streaming here. A file that cannot be decoded
    (midway included) gets its reason; a failure of the network or the device stops the run as it
    would for any file (a resumed ``predict`` then retries it, where a recorded error would not be)."""
    i, (_, path, seconds), _ = item
    try:
        return (
            i,
            _stream_scores(model, path, sample_rate, window, hop, pad_mode, batch_size, device, amp, seconds)[1:],
            None,
        )
    except AudioError as exc:
        return i, None, exc.reason


# Files longer than this are decoded as a stream (flat memory): classified inside the worker on CPU,
# in the main process on a GPU (the worker only says "long"). Shorter ones are decoded whole so that
# the windows of many short files share forward passes.
STREAM_ABOVE_SECONDS = 120.0


class _FileClips(ChunkDataset):
    """Worker side: file ``i`` -> a ``("plan", signal, starts, seconds)`` payload, or for a long file
    ``("long", path, seconds)`` (the main process streams it); with ``model`` set, the worker also
    classifies: long files as they stream, the rest of the chunk batched together."""

    def __init__(
        self,
        paths: Sequence[str],
        chunks: list[tuple[int, int]],
        sample_rate: int,
        window: int,
        hop: int,
        pad_mode: str,
        model: AudioClassifier | None = None,
        batch_size: int = 64,
        amp: str = "off",
    ) -> None:
        super().__init__(chunks)
        self.paths, self.sr = list(paths), sample_rate
        self.window, self.hop, self.pad_mode = window, hop, pad_mode
        self.model, self.batch_size, self.amp = model, batch_size, amp

    def work(self, i: int) -> tuple:
        path = self.paths[i]
        seconds = _declared_seconds(path)
        if seconds > STREAM_ABOVE_SECONDS:
            if self.model is None:  # the main process streams it onto its device
                return "long", path, seconds
            return _stream_scores(
                self.model,
                path,
                self.sr,
                self.window,
                self.hop,
                self.pad_mode,
                self.batch_size,
                torch.device("cpu"),
                self.amp,
                seconds,
            )
        x = load_clip_source(path, self.sr)
        return ("plan", *plan_windows(x, self.window, self.hop, self.pad_mode), len(x) / self.sr)

    def finish(self, results: list[tuple]) -> list[tuple]:
        if self.model is None:
            return results
        return _classify(self.model, results, self.window, self.sr, self.batch_size, torch.device("cpu"), self.amp)


def window_samples(
    model: AudioClassifier,
    window_seconds: float | None,
    hop_seconds: float | None,
    batch_size: int = 1,
    workers: int | None = 0,
) -> tuple[int, int]:
    """``(window, hop)`` in samples for ``--window-seconds`` / ``--hop-seconds`` (None: the model's own),
    refused unless finite, positive, long enough for the network's pooling steps, and small enough that
    ``batch_size`` windows in each of ``workers`` processes fit in memory."""
    import math

    feats = model.config.features
    for name, value in (("--window-seconds", window_seconds), ("--hop-seconds", hop_seconds)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise OptionError(f"{name} must be a positive number of seconds, got {value}")
    window_seconds = feats.clip_seconds if window_seconds is None else window_seconds
    hop_seconds = (
        hop_seconds
        if hop_seconds is not None
        else window_seconds
        if window_seconds != feats.clip_seconds
        else feats.hop_seconds
    )
    window, hop = int(round(window_seconds * model.sample_rate)), int(round(hop_seconds * model.sample_rate))
    need = 2 ** (len(model.config.model.channels) - 1) if model.config.model.backbone == "cnn" else 1
    if window // feats.hop_length + 1 < need:
        raise OptionError(
            f"--window-seconds {window_seconds}: too short for the model (at least "
            f"{(need - 1) * feats.hop_length / model.sample_rate:.3f} s)"
        )
    if hop < 1:
        raise OptionError(f"--hop-seconds {hop_seconds}: shorter than one sample")
    if batch_size < 1:
        raise OptionError(f"--batch-size {batch_size}: must be >= 1")
    processes = 1 if workers is None else max(1, bounded_workers(workers, 1 << 30))  # None: fitted to memory below
    # per window in flight: the waveform (4 bytes a sample) and its complex spectrogram (~4 bytes a sample per
    # hop-length of bins), held twice over while a batch is assembled and passed on
    buffers = _buffer_bytes(model, window, batch_size)
    check_fits_in_memory(buffers * processes, "--window-seconds x --batch-size x --workers")
    return window, hop


def _buffer_bytes(model: AudioClassifier, window: int, batch_size: int) -> int:
    """Bytes one process holds for a batch of windows: the waveforms (4 bytes a sample) and their complex
    spectrograms (~8 bytes a bin), twice over while a batch is assembled and passed on."""
    feats = model.config.features
    return int(window * (4 + 8 * (feats.n_fft // 2 + 1) / feats.hop_length) * 2 * batch_size)


def _declared_seconds(path: str) -> float:
    try:
        return stream_length(path)
    except Exception:  # noqa: BLE001 - the decoder reports the reason
        return 0.0


def _sizes(paths: Sequence[str]) -> list[int]:
    sizes = []
    for p in paths:
        try:
            sizes.append(os.stat(p).st_size)
        except OSError:
            sizes.append(0)
    return sizes


def iter_predictions(
    model: AudioClassifier,
    paths: Sequence[str],
    *,
    batch_size: int = 64,
    workers: int | None = None,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    device: str | torch.device = "cpu",
    amp: str = "off",
    network_in_workers: bool | None = None,
) -> Iterator[FileResult]:
    """Yield one :class:`FileResult` per path, in input order.

    On CPU every worker runs the whole pipeline (decode, log-mel, network) on its own chunks of
    files and the main process only puts the results in order: the network is most of the work,
    and this spreads it over all cores with no hand-over of features. On a GPU the workers decode
    and the main process batches windows from many files onto the device.

    ``workers``: worker processes (0: all in this process; None: every core on CPU, half the
    cores on a GPU). ``amp``: "off" (float32, the default), "bf16" or "fp16" autocast for the
    network: faster where the hardware has it (GPUs; CPUs with AMX or AVX-512 BF16), and
    probabilities that differ slightly from float32. ``network_in_workers``: override where the
    network runs (default: in the workers on CPU, in this process on a GPU).
    """
    check_amp(amp)
    if batch_size < 1:
        raise OptionError(f"--batch-size must be >= 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise OptionError(f"--workers must be >= 0, got {workers}")
    device = torch.device(device)
    feats = model.config.features
    sr = model.sample_rate
    window, hop = window_samples(model, window_seconds, hop_seconds, batch_size, workers)
    if workers is None:  # one file (one long recording, say): this process, with every core's threads
        workers = 0 if len(paths) <= 1 else cpu_cores() if device.type == "cpu" else auto_workers()
        workers = min(workers, max(1, memory_bytes() // 2 // _buffer_bytes(model, window, batch_size)))
    fast = model.for_inference().to(device)
    in_workers = device.type == "cpu" if network_in_workers is None else network_in_workers
    dataset = _FileClips(
        paths,
        file_chunks(_sizes(paths)),
        sr,
        window,
        hop,
        feats.pad_mode,
        model=fast if in_workers else None,
        batch_size=batch_size,
        amp=amp,
    )
    pending: list[tuple] = []

    def results(items: list[tuple]) -> Iterator[FileResult]:
        for i, scored, err in items:
            if scored is None:
                yield FileResult(paths[i], None, None, err)
            else:
                yield FileResult(paths[i], scored[0], scored[1], None, scored[2])

    def flush() -> Iterator[FileResult]:
        yield from results(_classify(fast, pending, window, sr, batch_size, device, amp))
        pending.clear()

    for chunk in file_loader(dataset, workers):
        if in_workers:
            yield from results(chunk)
            continue
        for item in chunk:
            if _is_long(item):  # what came before it first, then the long file as it streams, in order
                yield from flush()
                yield from results([_streamed(fast, item, sr, window, hop, feats.pad_mode, batch_size, device, amp)])
            else:
                pending.append(item)
        if sum(len(p[2]) for _, p, _ in pending if p is not None and p[0] == "plan") >= batch_size:
            yield from flush()
    yield from flush()
