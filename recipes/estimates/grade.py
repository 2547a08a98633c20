"""Grade the label-free estimates of target accuracy on every model of the recipe grids (issue 30).

    python recipes/estimates/grade.py [--heart data/heart] [--fsdd data/fsdd_grid] [--json data/estimates.json]

Models: the heart-sound runs of ``recipes/heart_sounds/run_recipe.py`` (source-only, + AdaBN, ``train``'s
default, ``--method dann``) and the FSDD runs of ``recipes/fsdd_speakers/model_grid.py`` (source-only,
+ AdaBN, the default stage, ``--method dann``). For each model, its embeddings and logits on the source
validation windows and on the target pool windows of the run's prepared folder are computed once
(``RUN/outputs.npz``); every estimator reads only those, the bundle's calibration and the source labels.
The pool's labels (from the manifests) grade them: error = estimate - pool window accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np
import torch

from audio_dann.adaptation.critic import critic_estimate, discrepancy_estimate, keep_source_sample
from audio_dann.adaptation.estimators import agreement_floor, combined_estimate, estimate, label_free_estimate
from audio_dann.adaptation.floor import floor_of, starting_network
from audio_dann.adaptation.guard import guard_decision
from audio_dann.adaptation.methods.adabn import adabn_copy
from audio_dann.data.store import open_prepared
from audio_dann.nn.classifier import load_checkpoint
from audio_dann.nn.outputs import model_outputs, probabilities

PENALTIES = (0.03, 0.1, 0.2, 0.3, 1.0)  # critic variants for comparison, penalty on the head's change in weights
SCALE_FREE = (0.002, 0.005, 0.01, 0.02)  # and with the weights' change weighted by the embeddings' mean square
HEART_MODELS = re.compile(r"^(source-only|adabn|auto|dann|stage)_s(\d)$")
FSDD_MODELS = re.compile(r"^([ABCS])_(source-only|adabn|default|dann)_s(\d)$")
DEMO_MODELS = re.compile(r"^(.+)_(source-only|adabn|default)_s(\d)$")


def heart_models(work: Path, labels: dict[str, str]) -> list[dict]:
    out = []
    for task_dir in sorted(p for p in work.glob("*_to_*") if p.is_dir()):
        for run in sorted(task_dir.iterdir()):
            m = HEART_MODELS.match(run.name)
            if m and (run / "summary.json").is_file():
                seed = int(m.group(2))
                prep = task_dir / f"prepared_s{seed}"
                if not prep.is_dir():
                    continue
                out.append(
                    {
                        "grid": "heart",
                        "task": task_dir.name.replace("_to_", "->"),
                        "model": {"auto": "default"}.get(m.group(1), m.group(1)),
                        "seed": seed,
                        "run": run,
                        "prep": prep,
                        "labels": labels,
                    }
                )
    return out


def _physionet_labels(data: Path) -> dict[str, str]:
    """Recording path -> label for every PhysioNet 2016 recording."""
    with open(data / "labels.csv", newline="") as f:
        return {str((data / "recordings" / f"{r['record']}.flac").resolve()): r["label"] for r in csv.DictReader(f)}


def fsdd_models(work: Path) -> list[dict]:
    out = []
    for run in sorted((work / "runs").glob("*_s[0-9]")):
        m = FSDD_MODELS.match(run.name)
        if m and (run / "summary.json").is_file():
            task = m.group(1)
            out.append(
                {
                    "grid": "fsdd",
                    "task": task,
                    "model": m.group(2),
                    "seed": int(m.group(3)),
                    "run": run,
                    "prep": work / f"{task}_prep_flat",
                    "labels": work / "channel" / "target.csv" if task == "C" else work / f"{task}_target.csv",
                }
            )
    return out


def demo_models(work: Path) -> list[dict]:
    """The runs of ``recipes/studio_to_field/model_grid.py``, graded on the labelled field test clips (the
    demo keeps no labels for its pool); the task is the training setting (``none``, ``both+room``)."""
    out = []
    for run in sorted((work / "runs").glob("*_s[0-9]")):
        m = DEMO_MODELS.match(run.name)
        if m and (run / "summary.json").is_file():
            out.append(
                {
                    "grid": "demo",
                    "task": m.group(1),
                    "model": m.group(2),
                    "seed": int(m.group(3)),
                    "run": run,
                    "prep": work / "prepared",
                    "labels": None,
                    "split": "test",
                }
            )
    return out


def grid_models(args: argparse.Namespace, grids) -> list[dict]:
    """Every finished model of ``grids`` under ``args.heart``, ``args.fsdd`` and ``args.demo``."""
    return (
        (heart_models(args.heart, _physionet_labels(args.physionet)) if "heart" in grids else [])
        + (fsdd_models(args.fsdd) if "fsdd" in grids else [])
        + (demo_models(args.demo) if "demo" in grids and (args.demo / "runs").is_dir() else [])
    )


def outputs(entry: dict) -> dict:
    """Embeddings, logits and labels on the source validation and target pool windows, and the source
    embeddings with the source's own batch-norm statistics (cached in ``RUN/outputs.npz``)."""
    cache = entry["run"] / "outputs.npz"
    if cache.is_file():
        saved = dict(np.load(cache))
        if "source_z_own" in saved:
            return saved
    model = load_checkpoint(entry["run"] / "model.pt")[0]
    prep = open_prepared(entry["prep"])
    label_of = entry["labels"]
    if label_of is not None and not isinstance(label_of, dict):
        with open(label_of, newline="") as f:
            label_of = {str(Path(r["path"]).resolve()): r["label"] for r in csv.DictReader(f)}
    saved = {}
    split = entry.get("split", "train")
    for name, rows in (("source", prep.rows("val", source=True)), ("target", prep.rows(split, source=False))):
        files = [prep.index[i]["file"] for i in rows]
        x = _windows(prep, rows)
        z, logits = model_outputs(model.dann, x, "cpu")
        if name == "source":
            labels = prep.labels(rows)
            own = adabn_copy(model.dann, x, "cpu")  # the network with the source's own batch-norm statistics
            saved["source_z_own"] = model_outputs(own, x, "cpu")[0].numpy()
        elif label_of is None:  # the prepared folder's own labels (the demo's labelled field test clips)
            labels = prep.labels(rows)
        else:
            labels = np.array([model.classes.index(label_of[str(Path(f).resolve())]) for f in files])
        uniq = {f: k for k, f in enumerate(dict.fromkeys(files))}
        saved |= {
            f"{name}_z": z.numpy(),
            f"{name}_logits": logits.numpy(),
            f"{name}_labels": labels,
            f"{name}_files": np.array([uniq[f] for f in files]),
        }
    np.savez(cache, **saved)
    return saved


