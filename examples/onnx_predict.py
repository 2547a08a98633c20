"""Classify a folder of audio files with an exported audio-dann model, without torch or audio-dann.

    pip install numpy soundfile onnxruntime        # soxr too, for files not at the model's rate
    python examples/onnx_predict.py model.onnx recordings/ --out predictions.csv

Everything the model needs is in the ONNX file: its metadata gives the classes, the sample rate
and how ``audio-dann predict`` cuts a file into windows; the graph holds the log-mel frontend and
the normalisation. Each file is read, mixed to mono, resampled when needed, cut into windows
(short files tiled or zero-padded to one window; long ones every hop, the last window ending at the
file's end), and its prediction is the mean of its windows' probabilities: the same labels as
``audio-dann predict`` (checked by the test suite and on the FSDD recordings).

What it does not do: ``audio-dann predict`` refuses files whose samples are not finite, silent
files, and headers that claim a sample rate or more audio than the file holds (an error row with
the reason); this example, kept to the few lines a device needs, classifies whatever soundfile
decodes. Check such files upstream, or run ``audio-dann predict`` where it matters.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf

EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".opus")


def load(path: Path, sample_rate: int) -> np.ndarray:
    """float32 mono at ``sample_rate``."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != sample_rate:
        try:
            import soxr  # what audio-dann uses: same samples

            x = soxr.resample(x, sr, sample_rate, quality="HQ")
        except ImportError:  # band-limited FFT resampling: close, not identical
            n = int(round(len(x) * sample_rate / sr))
            spec = np.fft.rfft(x)
            keep = min(len(spec), n // 2 + 1)
            x = np.fft.irfft(spec[:keep], n) * (n / len(x))
    return np.asarray(x, dtype=np.float32)


def windows(x: np.ndarray, window: int, hop: int, pad_mode: str) -> np.ndarray:
    """``(n_windows, window)`` as audio-dann cuts them."""
    if len(x) == 0:
        raise ValueError("no samples")
    if len(x) <= window:
        if pad_mode == "tile":
            return np.tile(x, -(-window // len(x)))[None, :window]
        out = np.zeros((1, window), dtype=np.float32)
        out[0, : len(x)] = x
        return out
    starts = list(range(0, len(x) - window + 1, hop))
    if starts[-1] + window < len(x):
        starts.append(len(x) - window)
    return np.stack([x[s : s + window] for s in starts])


def main() -> None:
    ap = argparse.ArgumentParser(description="Classify audio files with an exported audio-dann ONNX model.")
    ap.add_argument("model", type=Path)
    ap.add_argument("inputs", type=Path, help="a folder (searched recursively) or one audio file")
    ap.add_argument("--out", type=Path, required=True, help="CSV: path, label, confidence, p_<class>..., status")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    classes = json.loads(meta["classes"])
    sr = int(meta["sample_rate"])
    window = int(round(float(meta["window_seconds"]) * sr))
    hop = int(round(float(meta["hop_seconds"]) * sr))
    name = session.get_inputs()[0].name
    files = (
        [args.inputs]
        if args.inputs.is_file()
        else sorted(p for p in args.inputs.rglob("*") if p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))
    )
    with open(args.out, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["path", "label", "confidence", *[f"p_{c}" for c in classes], "status"])
        for path in files:
            try:
                w = windows(load(path, sr), window, hop, meta.get("pad_mode", "tile"))
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
                out.writerow([str(path), "", "", *[""] * len(classes), f"error: {type(exc).__name__}: {exc}"])
                continue
            probs = np.concatenate(
                [session.run(None, {name: w[s : s + args.batch_size]})[0] for s in range(0, len(w), args.batch_size)]
            ).mean(0)
            k = int(probs.argmax())
            out.writerow([str(path), classes[k], f"{probs[k]:.6f}", *[f"{p:.6f}" for p in probs], "ok"])
    print(f"{len(files)} files -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
