"""Grade the label-free figures on every heart-sound model the recipe trained: the estimated abnormal share
(EM, BBSE) and the estimated window accuracy (ATC-NE, the prior bound on the source's shares, the bound on
the estimated shares, their combinations) against the truth of the target pool's windows.

    python recipes/heart_sounds/grade_estimates.py --data ../shared/data/physionet2016 --work data/heart \\
        [--json data/heart/estimates.json]

Each model's pool probabilities are computed once (``RUN_pool.npz`` beside the run, as ``run_recipe.py``
saves them); the pool's labels grade the figures and are never an input to them.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from run_recipe import manifests, pool_figures

from audio_dann.adaptation.estimators import combined_estimate, estimate, prior_bound
from audio_dann.adaptation.label_shift import class_shares
from audio_dann.nn.classifier import load_checkpoint


def _models(work: Path) -> list[tuple[str, int, Path]]:
    """(task, seed, run folder) for every finished run (its summary.json written) under ``work``, oracles left out."""
    out = []
    for task_dir in sorted(p for p in work.glob("*_to_*") if p.is_dir()):
        task = task_dir.name.replace("_to_", ":")
        for run in sorted(task_dir.glob("*_s[0-9]")):
            if (run / "summary.json").is_file() and not run.name.startswith(("oracle", "prepared")):
                out.append((task, int(re.search(r"_s(\d+)$", run.name).group(1)), run))
    return out


def grade(model: Path, npz: Path) -> dict:
    """Every figure for one model from its saved pool probabilities, and the truth."""
    saved = np.load(npz)
    probs, labels = saved["probs"], saved["labels"]
    cal = load_checkpoint(model)[0].calibration
    c = probs.shape[1]
    true_shares = np.bincount(labels, minlength=c) / len(labels)
    shares = {k: class_shares(probs, cal).get(k) for k in ("em", "bbse")}  # lists, or None
    figures = {k: v for k, v in estimate(probs, cal).items() if k in ("atc-ne", "prior-bound")}
    atc = figures["atc-ne"]
    figures["combined (today)"] = combined_estimate(figures)["value"]  # the toolkit's, without a reference
    for name, s in shares.items():
        if s is not None:  # the prior bound with these shares in place of the source's
            figures[f"bound on {name} shares"] = prior_bound(probs, {"class_prior": s})
            figures[f"combined, bound on {name} shares"] = min(atc, figures[f"bound on {name} shares"])
    return {
        "predicted_shares": (np.bincount(probs.argmax(1), minlength=c) / len(probs)).tolist(),
        "truth": float((probs.argmax(1) == labels).mean()),
        "figures": figures,
        "true_shares": true_shares.tolist(),
        "shares": shares,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/physionet2016"))
    ap.add_argument("--work", type=Path, default=Path("data/heart"))
    ap.add_argument("--json", type=Path, default=Path("data/heart/estimates.json"))
    args = ap.parse_args()
    rows = []
    for task, seed, run in _models(args.work):
        npz = run.with_name(run.name + "_pool.npz")
        if not npz.is_file():
            # the same seeded draw as the run's, written aside (the runs' own manifests hold the last seed's)
            pool = manifests(args.data, task, args.work / "grading" / f"s{seed}", seed)["pool"]
            pool_figures(run / "model.pt", pool, npz)
        rows.append({"task": task, "seed": seed, "model": run.name, **grade(run / "model.pt", npz)})
        r = rows[-1]
        print(
            f"{task} {run.name}: truth {r['truth']:.3f} "
            + " ".join(f"{k} {v:+.3f}" for k, v in r["figures"].items() if v is not None and "combined" in k)
            + f" | abnormal share true {r['true_shares'][0]:.2f} em {r['shares']['em'][0]:.2f} bbse "
            + ("-" if r["shares"]["bbse"] is None else f"{r['shares']['bbse'][0]:.2f}"),
            flush=True,
        )
    for r in rows:  # the bound on the shares estimated by the same task and seed's source-only model
        pre = next((q for q in rows if q["task"] == r["task"] and q["model"] == f"source-only_s{r['seed']}"), None)
        for k in ("em", "bbse"):
            if pre is not None and pre["shares"][k] is not None:
                bound = float(np.minimum(r["predicted_shares"], pre["shares"][k]).sum())  # prior_bound's rule
                r["figures"][f"combined, bound on source-only's {k} shares"] = min(r["figures"]["atc-ne"], bound)
    names = sorted({k for r in rows for k in r["figures"]})
    summary = {}
    for k in names:
        err = np.array([r["figures"][k] - r["truth"] for r in rows if r["figures"].get(k) is not None])
        summary[k] = {"mean_abs": float(np.abs(err).mean()), "worst": float(err[np.abs(err).argmax()]), "n": len(err)}
        print(f"{k:50s} mean |error| {summary[k]['mean_abs']:.3f} worst {summary[k]['worst']:+.3f} ({len(err)} models)")
    for s in ("em", "bbse"):
        err = np.array([r["shares"][s][0] - r["true_shares"][0] for r in rows if r["shares"][s] is not None])
        summary[f"abnormal share, {s}"] = {
            "mean_abs": float(np.abs(err).mean()),
            "within_10": int((np.abs(err) <= 0.1).sum()),
            "n": len(err),
        }
        print(
            f"abnormal share {s}: mean |error| {np.abs(err).mean():.3f}, within 10 points {(np.abs(err) <= 0.1).sum()}/{len(err)}"
        )
    args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
