"""How much the self-training stage's outcome depends on its own seed (the order of its batches), for
networks trained with and without the target's sound: each network is adapted once per stage seed, and
each outcome is scored on the labelled target test clips (report only).

    audio-dann demo --device cpu --out demo_out          # writes demo_out/prepared
    python recipes/studio_to_field/stage_seeds.py --prepared demo_out/prepared --out demo_out/stage_seeds \\
        --train-seeds 0 1 2 --stage-seeds 0 1 2 --settings none both

Any prepared folder with labelled target test clips (``prepare --target-eval``) will do. For every
training seed and setting (``target_sound.py``'s: ``none``, ``both``, ``channel``, ``background``) the
script trains ``train``'s default without its stage (``train.self_training=none``, kept under OUT and
reused), then adapts the network with ``--method`` (the stage's, ``latent-bn``) once per stage seed,
without the guard. One line of JSON per adaptation: test accuracy after AdaBN alone and after the stage,
and the pool's predicted class counts (a class that swallows another shows there first); then a
table per setting.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from target_sound import SETTINGS  # noqa: E402 (same folder)

from audio_dann.adaptation.methods import METHODS, AdaptConfig, TargetClips, adapt_network
from audio_dann.api import train
from audio_dann.config import apply_overrides
from audio_dann.data.store import open_prepared
from audio_dann.demo import demo_config
from audio_dann.nn.classifier import load_model
from audio_dann.nn.outputs import probabilities
from audio_dann.training.clips import load_clips, take_rows


def _network(prepared: Path, run: Path, config, setting: str, seed: int):
    """The network of ``train``'s default without its stage, trained into ``run`` unless it is there."""
    if not (run / "summary.json").is_file():
        overrides = [*SETTINGS[setting], "train.self_training=none"]
        train(prepared, run, config=apply_overrides(config, overrides), seed=seed, device="cpu", report=False)
    return load_model(run / "model.pt").dann


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", type=Path, default=Path("demo_out/prepared"))
    ap.add_argument("--out", type=Path, default=Path("demo_out/stage_seeds"))
    ap.add_argument("--train-seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--stage-seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--settings", nargs="+", default=["none", "both"], choices=list(SETTINGS))
    ap.add_argument("--method", default="latent-bn", choices=[m for m in METHODS if m != "adabn"])
    args = ap.parse_args()
    _, config = demo_config(False)
    prep = open_prepared(args.prepared)
    clips = load_clips(prep, "source-only", 0, 0)
    if not len(clips.test_y) or (clips.test_y < 0).any():
        ap.error(f"{args.prepared}: no labelled target test clips to score with (prepare --target-eval)")
    pool_files = np.unique(np.asarray(clips.pool_files), return_inverse=True)[1]
    pool = TargetClips(take_rows(clips.pool_x, np.arange(clips.n_target)), pool_files, [], [])
    test_x = take_rows(clips.test_x, np.arange(len(clips.test_y)))
    accuracy = lambda net: float((probabilities(net, test_x).argmax(1) == clips.test_y).mean())  # noqa: E731
    rows = []
    for seed in args.train_seeds:
        for setting in args.settings:
            net = _network(args.prepared, args.out / f"{setting}_s{seed}", config, setting, seed)
            adabn_acc = accuracy(adapt_network(net, pool, "adabn")[0])
            for stage_seed in args.stage_seeds:
                adapted = adapt_network(net, pool, args.method, AdaptConfig(seed=stage_seed))[0]
                counts = np.bincount(probabilities(adapted, pool.x).argmax(1), minlength=len(prep.classes))
                row = {
                    "setting": setting,
                    "train_seed": seed,
                    "stage_seed": stage_seed,
                    "method": args.method,
                    "adabn": round(adabn_acc, 4),
                    "stage": round(accuracy(adapted), 4),
                    "pool_counts": dict(zip(prep.classes, counts.tolist())),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(table(rows))


def table(rows: list[dict]) -> str:
    """Per setting: AdaBN and stage accuracy (mean, range) and how many stage runs ended under AdaBN."""
    out = [
        "| setting | networks | stage runs | AdaBN alone | after the stage: mean | min - max | stage runs under AdaBN |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        stage = np.array([r["stage"] for r in mine])
        adabn = np.array([r["adabn"] for r in mine])
        out.append(
            f"| {setting} | {len({r['train_seed'] for r in mine})} | {len(mine)} | {adabn.mean():.3f} | "
            f"{stage.mean():.3f} | {stage.min():.3f} - {stage.max():.3f} | {int((stage < adabn).sum())} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
