"""Audio-seconds per second: `audio-dann prepare` vs the naive per-file librosa loop, one run.

    python benchmarks/prepare_speed.py [--files 1000] [--workers 2] [--mem-files 400]

Both read the same files (44.1 kHz stereo 16-bit WAVs of 4 s, resampled to 16 kHz) and produce
64-band log-mels. Peak memory of `prepare` is measured in a child process for N and 3N files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def make_files(root: Path, n: int, seconds: float = 4.0, sr: int = 44100) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        cls = "a" if i % 2 else "b"
        t = np.arange(int(seconds * sr)) / sr
        x = 0.3 * np.sin(2 * np.pi * (200 + 50 * (i % 17)) * t) + 0.05 * rng.standard_normal(len(t))
        p = root / cls / f"{i:05d}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, np.stack([x, x], 1).astype(np.float32), sr, subtype="PCM_16")
        paths.append(p)
    return paths


def naive(paths: list[Path]) -> float:
    import librosa

    t0 = time.perf_counter()
    for p in paths:
        y, _ = librosa.load(p, sr=16000)
        m = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, win_length=400, n_mels=64, fmin=20)
        librosa.power_to_db(m)
    return time.perf_counter() - t0


def ours(src: Path, tgt: Path, out: Path, workers: int, hop: float) -> float:
    """Wall time of the library call behind `audio-dann prepare` (in this process, imports done)."""
    from audio_dann.api import prepare
    from audio_dann.config import Config, apply_overrides

    cfg = apply_overrides(Config(), ["features.n_mels=64", f"features.hop_seconds={hop}", f"data.workers={workers}"])
    t0 = time.perf_counter()
    prepare(src, [tgt], out, config=cfg)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mem-files", type=int, default=400, help="memory check: N and 3N files")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_files(tmp / "src", args.files)
        make_files(tmp / "tgt", 4)
        audio_s = args.files * 4.0
        naive(paths[:2])  # warm-up: librosa's first call compiles numba kernels
        naive_s = naive(paths)
        print(f"files: {args.files} x 4 s, 44.1 kHz stereo -> 16 kHz 64-mel; workers={args.workers}")
        print(f"{'naive librosa loop (whole-file mels)':<45}: {audio_s / naive_s:8.1f} audio-s/s ({naive_s:.1f} s)")
        for hop, what in ((0.5, "default 1 s clips/0.5 s"), (1.0, "1 s clips/1 s")):
            ours_s = ours(tmp / "src", tmp / "tgt", tmp / f"out{hop}", args.workers, hop)
            print(
                f"audio-dann prepare, {what:<25}: {audio_s / ours_s:8.1f} audio-s/s ({ours_s:.1f} s, "
                f"warm) ratio {naive_s / ours_s:.2f}x"
            )
        # the same, as a user runs it: a fresh `audio-dann prepare` process, imports and worker start-up included
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "audio_dann.cli",
                "prepare",
                "--source",
                str(tmp / "src"),
                "--target",
                str(tmp / "tgt"),
                "--out",
                str(tmp / "cli"),
                "--workers",
                str(args.workers),
                "--quiet",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        cli_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import audio_dann.cli"], check=True)
        start_s = time.perf_counter() - t0
        print(
            f"{'`audio-dann prepare` CLI, default clips, cold process':<45}: {audio_s / cli_s:8.1f} audio-s/s "
            f"({cli_s:.1f} s, of which {start_s:.1f} s is starting Python and importing torch) "
            f"ratio {naive_s / cli_s:.2f}x"
        )
        # peak memory must not grow with the number of files
        make_files(tmp / "mem1", args.mem_files)
        make_files(tmp / "mem3", 3 * args.mem_files)
        cmd_peak = []
        for src, out in ((tmp / "mem1", tmp / "m1"), (tmp / "mem3", tmp / "m3")):
            r = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import resource,subprocess,sys;subprocess.run(sys.argv[1:],check=True,"
                    "stdout=subprocess.DEVNULL);print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
                    sys.executable,
                    "-m",
                    "audio_dann.cli",
                    "prepare",
                    "--source",
                    str(src),
                    "--target",
                    str(tmp / "tgt"),
                    "--out",
                    str(out),
                    "--workers",
                    str(args.workers),
                    "--quiet",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            cmd_peak.append(int(r.stdout.strip().splitlines()[-1]))
        print(
            f"peak RSS of the largest prepare process: {cmd_peak[0] / 1024:.0f} MiB for {args.mem_files} files, "
            f"{cmd_peak[1] / 1024:.0f} MiB for {3 * args.mem_files} files (ratio {cmd_peak[1] / cmd_peak[0]:.2f})"
        )


if __name__ == "__main__":
    main()
