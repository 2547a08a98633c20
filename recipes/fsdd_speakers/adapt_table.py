"""Source-free adaptation and label-free accuracy estimates on FSDD tasks A and B, flat and named targets.

    python recipes/fsdd_speakers/adapt_table.py --fsdd ../shared/data/fsdd/recordings --work data/fsdd_adapt \
        [--tasks A B] [--seeds 0 1 2] [--device cuda] [--jobs 6] [--set train.steps=1500 ...]

For each task and seed: train pure source-only, DANN with a flat target (one folder, no domain
names, labels stripped) and DANN with the target speakers named (K-way head), all with the recipe's
config; then adapt every one of them with each source-free method (``audio_dann.adaptation``) on the
flat, unlabelled target pool, the same windows a prepared folder holds (so no audio is decoded twice).
Every model is scored on the target test clips and the pool (labels from the FSDD file names, report
only), and every label-free estimate (ATC-NE, ATC-MC, DoC from the bundle's calibration; agreement
between two seeds' models) is compared with the pool's window accuracy. No choice reads a target label:
``model.pt`` is chosen on source validation, the guard on the estimate.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch
from channel_shift import channel_manifests  # noqa: E402 (same folder)
from run_recipe import manifests  # noqa: E402 (same folder)

from audio_dann.adaptation.estimators import agreement, calibrate, estimate
from audio_dann.adaptation.methods import METHODS, AdaptConfig, TargetClips, adapt_network
from audio_dann.api import prepare, train
from audio_dann.config import apply_overrides, load_config
from audio_dann.data.store import open_prepared
from audio_dann.nn.classifier import load_model
from audio_dann.nn.outputs import probabilities

HERE = Path(__file__).resolve().parent
# base models: name -> (prepared folder, method, extra settings)
BASES = {
    "source-only": ("flat", "source-only", []),
    "dann-flat": ("flat", "dann", []),
    "dann-latent": ("flat", "dann", ["train.latent_domains=-1"]),
    "dann-latent3": ("flat", "dann", ["train.latent_domains=3"]),
    "dann-named": ("named", "dann", []),
}


def _flat(csv_in: Path, csv_out: Path) -> Path:
    """The target manifest as most users hold their recordings: paths only."""
    with open(csv_in, newline="") as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    csv_out.write_text("path\n" + "".join(f"{p}\n" for p in paths))
    return csv_out


def prepare_layouts(m: dict, work: Path, task: str, config, layouts: set[str]) -> dict[str, Path]:
    """Prepare a task's flat target folder (always: paths only, as most users hold recordings) and the
    one with the target speakers named (when ``"named"`` is in ``layouts``)."""
    flat = _flat(m["target"], work / f"{task}_target_flat.csv")
    preps = {"flat": work / f"{task}_prep_flat", "named": work / f"{task}_prep_named"}
    prepare(m["source"], [flat], preps["flat"], target_eval=m["test"], config=config)
    if "named" in layouts:
        prepare(m["source"], [m["target"]], preps["named"], target_eval=m["test"], config=config)
    return preps


def _digit(path: str) -> int:
    return int(Path(path).name.split("_")[0])


def _views(prep_dir: Path, names: tuple[str, ...] = ("pool", "test", "source_val")) -> dict:
    """Pool (target training), test and source validation windows of a prepared folder, with labels from
    FSDD file names."""
    prep = open_prepared(prep_dir)
    rows_of = {
        "pool": lambda: prep.rows("train", source=False),
        "test": lambda: prep.rows("test"),
        "source_val": lambda: prep.rows("val", source=True),
    }
    out = {}
    for name, rows in ((n, rows_of[n]()) for n in names):
        files = [prep.index[i]["file"] for i in rows]
        uniq = {f: k for k, f in enumerate(dict.fromkeys(files))}
        out[name] = {
            "x": torch.from_numpy(np.asarray(prep.features[rows], dtype=np.float16)),
            "y": np.array([_digit(f) for f in files]),
            "file": np.array([uniq[f] for f in files]),
            "paths": list(uniq),
        }
    return out


def _scores(probs: np.ndarray, view: dict, classes: list[str]) -> dict:
    """Window accuracy, and file accuracy (mean window probabilities, as predict)."""
    cls = np.array([int(c) for c in classes])
    win = float((cls[probs.argmax(1)] == view["y"]).mean())
    n_files = int(view["file"].max()) + 1
    per_file = np.zeros((n_files, probs.shape[1]))
    np.add.at(per_file, view["file"], probs)
    truth = np.zeros(n_files, dtype=int)
    truth[view["file"]] = view["y"]
    return {"window_acc": win, "file_acc": float((cls[per_file.argmax(1)] == truth).mean()), "files": n_files}


def _one(job: dict) -> list[dict]:
    """Train the three bases for one task and seed, adapt each with every method, score everything."""
    torch.set_num_threads(job["threads"])
    config, device, work = job["config"], job["device"], Path(job["work"])
    views = _views(Path(job["preps"]["flat"]))
    pool = views["pool"]
    rows = []
    for base in job["bases"]:
        layout, method_, extra = BASES[base]
        prep = job["preps"][layout]
        run = work / "runs" / f"{job['task']}_{base}_s{job['seed']}"
        t0 = time.perf_counter()
        if not (run / "summary.json").exists():
            train(
                prep,
                run,
                config=apply_overrides(config, extra),
                method=method_,
                seed=job["seed"],
                device=device,
                report=False,
            )
        train_s = time.perf_counter() - t0
        model = load_model(run / "model.pt")
        clips = TargetClips(pool["x"], pool["file"], pool["paths"], [])
        before = probabilities(model.dann.to(device), pool["x"], device)
        est_before = estimate(before, model.calibration)
        est_before.update({f"{k}-recal": v for k, v in est_before.items()})
        latent = json.loads((run / "summary.json").read_text()).get("latent_domains")
        rows.append(
            {
                "task": job["task"],
                "seed": job["seed"],
                "base": base,
                "method": "none",
                "train_s": train_s,
                "latent_k": latent["k"] if latent else None,
                **{f"pool_{k}": v for k, v in _scores(before, pool, model.classes).items()},
                **{
                    f"test_{k}": v
                    for k, v in _scores(
                        probabilities(model.dann, views["test"]["x"], device), views["test"], model.classes
                    ).items()
                },
                "estimates": est_before,
                "probs_file": _save_probs(work, job, base, "none", before),
            }
        )
        for method in job["methods"]:
            t0 = time.perf_counter()
            net, info = adapt_network(model.dann, clips, method, AdaptConfig(seed=job["seed"]), device)
            net = net.to(device)
            after = probabilities(net, pool["x"], device)
            est_after = estimate(after, model.calibration)
            # the same estimators recalibrated for the adapted network on held-out source clips
            recal = calibrate(
                probabilities(net, views["source_val"]["x"], device),
                np.array([model.classes.index(str(d)) for d in views["source_val"]["y"]]),
            )
            est_after.update({f"{k}-recal": v for k, v in estimate(after, recal).items()})
            b, a = est_before.get("atc-ne"), est_after.get("atc-ne")
            rows.append(
                {
                    "task": job["task"],
                    "seed": job["seed"],
                    "base": base,
                    "method": method,
                    "adapt_s": time.perf_counter() - t0,
                    **{f"pool_{k}": v for k, v in _scores(after, pool, model.classes).items()},
                    **{
                        f"test_{k}": v
                        for k, v in _scores(
                            probabilities(net, views["test"]["x"], device), views["test"], model.classes
                        ).items()
                    },
                    "estimates": est_after,
                    "guard_keeps": "original" if (a is not None and b is not None and a < b) else "adapted",
                    "probs_file": _save_probs(work, job, base, method, after),
                }
            )
    return rows


def _save_probs(work: Path, job: dict, base: str, method: str, probs: np.ndarray) -> str:
    path = work / "probs" / f"{job['task']}_{base}_{method}_s{job['seed']}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, probs.astype(np.float32))
    return str(path)


def _agreement_estimates(rows: list[dict]) -> None:
    """Agreement between the same task/base/method of two seeds, as the estimate for both (GDE)."""
    key = lambda r: (r["task"], r["base"], r["method"])  # noqa: E731
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    for group in groups.values():
        group.sort(key=lambda r: r["seed"])
        probs = [np.load(r["probs_file"]) for r in group]
        for i, r in enumerate(group):
            if len(group) > 1:
                r["estimates"]["agreement"] = agreement(probs[i], probs[(i + 1) % len(group)])


def _agreement_guard(rows: list[dict]) -> None:
    """The guard with the agreement estimate: keep the adapted model when its agreement with the other
    seed's adapted model is not below the originals' agreement; record the kept model's accuracy."""
    base = {(r["task"], r["base"], r["seed"]): r for r in rows if r["method"] == "none"}
    for r in rows:
        b = base[(r["task"], r["base"], r["seed"])]
        if r["method"] == "none" or "agreement" not in r["estimates"]:
            continue
        keep = r["estimates"]["agreement"] >= b["estimates"]["agreement"]
        r["agreement_guard_keeps"] = "adapted" if keep else "original"
        r["kept_pool_window_acc"] = r["pool_window_acc"] if keep else b["pool_window_acc"]
        r["kept_test_file_acc"] = r["test_file_acc"] if keep else b["test_file_acc"]


