"""A third shift for checking that defaults generalise: synthetic speech (espeak-ng) -> real FSDD speakers.

    python recipes/fsdd_speakers/synth_to_real.py --fsdd ../shared/data/fsdd/recordings --work data/fsdd_synth \
        [--seeds 0 1] [--per-digit 60]

Source (labelled): the ten digit words spoken by espeak-ng with random voices, variants, speeds and
pitches. Target (unlabelled): all six FSDD speakers, index 5-49, one domain per speaker. Test (report
only): FSDD index 0-4 (300 clips). Needs espeak-ng: the `espeak-ng` program (Debian/Ubuntu: apt install
espeak-ng) or, where it cannot be installed, its library from PyPI (`pip install espeakng-loader`).
"""

from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from run_recipe import score_grid, shift_args  # noqa: E402 (same folder)

from audio_dann.api import prepare
from audio_dann.config import load_config
from audio_dann.data.manifest import build_manifest, write_manifest

HERE = Path(__file__).resolve().parent
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-us-nyc"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]


def synthesise(out: Path, per_digit: int, seed: int = 0) -> None:
    """``per_digit`` clips of each digit word under ``out/<digit>/``, each with its own voice, variant, speed
    and pitch (seeded); clips already there are kept."""
    rng = np.random.default_rng(seed)
    for digit, word in enumerate(WORDS):
        for k in range(per_digit):
            path = out / str(digit) / f"{word}_{k:03d}.wav"
            voice = f"{rng.choice(VOICES)}+{rng.choice(VARIANTS)}"
            speed, pitch = int(rng.integers(110, 200)), int(rng.integers(25, 75))
            if path.exists():  # made before (the draws above keep every clip's settings fixed)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if shutil.which("espeak-ng") is not None:
                subprocess.run(
                    ["espeak-ng", "-w", str(path), "-v", voice, "-s", str(speed), "-p", str(pitch), word],
                    check=True,
                    capture_output=True,
                )
            else:
                samples, rate = _library_speak(word, voice, speed, pitch)
                sf.write(path.with_suffix(".part.wav"), samples, rate, subtype="PCM_16")
                path.with_suffix(".part.wav").replace(path)


# espeak-ng's C interface (speak_lib.h): synchronous output, the parameters' numbers
_SYNCHRONOUS, _RATE, _PITCH = 2, 1, 3
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@functools.cache
def _library():
    """espeak-ng's library from the ``espeakng-loader`` wheel, initialised once: (library, sample rate,
    the list its callback fills, the callback, kept alive here)."""
    try:
        import espeakng_loader
    except ImportError:
        sys.exit("error: espeak-ng not found (apt install espeak-ng, or pip install espeakng-loader)")
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint]
    lib.espeak_Synth.argtypes += [ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        sys.exit("error: espeak-ng's library did not start (espeakng-loader)")
    chunks: list[np.ndarray] = []

    def collect(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _CALLBACK(collect)
    lib.espeak_SetSynthCallback(callback)
    return lib, rate, chunks, callback


def _library_speak(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """``word`` spoken by espeak-ng's library as the program would with ``-v voice -s speed -p pitch``:
    int16 samples and their rate."""
    lib, rate, chunks, _ = _library()
    chunks.clear()
    text = word.encode()
    if (
        lib.espeak_SetVoiceByName(voice.encode()) != 0
        or lib.espeak_SetParameter(_RATE, speed, 0) != 0
        or lib.espeak_SetParameter(_PITCH, pitch, 0) != 0
        or lib.espeak_Synth(text, len(text) + 1, 0, 0, 0, 0, None, None) != 0
        or not chunks
    ):
        sys.exit(f"error: espeak-ng's library could not speak {word!r} with voice {voice!r}")
    return np.concatenate(chunks), rate


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
