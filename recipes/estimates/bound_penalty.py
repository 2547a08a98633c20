"""The lower bound at other critic penalties, on the models a user gets (issue 30's must-show).

    python recipes/estimates/bound_penalty.py --json data/estimates.json [--penalties 0.1 0.12 0.15]

Reads the rows ``grade.py`` wrote and each run's cached outputs (``RUN/outputs.npz``: the source read with its
own batch-norm statistics, as the toolkit's critic reads it, on all source validation windows), fits the
critic at each penalty, and prints, for the shipped models (``grade.shipped``) and for all models, how often
and how far that lower bound lies above the truth, how far under it on average, and the guard replayed with
it. Nothing here reads a target label before grading.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grade  # noqa: E402 (same folder)

from audio_dann.adaptation.critic import discrepancy_estimate  # noqa: E402
from audio_dann.nn.classifier import load_checkpoint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=Path("data/estimates.json"))
    ap.add_argument("--penalties", nargs="+", type=float, default=[0.1, 0.12, 0.15])
    ap.add_argument("--heart", type=Path, default=Path("data/heart"))
    ap.add_argument("--physionet", type=Path, default=Path("../shared/data/physionet2016"))
    ap.add_argument("--fsdd", type=Path, default=Path("data/fsdd_grid"))
    ap.add_argument("--demo", type=Path, default=Path("data/demo_grid"))
    args = ap.parse_args()
    rows = json.loads(args.json.read_text())
    entries = grade.grid_models(args, {r["grid"] for r in rows})
    run_of = {(e["grid"], e["task"], e["model"], e["seed"]): e["run"] for e in entries}
    for r in rows:
        run = run_of[(r["grid"], r["task"], r["model"], r["seed"])]
        out = np.load(run / "outputs.npz")
        head = load_checkpoint(run / "model.pt")[0].dann.label_head.fc
        value = r.get("estimate, floored by agreement", r["estimate"])  # a bound is never above the estimate
        for p in args.penalties:
            c = discrepancy_estimate(
                head,
                out["source_z_own"],
                out["source_labels"],
                out["target_z"],
                penalty=p,
                files_source=out["source_files"],
                files_target=out["target_files"],
            )
            r[f"bound {p}"] = min(c["estimate"], value)
    print("| penalty | models | n | above the truth | above by > 5 points | worst above | mean under |")
    print("|---|---|---|---|---|---|---|")
    for p in args.penalties:
        with_p = [{**r, "lower bound": r[f"bound {p}"]} for r in rows]
        ship = grade.shipped(with_p)
        parts = [("shipped, FSDD + heart", [r for r in ship if r["grid"] in ("fsdd", "heart")])]
        parts += [("shipped, demo", [r for r in ship if r["grid"] == "demo"]), ("all", with_p)]
        for name, part in parts:
            if not part:
                continue
            low = np.array([r["lower bound"] - r["truth"] for r in part])
            print(
                f"| {p} | {name} | {len(part)} | {(low > 0).sum()} | {(low > 0.05).sum()} | {max(low.max(), 0):+.3f} | "
                f"{np.clip(-low, 0, None).mean():.3f} |"
            )
        print(
            f"|  | guard replay | {grade.guard_replay(with_p, 'lower bound', 'estimate, floored by agreement').splitlines()[0]} |||||"
        )


if __name__ == "__main__":
    main()
