"""The models a user can ship on the FSDD shifts, kept as bundles for grading the label-free estimates
(``recipes/estimates/grade.py``).

    python recipes/fsdd_speakers/model_grid.py --fsdd ../shared/data/fsdd/recordings --work data/fsdd_grid \\
        [--tasks A B C] [--seeds 0 1 2] [--models source-only adabn default dann]

Tasks A, B (speakers, as ``run_recipe.py``), C (clean -> degraded channel, as ``channel_shift.py``) and S
(espeak-ng speech -> the six real speakers, as ``hard_shifts.py``; needs the ``recipes`` extra), each with a
flat target folder (paths only). Per task and seed, under ``WORK/runs/{task}_{model}_s{seed}``:

- ``source-only``: ``train --method source-only``;
- ``adabn``: that model + ``adapt --method adabn`` (no guard);
- ``default``: that model + ``adapt``'s default stage (no guard): the computation of ``train``'s default
  (source-only, then the same stage), kept whatever the guard would say, so that the guard can be replayed;
- ``dann``: ``train --method dann`` (its shipped form, guard included).

Nothing reads a target label; the grader takes them from the FSDD file names.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from adapt_table import prepare_layouts  # noqa: E402 (same folder)
from channel_shift import channel_manifests  # noqa: E402
from hard_shifts import synth_manifests  # noqa: E402
from run_recipe import manifests  # noqa: E402

from audio_dann.adaptation.methods import DEFAULT_METHOD
from audio_dann.api import adapt, train
from audio_dann.config import load_config

HERE = Path(__file__).resolve().parent
MODELS = ("source-only", "adabn", "default", "dann")


def task_data(fsdd: Path, work: Path, task: str, config) -> tuple[Path, Path]:
    """The task's flat prepared folder and its flat target manifest (made once)."""
    if task == "C":
        m = channel_manifests(fsdd, work / "channel")
    elif task == "S":
        m = synth_manifests(fsdd, work)
    else:
        m = manifests(fsdd, work, task, None)
    prep = work / f"{task}_prep_flat"
    if not (prep / "prepared.json").is_file():
        prepare_layouts(m, work, task, config, {"flat"})
    return prep, work / f"{task}_target_flat.csv"


def run(work: Path, task: str, seed: int, models: list[str], prep: Path, target: Path, config) -> None:
    runs = work / "runs"
    base = runs / f"{task}_source-only_s{seed}"
    for name in models:
        out = runs / f"{task}_{name}_s{seed}"
        if (out / "summary.json").is_file():
            continue
        t0 = time.perf_counter()
        if name in ("source-only", "dann"):
            train(prep, out, config=config, method=name, seed=seed, device="cpu", report=False)
        else:
            if not (base / "model.pt").is_file():
                train(prep, base, config=config, method="source-only", seed=seed, device="cpu", report=False)
            method = "adabn" if name == "adabn" else DEFAULT_METHOD
            adapt(base / "model.pt", [target], out, method=method, guard=False, device="cpu")
        print(json.dumps({"task": task, "model": name, "seed": seed, "seconds": round(time.perf_counter() - t0)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    ap.add_argument("--work", type=Path, default=Path("data/fsdd_grid"))
    ap.add_argument("--tasks", nargs="+", default=["A", "B", "C"], choices=["A", "B", "C", "S"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = ap.parse_args()
    config = load_config(HERE / "config.yaml")
    args.work.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        prep, target = task_data(args.fsdd, args.work, task, config)
        for seed in args.seeds:
            run(args.work, task, seed, args.models, prep, target, config)


if __name__ == "__main__":
    main()
