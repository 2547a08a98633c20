"""A seeded synthetic "studio" vs "field" sound dataset, for the demo and tests.

Five sound classes are rendered once per clip from random parameters; the
same kind of event is then "recorded" either in a clean studio (flat
microphone, dry, quiet) or in the field: a band-limited microphone with a
resonance, room reverberation, coloured background noise at a low SNR, a
random gain and soft clipping. All randomness comes from one seed.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["CLASSES", "SynthSpec", "render_event", "record", "write_dataset", "filter_spectrum", "coloured_noise"]

CLASSES = ("tone", "chirp", "pulses", "noise_burst", "warble")


@dataclass(frozen=True)
class SynthSpec:
    sample_rate: int = 16000
    seconds: float = 1.0
    studio_train_per_class: int = 60
    field_train_per_class: int = 60  # unlabelled target pool
    field_test_per_class: int = 30  # labelled, report only
    studio_test_per_class: int = 30  # labelled, shows the in-domain accuracy
    seed: int = 0


def _envelope(n: int, rng: np.random.Generator) -> np.ndarray:
    start = rng.integers(0, n // 4)
    length = rng.integers(n // 2, n - start)
    env = np.zeros(n)
    attack = max(int(0.01 * n), 1)
    seg = np.ones(length)
    seg[:attack] = np.linspace(0, 1, attack)
    seg[-attack:] = np.linspace(1, 0, attack)
    env[start : start + length] = seg
    return env


def render_event(label: str, sr: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """One clean event of class ``label``: ``(n,)`` float64 peaking near 1."""
    t = np.arange(n) / sr
    env = _envelope(n, rng)
    if label == "tone":
        f0 = rng.uniform(200, 600)
        x = sum(rng.uniform(0.3, 1) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 5))
    elif label == "chirp":
        f_start, f_end = rng.uniform(300, 800), rng.uniform(2000, 4000)
        phase = 2 * np.pi * (f_start * t + (f_end - f_start) * t**2 / (2 * t[-1]))
        x = np.sin(phase)
    elif label == "pulses":
        rate = rng.uniform(6, 14)
        x = np.zeros(n)
        for c in np.arange(rng.uniform(0, 1 / rate), t[-1], 1 / rate):
            i = int(c * sr)
            length = min(int(0.004 * sr), n - i)
            x[i : i + length] += rng.standard_normal(length) * np.hanning(length)
        x = x * 3
    elif label == "noise_burst":
        noise = rng.standard_normal(n)
        spec = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(n, 1 / sr)
        centre, width = rng.uniform(1000, 3000), rng.uniform(300, 800)
        spec *= np.exp(-0.5 * ((freqs - centre) / width) ** 2)
        x = np.fft.irfft(spec, n)
    elif label == "warble":
        fc, fm, depth = rng.uniform(500, 1500), rng.uniform(4, 9), rng.uniform(100, 300)
        x = np.sin(2 * np.pi * fc * t + depth / fm * np.sin(2 * np.pi * fm * t))
    else:
        raise ValueError(f"unknown class {label!r}")
    x = x * env
    return x / (np.abs(x).max() + 1e-9)


def filter_spectrum(x: np.ndarray, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``x`` filtered by a zero-phase magnitude response ``gain(frequencies in Hz)`` (one FFT)."""
    n = len(x)
    return np.fft.irfft(np.fft.rfft(x) * gain(np.fft.rfftfreq(n, 1 / sr)), n)


def coloured_noise(white: np.ndarray, sr: int, exponent: float, f_floor: float) -> np.ndarray:
    """White noise shaped to a ``1 / f ** exponent`` amplitude spectrum (flat below ``f_floor``), unit std.

    ``exponent`` 0.5 is pink noise, 1 brown. The caller draws ``white``, so its random stream stays its own.
    """
    x = filter_spectrum(white, sr, lambda f: 1.0 / np.maximum(f, f_floor) ** exponent)
    return x / (x.std() + 1e-12)


def record(x: np.ndarray, condition: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Pass a clean event through the ``studio`` or ``field`` recording chain: float32 in [-1, 1]."""
    n = len(x)
    if condition == "studio":
        y = x * rng.uniform(0.3, 0.6) + 0.002 * rng.standard_normal(n)
        return np.clip(y, -1, 1).astype(np.float32)
    if condition != "field":
        raise ValueError(f"unknown condition {condition!r}")
    # microphone: band-pass with a resonance
    lo, hi, peak = rng.uniform(300, 600), rng.uniform(3000, 4500), rng.uniform(1500, 2500)
    y = filter_spectrum(
        x,
        sr,
        lambda f: (
            1
            / np.sqrt(1 + (lo / np.maximum(f, 1)) ** 4)
            / np.sqrt(1 + (f / hi) ** 6)
            * (1 + 2.0 * np.exp(-0.5 * ((f - peak) / 200) ** 2))
        ),
    )
    # room: exponentially decaying noise impulse response
    rt60 = rng.uniform(0.3, 0.7)
    ir_len = int(rt60 * sr)
    ir = rng.standard_normal(ir_len) * np.exp(-6.9 * np.arange(ir_len) / ir_len)
    ir[0] = 1.0
    y = np.convolve(y, ir * 0.3)[:n]
    y = y / (np.abs(y).max() + 1e-9)
    # background noise at a low SNR, then gain and soft clipping
    snr_db = rng.uniform(0, 10)
    white = rng.standard_normal(n)
    y = y + coloured_noise(white, sr, rng.uniform(0.5, 1.0), 50.0) * y.std() / 10 ** (snr_db / 20)  # pink to brown
    y = np.tanh(y * rng.uniform(0.5, 2.0)) * rng.uniform(0.1, 0.9)
    return y.astype(np.float32)


def write_dataset(root: str | Path, spec: SynthSpec = SynthSpec()) -> dict[str, Path]:
    """Write the dataset below ``root``; returns its parts.

    ``studio/<class>/`` labelled source; ``field/`` unlabelled target (flat);
    ``field_test.csv`` and ``studio_test.csv`` labelled held-out manifests.
    """
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    n = int(spec.sample_rate * spec.seconds)
    parts = {
        "studio": root / "studio",
        "field": root / "field",
        "field_test": root / "field_test.csv",
        "studio_test": root / "studio_test.csv",
    }
    rows: dict[str, list[tuple[str, str]]] = {"field_test": [], "studio_test": []}
    plan = [
        ("studio", spec.studio_train_per_class),
        ("field", spec.field_train_per_class),
        ("field_test", spec.field_test_per_class),
        ("studio_test", spec.studio_test_per_class),
    ]
    for part, count in plan:
        condition = "studio" if part.startswith("studio") else "field"
        for label in CLASSES:
            for k in range(count):
                audio = record(render_event(label, spec.sample_rate, n, rng), condition, spec.sample_rate, rng)
                if part == "studio":
                    path = parts["studio"] / label / f"{label}_{k:04d}.wav"
                elif part == "field":  # unlabelled: a neutral name, no class folder
                    path = parts["field"] / f"rec_{CLASSES.index(label)}{k:04d}.wav"
                else:
                    path = root / part / f"{label}_{k:04d}.wav"
                    rows[part].append((str(path.relative_to(root)), label))
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, audio, spec.sample_rate, subtype="PCM_16")
    for part in ("field_test", "studio_test"):
        with open(parts[part], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            w.writerows(rows[part])
    return parts
