"""The models a user can ship on the demo's studio -> field shift, kept as bundles for grading the
label-free estimates (``recipes/estimates/grade.py --grids demo``).

    python recipes/studio_to_field/model_grid.py --work data/demo_grid [--seeds 0 1 2] [--settings none both+room]

The demo's data (seed 0) is written and prepared once under ``WORK`` (``WORK/data``, ``WORK/prepared``,
with the labelled field test clips). Per setting (``target_sound.py``'s) and seed, under
``WORK/runs/{setting}_{model}_s{seed}``:

- ``source-only``: ``train``'s default without its stage (``train.self_training=none``), with the setting;
- ``adabn``: that model + ``adapt --method adabn`` (no guard);
- ``default``: that model + ``adapt``'s default stage (no guard): the computation of ``train``'s default,
  kept whatever the guard would say, so that the guard can be replayed.

The grader reads the estimate on the labelled field test clips (the pool's labels are not kept by the
demo's data); nothing here reads a label.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from target_sound import SETTINGS  # noqa: E402 (same folder)

from audio_dann.adaptation.methods import DEFAULT_METHOD
from audio_dann.api import adapt, prepare, train
from audio_dann.config import apply_overrides
from audio_dann.data.synth import write_dataset
from audio_dann.demo import demo_config

MODELS = ("source-only", "adabn", "default")


def demo_data(work: Path, config) -> tuple[Path, Path]:
    """The prepared folder and the flat field folder (written once)."""
    spec, _ = demo_config(False)
    field, prep = work / "data" / "field", work / "prepared"
    if not (prep / "prepared.json").is_file():
        parts = write_dataset(work / "data", spec)
        prepare(parts["studio"], [parts["field"]], prep, target_eval=parts["field_test"], config=config)
    return prep, field


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("data/demo_grid"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--settings", nargs="+", default=["none", "both+room"], choices=list(SETTINGS))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = ap.parse_args()
    _, config = demo_config(False)
    args.work.mkdir(parents=True, exist_ok=True)
    prep, field = demo_data(args.work, config)
    runs = args.work / "runs"
    for setting in args.settings:
        for seed in args.seeds:
            base = runs / f"{setting}_source-only_s{seed}"
            for name in args.models:
                out = runs / f"{setting}_{name}_s{seed}"
                if (out / "summary.json").is_file():
                    continue
                t0 = time.perf_counter()
                if not (base / "model.pt").is_file():
                    cfg = apply_overrides(config, [*SETTINGS[setting], "train.self_training=none"])
                    train(prep, base, config=cfg, seed=seed, device="cpu", report=False)
                if name != "source-only":
                    method = "adabn" if name == "adabn" else DEFAULT_METHOD
                    adapt(base / "model.pt", [field], out, method=method, guard=False, device="cpu")
                print(
                    json.dumps(
                        {"setting": setting, "model": name, "seed": seed, "seconds": round(time.perf_counter() - t0)}
                    )
                )


if __name__ == "__main__":
    main()