def _windows(prep, rows: np.ndarray) -> torch.Tensor:
    """The prepared log-mel windows ``rows`` (in increasing order, as ``prep.rows`` gives them), float32."""
    return torch.from_numpy(np.asarray(prep.features[rows], dtype=np.float32))


def _pool(entry: dict) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray, np.ndarray]:
    """The run's pool windows and their file numbers, and the source validation windows, labels and files."""
    prep = open_prepared(entry["prep"])
    pool, val = prep.rows(entry.get("split", "train"), source=False), prep.rows("val", source=True)
    files = lambda rows: np.unique([prep.index[i]["file"] for i in rows], return_inverse=True)[1]  # noqa: E731
    return _windows(prep, pool), files(pool), _windows(prep, val), prep.labels(val), files(val)


def figures(entry: dict, out: dict) -> dict:
    """The toolkit's estimate and lower bound for one model, as ``train`` computes them on its pool (the
    same functions as ``estimate``; the bundle's source clips, or for bundles without them the same seeded
    choice ``train`` keeps; all the prepared pool windows, where ``estimate`` decodes the files again), today's
    figures, the critic variants on the cached embeddings (all source validation windows), and the truth.
    No pool label is read before the truth."""
    model = load_checkpoint(entry["run"] / "model.pt")[0]
    pool_x, pool_files, val_x, val_y, val_files = _pool(entry)
    sample = model.source_sample or keep_source_sample(val_x, val_y, val_files)
    probs = probabilities(model.dann, pool_x, "cpu")
    critic = critic_estimate(model.dann, sample, pool_x, target_files=pool_files)
    est = label_free_estimate(probs, model.calibration, critic=critic)
    before = estimate(probs, model.calibration)
    row = {
        "truth": float((probs.argmax(1) == out["target_labels"]).mean()),
        "estimate": est["value"],
        "lower bound": est["lower_bound"],
        "limited by": est["limited_by"],
        "estimate until now": combined_estimate(before).get("value"),
        "atc-ne": before.get("atc-ne"),
        "prior-bound": before.get("prior-bound"),
    }
    sibling = _adabn_sibling(entry)
    if sibling is not None:  # a stage's model: its agreement with the network before it, under AdaBN
        row["agreement with AdaBN"] = agreement_floor(probs, np.load(sibling)["target_logits"])
        # the estimate train's stage and adapt give it: raised to that agreement where floor_applies
        floored = label_free_estimate(probs, model.calibration, critic=critic, floor=row["agreement with AdaBN"])
        row["estimate, floored by agreement"] = floored["value"]
    if entry["model"] == "dann":  # DANN's stage: its agreement with the network before it, under AdaBN
        floor = _stage_floor(model, entry["run"], pool_x)  # measured only: train gives DANN no floor (floor_holds)
        if floor is not None:
            row["agreement with AdaBN"] = floor
    head = model.dann.label_head.fc
    variants = [("as deployed", out["source_z"], p, False) for p in PENALTIES]
    variants += [("source statistics", out["source_z_own"], p, False) for p in PENALTIES]
    variants += [("source statistics, scale-free", out["source_z_own"], p, True) for p in SCALE_FREE]
    for name, z, p, scale_free in variants:
        c = discrepancy_estimate(
            head,
            z,
            out["source_labels"],
            out["target_z"],
            penalty=p,
            files_source=out["source_files"],
            files_target=out["target_files"],
            scale_free=scale_free,
        )
        row[f"critic {p}, {name}"] = c["estimate"]
    return row