def _ci(values) -> str:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return f"{v.mean():.3f}"
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))  # normal approximation over seeds
    return f"{v.mean():.3f} +- {half:.3f}"


def tables(rows: list[dict]) -> str:
    out = [
        "| task | base | method | test acc (file, mean +- 95% half-width) | pool acc (file) | pool acc (window) "
        "| ATC-NE est. | agreement est. | agreement guard keeps adapted | pool acc (window) of the kept model | "
        "seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in sorted({r["task"] for r in rows}):
        for base in BASES:
            for method in ("none", *METHODS):
                rs = [r for r in rows if r["task"] == task and r["base"] == base and r["method"] == method]
                if not rs:
                    continue
                est = [r["estimates"].get("atc-ne", np.nan) for r in rs]
                agree = [r["estimates"].get("agreement", np.nan) for r in rs]
                kept = sum(r.get("agreement_guard_keeps") == "adapted" for r in rs) if method != "none" else "-"
                kept_acc = _ci([r.get("kept_pool_window_acc", np.nan) for r in rs]) if method != "none" else "-"
                out.append(
                    f"| {task} | {base} | {method} | {_ci([r['test_file_acc'] for r in rs])} | "
                    f"{_ci([r['pool_file_acc'] for r in rs])} | {_ci([r['pool_window_acc'] for r in rs])} | "
                    f"{np.mean(est):.3f} | {np.mean(agree):.3f} | {kept} | {kept_acc} | {len(rs)} |"
                )
    out += ["", "| estimator | mean abs. error (pool windows) | worst | runs |", "|---|---|---|---|"]
    for name in ("atc-ne", "atc-mc", "doc", "atc-ne-recal", "atc-mc-recal", "doc-recal", "agreement"):
        err = [abs(r["estimates"][name] - r["pool_window_acc"]) for r in rows if name in r["estimates"]]
        if err:
            out.append(f"| {name} | {np.mean(err):.3f} | {np.max(err):.3f} | {len(err)} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    ap.add_argument("--work", type=Path, default=Path("data/fsdd_adapt"))
    ap.add_argument("--tasks", nargs="+", default=["A", "B"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--bases", nargs="+", default=list(BASES), choices=list(BASES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="task/seed combinations run in parallel processes")
    ap.add_argument("--subset", type=int, default=None, help="only file index < N (smoke test)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    config = load_config(
        HERE / "config.yaml",
        ["train.rv_steps=0", "train.self_training=none", "train.latent_ensemble=[]", *args.overrides],
    )
    # models are saved as trained (no AdaBN stage): the script applies AdaBN and the others itself
    args.work.mkdir(parents=True, exist_ok=True)
    jobs = []
    for task in args.tasks:
        # A, B: the speaker shift both ways; C: clean -> degraded channel (one condition: no names to give)
        m = (
            channel_manifests(args.fsdd, args.work / "channel")
            if task == "C"
            else manifests(args.fsdd, args.work, task, args.subset)
        )
        bases = [b for b in args.bases if not (task == "C" and BASES[b][0] == "named")]
        preps = prepare_layouts(m, args.work, task, config, {BASES[b][0] for b in bases})
        jobs += [
            {
                "task": task,
                "seed": s,
                "config": config,
                "device": args.device,
                "work": str(args.work),
                "preps": {k: str(v) for k, v in preps.items()},
                "methods": args.methods,
                "bases": bases,
                "threads": max(1, (mp.cpu_count() or 2) // max(args.jobs, 1)),
            }
            for s in args.seeds
        ]
    rows = []
    with mp.get_context("spawn").Pool(max(args.jobs, 1)) as pool:
        for part in pool.imap_unordered(_one, jobs):  # each task/seed as it finishes, so a cut-off run keeps them
            rows += part
            for r in part:
                print(json.dumps({k: v for k, v in r.items() if k != "probs_file"}), flush=True)
    _agreement_estimates(rows)
    _agreement_guard(rows)
    (args.work / "adapt_results.json").write_text(json.dumps(rows, indent=1))
    print(tables(rows))


if __name__ == "__main__":
    main()
