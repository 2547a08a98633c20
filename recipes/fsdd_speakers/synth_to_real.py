"""A third shift for checking that defaults generalise: synthetic speech (espeak-ng) -> real FSDD speakers.

    python recipes/fsdd_speakers/synth_to_real.py --fsdd ../shared/data/fsdd/recordings --work data/fsdd_synth \
        [--seeds 0 1] [--per-digit 60]

Source (labelled): the ten digit words spoken by espeak-ng with random voices, variants, speeds and
pitches. Target (unlabelled): all six FSDD speakers, index 5-49, one domain per speaker. Test (report
only): FSDD index 0-4 (300 clips). Needs the `espeak-ng` program (Debian/Ubuntu: apt install espeak-ng).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from run_recipe import score_grid, shift_args  # noqa: E402 (same folder)

from audio_dann.api import prepare
from audio_dann.config import load_config
from audio_dann.data.manifest import build_manifest, write_manifest

HERE = Path(__file__).resolve().parent
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-us-nyc"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]


def synthesise(out: Path, per_digit: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for digit, word in enumerate(WORDS):
        for k in range(per_digit):
            path = out / str(digit) / f"{word}_{k:03d}.wav"
            voice = f"{rng.choice(VOICES)}+{rng.choice(VARIANTS)}"
            speed, pitch = int(rng.integers(110, 200)), int(rng.integers(25, 75))
            if path.exists():  # made before (the draws above keep every clip's settings fixed)
                continue
            if shutil.which("espeak-ng") is None:
                sys.exit("error: espeak-ng not found (apt install espeak-ng)")
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["espeak-ng", "-w", str(path), "-v", voice, "-s", str(speed), "-p", str(pitch), word],
                check=True,
                capture_output=True,
            )


def main() -> None:
    ap = shift_args("data/fsdd_synth")
    ap.add_argument("--per-digit", type=int, default=60)
    args = ap.parse_args()
    config = load_config(HERE / "config.yaml", args.overrides)
    synthesise(args.work / "espeak", args.per_digit)
    pattern = "{label}_{speaker}_{index}.wav"
    m = {"target": args.work / "target.csv", "test": args.work / "test.csv"}
    write_manifest(build_manifest(args.fsdd, pattern, ["index>=5"], domain="speaker")[0], m["target"])
    write_manifest(build_manifest(args.fsdd, pattern, ["index<5"], domain="speaker")[0], m["test"])
    prep = args.work / "prepared"
    prepare(args.work / "espeak", [m["target"]], prep, target_eval=m["test"], config=config)
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
