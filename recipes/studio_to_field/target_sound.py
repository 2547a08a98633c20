"""The demo's task with and without the target's sound: ``train``'s default (``auto``) on the prepared folder
that ``audio-dann demo`` writes, once per setting and seed, field test accuracy as trained and as shipped
(report only, from ``summary.json``).

    audio-dann demo --device cpu --out demo_out          # writes demo_out/prepared
    python recipes/studio_to_field/target_sound.py --prepared demo_out/prepared --out demo_out/target_sound \\
        --seeds 0 1 2 --settings none both

Settings: ``none`` (neither), ``both`` (background and channel on half the source clips each), ``channel``,
``background`` (the one alone), ``room`` (a random room's reverberation on half the clips), ``both+room``
(all three), ``freq-mixstyle`` (neither, Freq-MixStyle instead: DCASE's device
augmentation, ``model.mixstyle_p=0.4``, the recipe grids' setting). One line of JSON per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from audio_dann.api import train
from audio_dann.config import apply_overrides
from audio_dann.demo import demo_config

SETTINGS = {
    "none": ["train.target_background=0", "train.target_channel=0"],
    "both": ["train.target_background=0.5", "train.target_channel=0.5"],
    "channel": ["train.target_background=0", "train.target_channel=0.5"],
    "background": ["train.target_background=0.5", "train.target_channel=0"],
    "freq-mixstyle": ["train.target_background=0", "train.target_channel=0", "model.mixstyle_p=0.4"],
    "room": ["train.target_background=0", "train.target_channel=0", "train.target_reverb=0.5"],
    "both+room": ["train.target_background=0.5", "train.target_channel=0.5", "train.target_reverb=0.5"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", type=Path, default=Path("demo_out/prepared"))
    ap.add_argument("--out", type=Path, default=Path("demo_out/target_sound"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--settings", nargs="+", default=["none", "both"], choices=list(SETTINGS))
    args = ap.parse_args()
    _, config = demo_config(False)
    for seed in args.seeds:
        for name in args.settings:
            run = args.out / f"{name}_s{seed}"
            s = train(
                args.prepared,
                run,
                config=apply_overrides(config, SETTINGS[name]),
                seed=seed,
                device="cpu",
                report=False,
            )
            shown = {
                "setting": name,
                "seed": seed,
                "as_trained": s["report_only"]["target_test_acc_selected"],
                "shipped": s["report_only"].get("target_test_acc_shipped"),
                "stage_kept": s["self_training"]["kept"],
                "target_sound": s.get("target_sound"),
            }
            print(json.dumps(shown), flush=True)


if __name__ == "__main__":
    main()