def _stage_floor(model, run: Path, pool_x: torch.Tensor) -> float | None:
    """A DANN model's agreement with the network before its stage under AdaBN (what the floor would be):
    from the network the bundle keeps (runs of 2026-12-08), or from that network rebuilt from ``last.pt``
    where it is the last step's (the selected step is the last); None otherwise."""
    probs = probabilities(model.dann, pool_x, "cpu")
    start = starting_network(model)
    if start is not None:
        return floor_of(probs, start, pool_x, "cpu")
    last = model.adaptation[-1] if model.adaptation else {}
    if last.get("stage") != "train.self_training" or last.get("kept") != "adapted":
        return None
    summary = json.loads((run / "summary.json").read_text())
    if not (run / "last.pt").is_file() or summary["selected"]["step"] != summary["final"]["step"]:
        return None
    return floor_of(probs, load_checkpoint(run / "last.pt")[0].dann, pool_x, "cpu")


def _adabn_sibling(entry: dict) -> Path | None:
    """The cached outputs of the AdaBN model of the same task and seed, for a stage's model without its
    guard (FSDD and demo ``default``, heart ``stage``); None for other models or where it is missing."""
    run = entry["run"]
    if entry["grid"] in ("fsdd", "demo") and entry["model"] == "default":
        sibling = run.parent / run.name.replace("_default_", "_adabn_")
    elif entry["grid"] == "heart" and entry["model"] == "stage":
        sibling = run.parent / f"adabn_s{entry['seed']}"
    else:
        return None
    if not (sibling / "outputs.npz").is_file() and (sibling / "model.pt").is_file():
        outputs({**entry, "run": sibling, "model": "adabn"})
    return sibling / "outputs.npz" if (sibling / "outputs.npz").is_file() else None


