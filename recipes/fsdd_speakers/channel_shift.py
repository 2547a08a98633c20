"""A second real-speech shift for checking that defaults generalise: clean FSDD -> a degraded channel.

    python recipes/fsdd_speakers/channel_shift.py --fsdd ../shared/data/fsdd/recordings --work data/fsdd_channel \
        [--seeds 0 1] [--set ...]

Source: all six speakers, index 5-27, clean (index 0-4 clean = source validation). Target: index
28-49 passed through a telephone-like channel (300-3400 Hz band-pass, 20 ms echo, 8-bit mu-law,
pink noise at 5-15 dB SNR, clipping), unlabelled. Test: index 0-4 through the same channel (report
only). Different utterances on each side, so the target never holds degraded copies of source clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from run_recipe import score_grid, shift_args  # noqa: E402 (same folder)

from audio_dann.config import load_config
from audio_dann.data.audio import read_audio
from audio_dann.data.manifest import build_manifest, write_manifest
from audio_dann.data.prepare import prepare
from audio_dann.data.synth import coloured_noise, filter_spectrum

HERE = Path(__file__).resolve().parent


def degrade(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    y = filter_spectrum(x, sr, lambda f: 1 / np.sqrt(1 + (300 / np.maximum(f, 1)) ** 8) / np.sqrt(1 + (f / 3400) ** 8))
    d = int(0.02 * sr)
    y[d:] += 0.4 * y[:-d]
    y = y / (np.abs(y).max() + 1e-9) * 0.9
    mu = 255.0
    comp = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
    y = np.round((comp + 1) / 2 * mu) / mu * 2 - 1
    y = np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu
    pink = coloured_noise(rng.standard_normal(len(x)), sr, 0.5, 20.0)
    snr = rng.uniform(5, 15)
    y = y + pink * y.std() / 10 ** (snr / 20)
    return np.clip(y * rng.uniform(1.0, 2.0), -0.8, 0.8).astype(np.float32)


def channel_manifests(fsdd: Path, work: Path) -> dict[str, Path]:
    """Degrade the target and test utterances (once) and write the source, target and test manifests."""
    pattern = "{label}_{speaker}_{index}.wav"
    degraded = work / "degraded"
    rng = np.random.default_rng(0)
    rows, _ = build_manifest(fsdd, pattern, ["index<5"])
    rows += build_manifest(fsdd, pattern, ["index>=28"])[0]
    for r in rows:
        out = degraded / Path(r["path"]).name
        if not out.exists():
            x, sr = read_audio(r["path"])
            out.parent.mkdir(parents=True, exist_ok=True)
            sf.write(out, degrade(x, sr, rng), sr, subtype="PCM_16")
    m = {"source": work / "source.csv", "target": work / "target.csv", "test": work / "test.csv"}
    write_manifest(build_manifest(fsdd, pattern, ["index<=27"], val_where="index<5")[0], m["source"])
    write_manifest(build_manifest(degraded, pattern, ["index>=28"])[0], m["target"])
    write_manifest(build_manifest(degraded, pattern, ["index<5"])[0], m["test"])
    return m


def main() -> None:
    ap = shift_args("data/fsdd_channel")
    args = ap.parse_args()
    config = load_config(HERE / "config.yaml", args.overrides)
    m = channel_manifests(args.fsdd, args.work)
    prep = args.work / "prepared"
    prepare(m["source"], [m["target"]], prep, target_eval=m["test"], config=config)
    score_grid(
        prep,
        args.work / "runs" / args.tag,
        config,
        args.methods,
        args.seeds,
        m["test"],
        m["target"],
        args.work / f"results_{args.tag}.json",
    )


if __name__ == "__main__":
    main()
