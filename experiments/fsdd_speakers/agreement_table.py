"""Issue 17: the label-free estimates of target accuracy for the models ``hard_shifts.py`` trained and adapted.

    python experiments/fsdd_speakers/agreement_table.py [--work data/fsdd_hard] [--tasks A B C S] \
        [--adapts none adabn shot-file latent-bn] [--json results/agreement_table_cpu_2026-11-29.json]

``hard_shifts.py`` saves each model's pool probabilities (``RUN/pool_probs_{adapt}.npy``); for the
variant models that only kept ``model.pt``, ``python experiments/fsdd_speakers/agreement_table.py --probs``
computes them first (no adaptation, and AdaBN). For seed s, as ``audio-dann adapt --reference`` does,
the second model is the next seed's, adapted the same way. No target label goes into any estimate;
labels from the FSDD file names grade them (error = estimate - pool window accuracy):

- ``agreement``: the share of pool windows on which the two models agree;
- ``combined`` (the toolkit's estimate, :func:`audio_dann.adaptation.estimators.combined_estimate`): the lowest of
  the agreement, ATC-NE (the bundle's calibration) and the prior bound;
- ``combined, two references``: the same with the mean agreement with both other seeds (``--reference``
  given twice);
- ``combined, no reference``: the lowest of ATC-NE and the prior bound (a single model);
- ``combined, --label-shift``: the lowest of the agreement and ATC-NE.

``--from-adapt-table results/adapt_table_2026-11-28.json`` grades the same estimates on the saved rows
of the H200 grid (``adapt_table.py``: 210 models of A, B and C, three seeds, each before and after
AdaBN, TENT, SHOT and shot-file), where each row kept ATC-NE and the next seed's agreement but not the
probabilities: there the combined estimate is the lower of the agreement and ATC-NE (no prior bound),
and two references are the next and the previous seed.

The prior bound needs the source class frequencies, taken from the source validation labels as
``train`` now stores them (``class_prior``; the older bundles here lack them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes" / "fsdd_speakers"))  # the recipe's helpers
from adapt_table import _views  # noqa: E402

from audio_dann.adaptation.estimators import combined_estimate, estimate  # noqa: E402
from audio_dann.adaptation.guard import GUARD_MARGIN  # noqa: E402
from audio_dann.data.store import open_prepared  # noqa: E402
from audio_dann.nn.classifier import load_model  # noqa: E402

ESTIMATES = {
    "agreement": lambda f: f["agreement"],
    "combined": lambda f: combined_estimate(f, f["agreement"])["value"],
    "combined, two references": lambda f: combined_estimate(f, f["agreement, two references"])["value"],
    "combined, no reference": lambda f: combined_estimate(f)["value"],
    "combined, --label-shift": lambda f: combined_estimate(f, f["agreement"], label_shift=True)["value"],
}


def _groups(work: Path, tasks: list[str]) -> list[tuple[str, list[Path]]]:
    """(task_variant_base, its three seed runs) for every group of the grid with three seeds."""
    names = sorted({p.name.rsplit("_s", 1)[0] for p in (work / "runs").glob("*_s[0-9]")})
    groups = [(g, [work / "runs" / f"{g}_s{s}" for s in range(3)]) for g in names if g[0] in tasks]
    return [(g, runs) for g, runs in groups if all((r / "model.pt").is_file() for r in runs)]


def _probs(work: Path, tasks: list[str]) -> None:
    """Pool probabilities (none, adabn) of every run that lacks them."""
    from audio_dann.adaptation.methods import AdaptConfig, TargetClips, adapt_network
    from audio_dann.nn.outputs import probabilities

    for group, runs in _groups(work, tasks):
        pool = _views(work / f"{group[0]}_prep_flat", ("pool",))["pool"]
        clips = TargetClips(pool["x"], pool["file"], pool["paths"], [])
        for seed, run in enumerate(runs):
            model = load_model(run / "model.pt")
            for adapt in ("none", "adabn"):
                if not (run / f"pool_probs_{adapt}.npy").is_file():
                    net = (
                        model.dann
                        if adapt == "none"
                        else adapt_network(model.dann, clips, "adabn", AdaptConfig(seed=seed), "cpu")[0]
                    )
                    np.save(run / f"pool_probs_{adapt}.npy", probabilities(net, pool["x"], "cpu").astype(np.float16))
        print(group, flush=True)


def rows(work: Path, tasks: list[str], adapts: list[str]) -> list[dict]:
    """One row per model: accuracy and every estimate."""
    out = []
    for group, runs in _groups(work, tasks):
        task = group[0]
        y = _views(work / f"{task}_prep_flat", ("pool",))["pool"]["y"]
        prep = open_prepared(work / f"{task}_prep_flat")
        models = [load_model(r / "model.pt") for r in runs]
        classes = np.array([int(c) for c in models[0].classes])
        index = {str(c): i for i, c in enumerate(classes)}
        val = np.array([index[prep.index[i]["label"]] for i in prep.rows("val", source=True)])
        prior = list(np.bincount(val, minlength=len(classes)) / len(val))
        for adapt in adapts:
            files = [r / f"pool_probs_{adapt}.npy" for r in runs]
            if not all(f.is_file() for f in files):
                continue
            probs = [np.load(f).astype(np.float32) for f in files]
            for s, p in enumerate(probs):
                figures = estimate(p, {**models[s].calibration, "class_prior": prior})
                agree = [float((p.argmax(1) == probs[(s + d) % 3].argmax(1)).mean()) for d in (1, 2)]
                figures.update({"agreement": agree[0], "agreement, two references": float(np.mean(agree))})
                out.append(
                    {
                        "group": group,
                        "task": task,
                        "base": group.split("_")[-1],
                        "adapt": adapt,
                        "seed": s,
                        "accuracy": float((classes[p.argmax(1)] == y).mean()),
                        **{k: float(f(figures)) for k, f in ESTIMATES.items()},
                        "figures": figures,
                    }
                )
    return out


def summary(rs: list[dict]) -> dict:
    """Mean absolute error and worst case of every estimate, over ``rs`` and over its task-A rows."""
    out = {}
    for name in ESTIMATES:
        err = np.array([abs(r[name] - r["accuracy"]) for r in rs])
        a = np.array([abs(r[name] - r["accuracy"]) for r in rs if r["task"] == "A"])
        out[name] = {
            "mean": float(err.mean()),
            "worst": float(err.max()),
            "models": len(rs),
            "A_mean": float(a.mean()) if len(a) else None,
            "A_worst": float(a.max()) if len(a) else None,
        }
    return out


def guard_replay(rs: list[dict]) -> None:
    """The keep-or-revert guard replayed with each estimate: every model against each of its adaptations
    (keep the original when the estimate drops by more than the margin); what it gives up against the
    better of the two, by the pool labels."""
    by_key = {(r["group"], r["adapt"], r["seed"]): r for r in rs}
    print("\n| estimate | margin | adaptation | decisions | kept the original | gave up something | worst | mean |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ESTIMATES:
        for margin in (0.0, GUARD_MARGIN):
            for adapt in sorted({r["adapt"] for r in rs} - {"none"}):
                pairs = [
                    (r, by_key[(r["group"], adapt, r["seed"])])
                    for r in rs
                    if r["adapt"] == "none" and (r["group"], adapt, r["seed"]) in by_key
                ]
                if not pairs:
                    continue
                keep = [a[name] < b[name] - margin for b, a in pairs]
                lost = np.array(
                    [max(b["accuracy"], a["accuracy"]) - (b if k else a)["accuracy"] for (b, a), k in zip(pairs, keep)]
                )
                print(
                    f"| {name} | {margin:g} | {adapt} | {len(pairs)} | {sum(keep)} | {(lost > 1e-9).sum()} | "
                    f"{lost.max():.3f} | {lost.mean():.4f} |"
                )


def from_adapt_table(path: Path) -> None:
    """The estimates graded on ``adapt_table.py``'s saved rows (no probabilities there: no prior bound)."""
    rs = json.loads(path.read_text())
    seed_row = {(r["task"], r["base"], r["method"], r["seed"]): r for r in rs}
    for r in rs:  # the agreement with the previous seed is that seed's agreement with this one
        prev = seed_row[(r["task"], r["base"], r["method"], (r["seed"] - 1) % 3)]["estimates"]["agreement"]
        r["two"] = (r["estimates"]["agreement"] + prev) / 2
    sets = {
        "source-only and DANN (flat, named)": ("source-only", "dann-flat", "dann-named"),
        "DANN with latent domains": ("dann-latent", "dann-latent3"),
    }
    print("| models | estimate | n | mean abs. error | worst | task A: mean / worst |\n|---|---|---|---|---|---|")
    for label, bases in [*sets.items(), ("all", tuple({r["base"] for r in rs}))]:
        sub = [r for r in rs if r["base"] in bases]
        for name, value in [
            ("agreement, one reference", lambda r: r["estimates"]["agreement"]),
            (
                "min(agreement, ATC-NE), one reference",
                lambda r: min(r["estimates"]["agreement"], r["estimates"]["atc-ne"]),
            ),
            ("min(agreement, ATC-NE), two references", lambda r: min(r["two"], r["estimates"]["atc-ne"])),
        ]:
            err = np.array([abs(value(r) - r["pool_window_acc"]) for r in sub])
            a = np.array([abs(value(r) - r["pool_window_acc"]) for r in sub if r["task"] == "A"])
            print(
                f"| {label} | {name} | {len(sub)} | {err.mean():.3f} | {err.max():.3f} | {a.mean():.3f} / {a.max():.3f} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("data/fsdd_hard"))
    ap.add_argument("--tasks", nargs="+", default=["A", "B", "C", "S"])
    ap.add_argument("--adapts", nargs="+", default=["none", "adabn", "shot-file", "latent-bn"])
    ap.add_argument("--probs", action="store_true", help="compute the missing pool probabilities first")
    ap.add_argument("--json", type=Path, help="write every row and the summaries here")
    ap.add_argument("--from-adapt-table", type=Path, help="grade adapt_table.py's saved rows instead")
    args = ap.parse_args()
    if args.from_adapt_table:
        return from_adapt_table(args.from_adapt_table)
    if args.probs:
        _probs(args.work, args.tasks)
    rs = rows(args.work, args.tasks, args.adapts)
    print("| models | adaptation | pool accuracy (seeds) | agreement | combined | abs. error: agreement | combined |")
    print("|---|---|---|---|---|---|---|")
    for group in dict.fromkeys(r["group"] for r in rs):
        for adapt in dict.fromkeys(r["adapt"] for r in rs if r["group"] == group):
            g = [r for r in rs if (r["group"], r["adapt"]) == (group, adapt)]
            fmt = lambda k: " / ".join(f"{r[k]:.3f}" for r in g)  # noqa: E731
            err = {k: np.abs([r[k] - r["accuracy"] for r in g]) for k in ("agreement", "combined")}
            print(
                f"| {group} | {adapt} | {fmt('accuracy')} | {fmt('agreement')} | {fmt('combined')} | "
                f"{err['agreement'].mean():.3f} / {err['agreement'].max():.3f} | "
                f"{err['combined'].mean():.3f} / {err['combined'].max():.3f} |"
            )
    sets = {
        "base grid (source-only and DANN, flat target)": [r for r in rs if "_base_" in r["group"]],
        "variant grid (DANN variants: latent K, CDAN, wide)": [r for r in rs if "_base_" not in r["group"]],
        "all": rs,
    }
    print("\n| models | estimator | n | mean abs. error | worst | task A: mean / worst |\n|---|---|---|---|---|---|")
    result = {}
    for label, sub in sets.items():
        if not sub:
            continue
        result[label] = summary(sub)
        for name, v in result[label].items():
            a = "-" if v["A_mean"] is None else f"{v['A_mean']:.3f} / {v['A_worst']:.3f}"
            print(f"| {label} | {name} | {v['models']} | {v['mean']:.3f} | {v['worst']:.3f} | {a} |")
    guard_replay(rs)
    if args.json:
        args.json.write_text(json.dumps({"summaries": result, "rows": rs}, indent=1, default=float))


if __name__ == "__main__":
    main()