def summary(rows: list[dict], names: list[str]) -> str:
    """Per figure: how far from the truth (pool window accuracy) over ``rows``."""
    lines = [
        "| figure | models | mean abs error | mean error | above truth | above by > 0.05 | worst above | mean under |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        err = np.array([r[name] - r["truth"] for r in rows if r.get(name) is not None])
        if len(err):
            lines.append(
                f"| {name} | {len(err)} | {np.abs(err).mean():.3f} | {err.mean():+.3f} | {(err > 0).sum()} | "
                f"{(err > 0.05).sum()} | {max(err.max(), 0):+.3f} | {np.clip(-err, 0, None).mean():.3f} |"
            )
    return "\n".join(lines)


# (before, after) model pairs a guard chooses between: adapt's default stage and AdaBN on a source-only model
PAIRS = (("source-only", "default"), ("source-only", "adabn"), ("source-only", "stage"))


def guard_replay(rows: list[dict], before_figure: str, after_figure: str) -> str:
    """The guard's choice (keep ``after`` unless its ``after_figure`` lies more than GUARD_MARGIN under the
    original's ``before_figure``) replayed on every (before, after) pair of the same task and seed, and
    what it cost against the better of the two (truth: pool window accuracy)."""
    by = {(r["grid"], r["task"], r["seed"], r["model"]): r for r in rows}
    lines = [
        "| pair | task | seed | truth before | truth after | kept | cost (points) |",
        "|---|---|---|---|---|---|---|",
    ]
    costs = []
    for (grid, task, seed, model), after in sorted(by.items()):
        for first, second in PAIRS:
            before = by.get((grid, task, seed, first))
            if model != second or before is None:
                continue
            keep = guard_decision(before[before_figure], after.get(after_figure, after["estimate"]))["kept"]
            kept = before if keep == "original" else after
            costs.append(max(before["truth"], after["truth"]) - kept["truth"])
            lines.append(
                f"| {first} -> {second} | {grid} {task} | {seed} | {before['truth']:.3f} | {after['truth']:.3f} | "
                f"{'before' if keep == 'original' else 'after'} | {100 * costs[-1]:.1f} |"
            )
    c = np.array(costs) if costs else np.zeros(1)
    return (
        f"{len(c)} pairs; the worse model kept by more than 2 points on {(c > 0.02).sum()}; mean cost "
        f"{100 * c.mean():.1f} points, worst {100 * c.max():.1f}\n\n" + "\n".join(lines)
    )


def shipped(rows: list[dict]) -> list[dict]:
    """The models a user gets, with the figures their run reports: ``--method dann`` (no floor) and heart
    ``train`` default (``auto``) runs as they are; for each source-only model and its stage (FSDD and demo
    ``default``, heart ``stage``, both trained without the guard), the one the guard keeps (the source-only
    model's lower bound against the stage's floored estimate), with the floored estimate for a kept stage."""
    by = {(r["grid"], r["task"], r["seed"], r["model"]): r for r in rows}
    floored = lambda r: {**r, "estimate": r.get("estimate, floored by agreement", r["estimate"])}  # noqa: E731
    out = [
        {**floored(r), "shipped as": r["model"]}
        for r in rows
        if r["model"] == "dann" or (r["grid"], r["model"]) == ("heart", "default")
    ]
    for (grid, task, seed, model), stage in sorted(by.items()):
        before = by.get((grid, task, seed, "source-only"))
        if model not in ("default", "stage") or (grid, model) == ("heart", "default") or before is None:
            continue
        after = floored(stage)
        keep = guard_decision(before["lower bound"], after["estimate"])["kept"]
        name = "stage" if grid == "heart" else "default"
        out.append(
            {
                **(before if keep == "original" else after),
                "shipped as": f"{name} ({'source-only' if keep == 'original' else 'stage'} kept)",
            }
        )
    return out


def must_show(rows: list[dict]) -> str:
    """Issue 30's must-show figures on the shipped models (:func:`shipped`), per grid and on FSDD and heart
    sounds together (the issue's tasks): the point estimate's mean absolute error, how often and how far
    the lower bound lies above the truth, and how far under it on average."""
    lines = [
        "| models | n | estimate: mean abs error | lower bound above truth | above by > 0.05 | lower bound: mean under |",
        "|---|---|---|---|---|---|",
    ]
    ship = shipped(rows)
    groups = [(g, [r for r in ship if r["grid"] == g]) for g in ("fsdd", "heart", "demo")]
    groups.append(("fsdd + heart", [r for r in ship if r["grid"] in ("fsdd", "heart")]))
    for name, part in groups:
        if not part:
            continue
        t = np.array([r["truth"] for r in part])
        err, low = np.array([r["estimate"] for r in part]) - t, np.array([r["lower bound"] for r in part]) - t
        lines.append(
            f"| {name} | {len(part)} | {np.abs(err).mean():.3f} | {(low > 0).sum()} | {(low > 0.05).sum()} | "
            f"{np.clip(-low, 0, None).mean():.3f} |"
        )
    detail = [
        "| grid | task | seed | shipped | truth | estimate | lower bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(ship, key=lambda r: (r["grid"], r["task"], r["seed"], r["shipped as"])):
        detail.append(
            f"| {r['grid']} | {r['task']} | {r['seed']} | {r['shipped as']} | {r['truth']:.3f} | {r['estimate']:.3f} | "
            f"{r['lower bound']:.3f} |"
        )
    return "\n".join(lines) + "\n\n" + "\n".join(detail)


# the guard's rule today (the original's lower bound against the adapted model's estimate), the two
# rules it was measured against, and the rule until now (its estimate, ATC-NE and the prior bound)
RULES = (
    ("lower bound", "estimate"),
    ("lower bound", "estimate, floored by agreement"),
    ("lower bound", "lower bound"),
    ("estimate", "estimate"),
    ("estimate until now", "estimate until now"),
)


def by_model(rows: list[dict]) -> str:
    """The point estimate's mean absolute error and the lower bound's misses, per grid and kind of model."""
    lines = [
        "| grid | model | n | truth (mean) | estimate: mean abs error | until now: mean abs error | "
        "lower bound above truth | lower bound: mean under |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for grid, model in sorted({(r["grid"], r["model"]) for r in rows}):
        part = [r for r in rows if (r["grid"], r["model"]) == (grid, model)]
        t = np.array([r["truth"] for r in part])
        err = lambda k: np.array([np.nan if r[k] is None else r[k] for r in part]) - t  # noqa: E731
        low = err("lower bound")
        lines.append(
            f"| {grid} | {model} | {len(part)} | {t.mean():.3f} | {np.abs(err('estimate')).mean():.3f} | "
            f"{np.abs(err('estimate until now')).mean():.3f} | {(low > 0).sum()} | {np.clip(-low, 0, None).mean():.3f} |"
        )
    return "\n".join(lines)


FIGURES = [
    "estimate",
    "lower bound",
    "estimate until now",
    "atc-ne",
    "prior-bound",
    "agreement with AdaBN",
    "estimate, floored by agreement",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heart", type=Path, default=Path("data/heart"))
    ap.add_argument("--physionet", type=Path, default=Path("../shared/data/physionet2016"))
    ap.add_argument("--fsdd", type=Path, default=Path("data/fsdd_grid"))
    ap.add_argument("--json", type=Path, default=Path("data/estimates.json"))
    ap.add_argument("--demo", type=Path, default=Path("data/demo_grid"))
    ap.add_argument("--grids", nargs="+", default=["heart", "fsdd", "demo"], choices=["heart", "fsdd", "demo"])
    ap.add_argument("--reuse", action="store_true", help="keep the rows --json already holds; grade the others")
    ap.add_argument("--tables-from", type=Path, default=None, help="print the tables of a saved --json and stop")
    ap.add_argument("--regrade", nargs="*", default=[], help="with --reuse: grade these models (e.g. default) again")
    args = ap.parse_args()
    if args.tables_from:
        rows = json.loads(args.tables_from.read_text())
    else:
        entries = grid_models(args, args.grids)
        done, rows = {}, []
        if args.reuse and args.json.is_file():  # rows already graded (same grids, same code) are kept
            saved = json.loads(args.json.read_text())
            done = {(r["grid"], r["task"], r["model"], r["seed"]): r for r in saved if r["model"] not in args.regrade}
            rows = [r for r in saved if r["grid"] not in args.grids]  # the other grids' rows stay in --json
        for e in entries:
            key = tuple(e[k] for k in ("grid", "task", "model", "seed"))
            if key in done:
                rows.append(done[key])
                continue
            row = {k: e[k] for k in ("grid", "task", "model", "seed")} | figures(e, outputs(e))
            rows.append(row)
            print(
                f"{e['grid']} {e['task']} {e['model']} s{e['seed']}: truth {row['truth']:.3f} estimate "
                f"{row['estimate']:.3f} lower bound {row['lower bound']:.3f} until now {row['estimate until now']:.3f}",
                flush=True,
            )
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    if not rows:
        raise SystemExit("no finished models found under --heart, --fsdd or --demo")
    variants = [k for k in rows[0] if k.startswith("critic ")]
    for grid in ("fsdd", "heart", "demo", None):
        part = [r for r in rows if grid is None or r["grid"] == grid]
        if part:
            print(f"\n{grid or 'all'}: {len(part)} models\n" + summary(part, FIGURES + variants))
    print("\nby model (estimate and lower bound)\n" + by_model(rows))
    print("\nthe models a user gets (the guard replayed; a kept stage with its floored figures)\n" + must_show(rows))
    for before, after in RULES:
        print(f"\nguard replay: {before} before against {after} after\n" + guard_replay(rows, before, after))


if __name__ == "__main__":
    main()
