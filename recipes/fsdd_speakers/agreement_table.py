"""Issue 17: the agreement estimate of target accuracy for the models ``hard_shifts.py`` adapted.

    python recipes/fsdd_speakers/agreement_table.py [--work data/fsdd_hard] [--tasks A B C S] \
        [--adapts none adabn shot-file latent-bn]

``hard_shifts.py`` saves each model's pool probabilities (``RUN/pool_probs_{adapt}.npy``). As
``audio-dann adapt --reference`` does, the estimate for seed s is the share of pool windows on which
its model and the model of the next seed (the reference), adapted the same way, agree; no target
label goes into it. Labels from the FSDD file names grade it: error = estimate - pool window
accuracy, per task, base and adaptation, with the mean absolute error and the worst case.

Beside it, the prior bound (``audio_dann.nn.calibration.prior_bound``: the most a model can get right
if the target's classes are as frequent as the source's; the source frequencies come from the source
validation labels, as ``train`` now stores them in the calibration) and the error of the agreement
capped by it (``min(agreement, bound)``), which the toolkit reports and warns on but does not apply.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapt_table import _views  # noqa: E402
from audio_dann.data.store import open_prepared  # noqa: E402
from audio_dann.nn.calibration import prior_bound  # noqa: E402
from audio_dann.nn.classifier import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("data/fsdd_hard"))
    ap.add_argument("--tasks", nargs="+", default=["A", "B", "C", "S"])
    ap.add_argument("--bases", nargs="+", default=["source-only", "dann-flat"])
    ap.add_argument("--adapts", nargs="+", default=["none", "adabn", "shot-file", "latent-bn"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    print("| task | model | adaptation | pool accuracy (seeds) | agreement estimate | abs. error: mean / worst "
          "| prior bound | capped: mean / worst |")
    print("|---|---|---|---|---|---|---|---|")
    errors, capped_errors = [], []
    for task in args.tasks:
        if not (args.work / f"{task}_prep_flat").is_dir():
            continue
        y = _views(args.work / f"{task}_prep_flat", ("pool",))["pool"]["y"]
        prep = open_prepared(args.work / f"{task}_prep_flat")
        val_labels = [prep.index[i]["label"] for i in prep.rows("val", source=True)]
        for base in args.bases:
            for adapt in args.adapts:
                files = [args.work / "runs" / f"{task}_base_{base}_s{s}" / f"pool_probs_{adapt}.npy" for s in args.seeds]
                if not all(f.is_file() for f in files):
                    continue
                classes = np.array([int(c) for c in load_model(files[0].parent / "model.pt").classes])
                probs = [np.load(f).astype(np.float32) for f in files]
                preds = [classes[p.argmax(1)] for p in probs]  # digits, as y
                index = {str(c): i for i, c in enumerate(classes)}
                val = np.array([index[label] for label in val_labels])
                prior = {"class_prior": list(np.bincount(val, minlength=len(classes)) / len(val))}
                bound = [prior_bound(p, prior) for p in probs]
                acc = [float((p == y).mean()) for p in preds]
                est = [float((p == preds[(i + 1) % len(preds)]).mean()) for i, p in enumerate(preds)]
                err = np.abs(np.subtract(est, acc))
                cap = np.abs(np.minimum(est, bound) - np.asarray(acc))
                errors += list(err)
                capped_errors += list(cap)
                print(f"| {task} | {base} | {adapt} | {' / '.join(f'{a:.3f}' for a in acc)} | "
                      f"{' / '.join(f'{e:.3f}' for e in est)} | {err.mean():.3f} / {err.max():.3f} | "
                      f"{' / '.join(f'{b:.3f}' for b in bound)} | {cap.mean():.3f} / {cap.max():.3f} |")
    if errors:
        print(f"\nall {len(errors)} models: mean absolute error {np.mean(errors):.3f}, worst {np.max(errors):.3f}; "
              f"capped by the prior bound: {np.mean(capped_errors):.3f}, worst {np.max(capped_errors):.3f}")


if __name__ == "__main__":
    main()
