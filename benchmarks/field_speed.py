"""Field-scale inference: real-time factor and peak memory of `predict` and `prepare` on long files,
next to a bare loop of the model over the same windows, and an interrupted folder run resumed.

    python benchmarks/field_speed.py [--hours 0.1667 1 4] [--short-files 1000] [--workers 2]

For each file length: `audio-dann predict` and `audio-dann prepare` (that file as the target) run as
fresh processes; peak RSS is the largest sum of the RSS of the command and its worker processes,
sampled every 100 ms. The bare loop decodes the whole file, cuts every window and runs the inference
copy of the same model in batches of 64 with as many threads as predict has workers: the compute
ceiling for this hardware (it holds the whole signal, so its memory grows with the file). Then a
folder run is killed (SIGKILL) when 60% of its files are in the journal and rerun: its time against
an uninterrupted run, and whether the tables are identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 16000


def _tree_rss(pid: int) -> int:
    """Proportional set size (PSS: shared pages split among the processes sharing them) in bytes of
    ``pid`` and all its descendants; summing plain RSS would count torch's libraries once per worker."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except (OSError, ValueError):
                pass
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
    return total


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak MiB of the process tree)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    t.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.decode()[-500:]}")
    return time.perf_counter() - t0, peak[0] / 2**20


def write_recording(path: Path, seconds: float, seed: int = 0) -> None:
    """A long synthetic field recording: noise with tones coming and going, written in blocks."""
    rng = np.random.default_rng(seed)
    with sf.SoundFile(str(path), "w", SR, 1, subtype="PCM_16") as f:
        for start in range(0, int(seconds * SR), 60 * SR):
            n = min(60 * SR, int(seconds * SR) - start)
            t = (start + np.arange(n)) / SR
            x = 0.05 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * rng.uniform(300, 3000) * t) * (
                np.sin(2 * np.pi * t / 7) > 0.3
            )
            f.write(x.astype(np.float32))


def library_predict(model_path: Path, audio: Path, out: Path) -> float:
    """Seconds of ``audio_dann.predict`` on one file in this (warm) process: the same work as the bare loop."""
    from audio_dann.api import predict

    t0 = time.perf_counter()
    predict(model_path, audio, out, per_window=True)
    return time.perf_counter() - t0


def bare_loop(model_path: Path, audio: Path, threads: int) -> float:
    """Seconds for decode + every window + the inference copy, batches of 64 (no output, no workers)."""
    from audio_dann.data.audio import gather_windows, load_mono, plan_windows
    from audio_dann.nn.classifier import load_model

    torch.set_num_threads(threads)
    model = load_model(model_path).for_inference()
    cfg = model.config.features
    t0 = time.perf_counter()
    signal, starts = plan_windows(load_mono(audio, SR), cfg.clip_samples, int(cfg.hop_seconds * SR), cfg.pad_mode)
    with torch.inference_mode():
        for s in range(0, len(starts), 64):
            model(torch.from_numpy(gather_windows(signal, starts[s : s + 64], cfg.clip_samples)))
    return time.perf_counter() - t0


