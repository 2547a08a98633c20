"""Issue 17: the agreement estimate of target accuracy for the models ``hard_shifts.py`` adapted.

    python recipes/fsdd_speakers/agreement_table.py [--work data/fsdd_hard] [--tasks A B C S] \
        [--adapts none adabn shot-file latent-bn]

``hard_shifts.py`` saves each model's pool probabilities (``RUN/pool_probs_{adapt}.npy``). As
``audio-dann adapt --reference`` does, the estimate for seed s is the share of pool windows on which
its model and the model of the next seed (the reference), adapted the same way, agree; no target
label goes into it. Labels from the FSDD file names grade it: error = estimate - pool window
accuracy, per task, base and adaptation, with the mean absolute error and the worst case.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapt_table import _views  # noqa: E402
from audio_dann.nn.classifier import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("data/fsdd_hard"))
    ap.add_argument("--tasks", nargs="+", default=["A", "B", "C", "S"])
    ap.add_argument("--bases", nargs="+", default=["source-only", "dann-flat"])
    ap.add_argument("--adapts", nargs="+", default=["none", "adabn", "shot-file", "latent-bn"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    print("| task | model | adaptation | pool accuracy (seeds) | agreement estimate | abs. error: mean / worst |")
    print("|---|---|---|---|---|---|")
    errors = []
    for task in args.tasks:
        if not (args.work / f"{task}_prep_flat").is_dir():
            continue
        y = _views(args.work / f"{task}_prep_flat", ("pool",))["pool"]["y"]
        for base in args.bases:
            for adapt in args.adapts:
                files = [args.work / "runs" / f"{task}_base_{base}_s{s}" / f"pool_probs_{adapt}.npy" for s in args.seeds]
                if not all(f.is_file() for f in files):
                    continue
                classes = np.array([int(c) for c in load_model(files[0].parent / "model.pt").classes])
                preds = [classes[np.load(f).astype(np.float32).argmax(1)] for f in files]  # digits, as y
                acc = [float((p == y).mean()) for p in preds]
                est = [float((p == preds[(i + 1) % len(preds)]).mean()) for i, p in enumerate(preds)]
                err = np.abs(np.subtract(est, acc))
                errors += list(err)
                print(f"| {task} | {base} | {adapt} | {' / '.join(f'{a:.3f}' for a in acc)} | "
                      f"{' / '.join(f'{e:.3f}' for e in est)} | {err.mean():.3f} / {err.max():.3f} |")
    if errors:
        print(f"\nall {len(errors)} models: mean absolute error {np.mean(errors):.3f}, worst {np.max(errors):.3f}")


if __name__ == "__main__":
    main()
