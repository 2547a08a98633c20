"""Training-time cost of the augmentations and of a wider backbone, measured side by side in one run.

    python benchmarks/augment_cost.py [--steps 100] [--repeats 2] [--n-mels 40] [--frames 101] \
        [--method dann|source-only]

The training loop (``fit``: 32 source (+ 32 target for DANN) clips per step, no evaluation) on random
log-mel tensors of the FSDD recipe's shape, once per variant, alternated ``--repeats`` times, the
fastest of each kept; prints seconds per 100 steps and the ratio to the variant with nothing on. The
target's sound (``train.target_background``, ``train.target_channel``) adds the building of its bank
(from the 512 target clips) to its time.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from audio_dann.adaptation.target_sound import build_target_sound
from audio_dann.config import ModelConfig, TrainConfig
from audio_dann.nn.dann import build_dann
from audio_dann.training.loop import TrainData, fit

VARIANTS = {
    "none": {},
    "warp": {"freq_warp": 0.1, "time_warp": 0.1},
    "mixstyle": {"mixstyle_p": 0.4},
    "warp+mixstyle": {"freq_warp": 0.1, "time_warp": 0.1, "mixstyle_p": 0.4},
    "wide (32-256 channels)": {"channels": (32, 64, 128, 256), "embedding_dim": 256},
    "target sound (background + channel, 0.5 each)": {"target_background": 0.5, "target_channel": 0.5},
    "target sound + room (background, channel, reverb, 0.5 each)": {
        "target_background": 0.5,
        "target_channel": 0.5,
        "target_reverb": 0.5,
    },
}
TRAIN_KEYS = ("target_background", "target_channel", "target_reverb")


def run(settings: dict, data: TrainData, steps: int, n_mels: int, method: str) -> float:
    torch.manual_seed(0)
    model_settings = {k: v for k, v in settings.items() if k not in TRAIN_KEYS}
    model = build_dann(ModelConfig(**model_settings), n_classes=10, n_domains=2, n_mels=n_mels)
    sound = {k: settings.get(k, 0.0) for k in TRAIN_KEYS} if any(k in settings for k in TRAIN_KEYS) else {}
    cfg = TrainConfig(method=method, steps=steps, eval_every=10**9, amp="off", **sound)
    t0 = time.perf_counter()
    bank = None
    if sound:
        files = [f"f{i // 4}" for i in range(len(data.target_x))]  # four clips a file
        bank = build_target_sound(data.target_x, files, data.source_x, 1e-3, seed=0)
    fit(model, replace(data, target_sound=bank), cfg, device="cpu")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--n-mels", type=int, default=40)
    ap.add_argument("--frames", type=int, default=101)
    ap.add_argument("--method", default="dann", choices=["dann", "source-only"])
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    data = TrainData(
        torch.randn(512, args.n_mels, args.frames, generator=g).half(),
        torch.randint(10, (512,), generator=g),
        torch.randn(512, args.n_mels, args.frames, generator=g).half(),
        torch.ones(512, dtype=torch.long),
    )
    best = {name: float("inf") for name in VARIANTS}
    for _ in range(args.repeats):
        for name, settings in VARIANTS.items():
            best[name] = min(best[name], run(settings, data, args.steps, args.n_mels, args.method))
    print(f"{args.method}, torch threads {torch.get_num_threads()}, {args.steps} steps, fastest of {args.repeats}")
    print("| variant | s per 100 steps | ratio to none |\n|---|---|---|")
    for name, s in best.items():
        print(f"| {name} | {100 * s / args.steps:.2f} | {s / best['none']:.2f} |")


if __name__ == "__main__":
    main()