def interrupted_run(cli: list[str], model: Path, folder: Path, out: Path, n_files: int) -> dict:
    """Full run time, then a run killed at 60% of the journal and resumed: times and table equality."""
    full_s, _ = run_measured(
        [*cli, "predict", str(model), str(folder), "--out", str(out.with_name("full.csv")), "--per-window", "--quiet"]
    )
    cmd = [*cli, "predict", str(model), str(folder), "--out", str(out), "--per-window", "--quiet"]
    journal = out.parent / f".{out.name}.journal"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while proc.poll() is None:
        if journal.is_file() and len(journal.read_text().splitlines()) - 1 >= 0.6 * n_files:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    done_before = len(journal.read_text().splitlines()) - 1 if journal.is_file() else 0
    resume_s, _ = run_measured(cmd)
    same = out.read_bytes() == out.with_name("full.csv").read_bytes()
    return {"full_s": full_s, "resume_s": resume_s, "files_done_when_killed": done_before, "same_table": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", nargs="+", type=float, default=[10 / 60, 1.0, 4.0])
    ap.add_argument("--short-files", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--resume-files", type=int, default=24, help="files of 4 min in the interrupted folder run")
    args = ap.parse_args()
    from audio_dann.config import Config
    from audio_dann.nn.classifier import build_classifier

    exe = shutil.which("audio-dann")
    cli = [exe] if exe else [sys.executable, "-m", "audio_dann.cli"]
    tmp = Path(tempfile.mkdtemp(prefix="field_speed_"))
    try:
        torch.manual_seed(0)
        model = tmp / "model.pt"
        build_classifier(Config(), ["tone", "noise"], ["source", "field"]).save(model)
        src = tmp / "src"
        for c in ("tone", "noise"):
            (src / c).mkdir(parents=True)
            for k in range(4):
                write_recording(src / c / f"{k}.wav", 2.0, seed=k)
        w = ["--workers", str(args.workers)]
        print(
            f"{'input':22} {'CLI predict RTF':>15} {'peak MiB':>8} {'library RTF':>11} {'bare loop RTF':>13} "
            f"{'library/bare':>12} {'prepare RTF':>11} {'peak MiB':>8}"
        )
        warm = tmp / "warm.wav"
        write_recording(warm, 30.0)
        library_predict(model, warm, tmp / "w.csv"), bare_loop(model, warm, args.workers)
        for hours in args.hours:
            audio = tmp / f"rec_{hours:g}h.wav"
            write_recording(audio, hours * 3600)
            seconds = hours * 3600
            p_s, p_mb = run_measured([*cli, "predict", str(model), str(audio), "--out", str(tmp / "p.csv"), "--quiet"])
            lib = min(library_predict(model, audio, tmp / "l.csv") for _ in range(2))  # best of two: a busy
            bare = min(bare_loop(model, audio, args.workers) for _ in range(2))  # machine adds noise
            tgt = tmp / "tgt"
            shutil.rmtree(tgt, ignore_errors=True)
            tgt.mkdir()
            os.link(audio, tgt / audio.name)
            shutil.rmtree(tmp / "prep", ignore_errors=True)
            q_s, q_mb = run_measured(
                [*cli, "prepare", "--source", str(src), "--target", str(tgt), "--out", str(tmp / "prep"), "--quiet", *w]
            )
            print(
                f"{f'one {hours * 60:g}-min file':22} {seconds / p_s:15.0f} {p_mb:8.0f} {seconds / lib:11.0f} "
                f"{seconds / bare:13.0f} {bare / lib:11.2f}x {seconds / q_s:11.0f} {q_mb:8.0f}",
                flush=True,
            )
            audio.unlink()
            shutil.rmtree(tmp / "prep", ignore_errors=True)
        short = tmp / "short"
        short.mkdir()
        for k in range(args.short_files):
            write_recording(short / f"s{k:05d}.wav", 4.0, seed=k)
        p_s, p_mb = run_measured([*cli, "predict", str(model), str(short), "--out", str(tmp / "s.csv"), "--quiet", *w])
        print(f"{f'{args.short_files} files of 4 s':22} {args.short_files * 4 / p_s:15.0f} {p_mb:8.0f}", flush=True)
        folder = tmp / "folder"
        folder.mkdir()
        for k in range(args.resume_files):
            write_recording(folder / f"r{k:03d}.wav", 240.0, seed=k)
        r = interrupted_run(cli, model, folder, tmp / "cut.csv", args.resume_files)
        print(
            f"folder of {args.resume_files} x 4 min: full run {r['full_s']:.1f} s; killed (SIGKILL) with "
            f"{r['files_done_when_killed']} files in the journal, rerun {r['resume_s']:.1f} s = "
            f"{r['resume_s'] / r['full_s']:.2f} of a full run; identical table: {r['same_table']}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
