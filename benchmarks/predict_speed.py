"""Files per second and real-time factor: `audio-dann predict` vs a naive per-file loop, one run.

    python benchmarks/predict_speed.py [--files 1000] [--workers N]

The naive loop is what a user writes first: `librosa.load(sr=...)`, the model's own frontend and
network on a batch of one, file by file. Both use the same untrained model bundle and files
(22.05 kHz mono WAVs of 3 s, windowed into 1 s clips every 0.5 s). The target compares the
default (float32) predict; the bf16 row is the opt-in `--amp bf16`, shown with how far its
probabilities move.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audio_dann.api import predict
from audio_dann.config import Config
from audio_dann.data.audio import slice_windows
from audio_dann.nn.classifier import build_classifier, load_model
from audio_dann.runtime import cpu_cores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=None, help="default: predict's own (one per core on CPU)")
    args = ap.parse_args()
    sr, seconds = 22050, 3.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.files):
            p = tmp / "wavs" / f"{i:05d}.wav"
            p.parent.mkdir(exist_ok=True)
            sf.write(p, (0.1 * rng.standard_normal(int(sr * seconds))).astype(np.float32), sr, subtype="PCM_16")
            paths.append(p)
        config = Config()
        model = build_classifier(config, [f"c{k}" for k in range(10)], ["source", "target"])
        model.save(tmp / "model.pt")

        import librosa

        naive_model = load_model(tmp / "model.pt")
        feats = config.features

        def naive(files):
            with torch.inference_mode():
                for p in files:
                    y, _ = librosa.load(p, sr=feats.sample_rate)
                    windows, _ = slice_windows(y, feats.clip_samples, int(feats.hop_seconds * feats.sample_rate))
                    probs = [torch.softmax(naive_model(torch.from_numpy(w)[None]), 1) for w in windows]
                    torch.stack(probs).mean(0)

        naive(paths[:20])  # warm-up: librosa's first call compiles numba kernels; oneDNN caches kernels
        t0 = time.perf_counter()
        naive(paths)
        naive_s = time.perf_counter() - t0

        workers = cpu_cores() if args.workers is None else args.workers
        timings = {}
        for amp in ("off", "bf16"):
            t0 = time.perf_counter()
            predict(tmp / "model.pt", tmp / "wavs", tmp / f"pred_{amp}.csv", workers=workers, batch_size=64, amp=amp)
            timings[amp] = time.perf_counter() - t0
        probs = [
            np.loadtxt(tmp / f"pred_{amp}.csv", delimiter=",", skiprows=1, usecols=range(3, 13))
            for amp in ("off", "bf16")
        ]
        audio = args.files * seconds
        print(
            f"files: {args.files} x {seconds:.0f} s at {sr} Hz; model: default LogMelCNN (untrained), 1 s windows, "
            f"hop 0.5 s; {torch.get_num_threads()} torch threads"
        )
        print(
            f"naive per-file loop          : {args.files / naive_s:7.1f} files/s, real-time factor {naive_s / audio:.4f}"
        )
        for amp, what in (("off", "float32 (default)"), ("bf16", "--amp bf16 (opt-in)")):
            print(
                f"audio-dann predict, {what:<19}: {args.files / timings[amp]:7.1f} files/s, real-time factor "
                f"{timings[amp] / audio:.4f} (workers={workers}, batch 64) ratio {naive_s / timings[amp]:.2f}x"
            )
        print(f"bf16 vs float32: max |probability difference| {np.abs(probs[0] - probs[1]).max():.2e}")
        ceiling(naive_model, paths[:100], naive_s / args.files, workers)


def ceiling(model, paths, naive_per_file: float, cores: int) -> None:
    """The most any predict could gain here: one core's cost per file of decoding + log-mels and of
    the float32 network (inference copy, batch 64), spread perfectly over ``cores`` cores."""
    from audio_dann.data.audio import load_mono

    feats = model.config.features
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fast = model.for_inference()
        t0 = time.perf_counter()
        windows = []
        with torch.inference_mode():
            for p in paths:
                w, _ = slice_windows(
                    load_mono(p, feats.sample_rate), feats.clip_samples, int(feats.hop_seconds * feats.sample_rate)
                )
                windows.append(fast.features(torch.from_numpy(w)))
        front = (time.perf_counter() - t0) / len(paths)
        batch = torch.cat(windows)[:64]
        with torch.inference_mode():
            fast.classify(batch)
            t0 = time.perf_counter()
            for _ in range(5):
                fast.classify(batch)
        per_window = (time.perf_counter() - t0) / (5 * len(batch))
    finally:
        torch.set_num_threads(threads)
    per_file = front + per_window * len(windows[0])
    print(
        f"one core, per file: decode + log-mels {front * 1e3:.2f} ms, network {per_window * len(windows[0]) * 1e3:.2f} ms "
        f"({len(windows[0])} windows x {per_window * 1e3:.3f} ms); perfectly spread over {cores} cores: "
        f"{per_file / cores * 1e3:.2f} ms per file, at most {naive_per_file / (per_file / cores):.2f}x the naive loop"
    )


if __name__ == "__main__":
    main()
