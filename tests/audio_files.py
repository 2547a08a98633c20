"""Writers of small synthetic recordings for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(freq: float, seconds: float, sr: int, channels: int = 1, seed: int = 0, amp: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    x = x.astype(np.float32)
    return np.stack([x, 0.5 * x], 1) if channels == 2 else x


def write(path: Path, data: np.ndarray, sr: int, subtype: str | None = None, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr, subtype=subtype, format=fmt)
    return path


def class_folders(
    root: Path, classes=("low", "high"), per_class: int = 6, sr: int = 16000, seconds: float = 0.5, shift: float = 1.0
) -> Path:
    """``root/<class>/*.wav`` tones; ``shift`` scales frequencies (a crude "other microphone")."""
    freqs = {"low": 300.0, "high": 2000.0, "mid": 900.0}
    for c in classes:
        for k in range(per_class):
            write(root / c / f"{c}_{k}.wav", tone(freqs[c] * shift * (1 + 0.03 * k), seconds, sr, seed=k), sr)
    return root


# a tiny network and run: the settings most tests train with (as --set values); the ensemble off
TINY_RUN = [
    "features.n_mels=16",
    "data.workers=0",
    "model.channels=[4,8]",
    "model.embedding_dim=16",
    "model.domain_hidden=16",
    "train.steps=12",
    "train.eval_every=6",
    "train.batch_size=8",
    "train.rv_steps=0",
    "train.latent_ensemble=[]",
]
