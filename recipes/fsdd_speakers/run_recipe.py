"""FSDD speakers recipe: manifests, prepare, source-only / DANN / target oracle over seeds, results table.

    python recipes/fsdd_speakers/run_recipe.py --fsdd ../shared/data/fsdd/recordings --work data/fsdd \
        [--tasks A B] [--seeds 0 1 2] [--set train.steps=1500 ...] [--subset N]

Every step is the library call behind an `audio-dann` command (see README.md in this folder).
Target labels are used only to report accuracy (test clips and the transductive pool).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from audio_dann.api import evaluate, prepare, train
from audio_dann.config import config_to_dict, load_config
from audio_dann.data.manifest import build_manifest, write_manifest
from audio_dann.infer.metrics import wilson_interval

HERE = Path(__file__).resolve().parent
GROUPS = {"A": (["jackson", "nicolas", "theo"], ["george", "lucas", "yweweler"])}
GROUPS["B"] = (GROUPS["A"][1], GROUPS["A"][0])
PATTERN = "{label}_{speaker}_{index}.wav"


def manifests(
    fsdd: Path, work: Path, task: str, subset: int | None, one_target_domain: bool = False
) -> dict[str, Path]:
    src, tgt = (",".join(s) for s in GROUPS[task])
    top = [f"index<{subset}"] if subset else []
    spec = {
        "source": ([f"speaker in {src}", *top], "index<5"),
        "target": ([f"speaker in {tgt}", "index>=5", *top], None),
        "test": ([f"speaker in {tgt}", "index<5"], None),
        "oracle": ([f"speaker in {tgt}", "index>=5", *top], None),
    }
    out = {}
    for name, (where, val_where) in spec.items():
        rows, _ = build_manifest(fsdd, PATTERN, where, domain="speaker", val_where=val_where)
        if one_target_domain and name == "target":  # ablation: one binary domain head instead of K-way
            rows = [{**r, "domain": "target"} for r in rows]
        suffix = "_1dom" if one_target_domain and name == "target" else ""
        out[name] = work / f"{task}_{name}{suffix}.csv"
        write_manifest(rows, out[name])
    return out


def train_and_score(prep: Path, run: Path, config, method: str, seed: int, test_csv: Path, pool_csv: Path) -> dict:
    """Train (or reuse / resume) one run, then score it on the test clips and the target pool (report only)."""
    t0 = time.perf_counter()
    if (run / "summary.json").exists():
        summary = json.loads((run / "summary.json").read_text())
    else:
        summary = train(
            prep, run, config=config, method=method, seed=seed, device="cpu", resume=(run / "last.pt").exists()
        )
    test = evaluate(run / "model.pt", test_csv)
    pool = evaluate(run / "model.pt", pool_csv)  # report only: the unlabelled pool's labels
    return {
        "seed": seed,
        "test_acc": test["accuracy"],
        "test_n": test["n"],
        "pool_acc": pool["accuracy"],
        "pool_n": pool["n"],
        "selected_step": summary["selected"]["step"],
        "train_seconds": summary["train_seconds"],
        "wall_seconds": time.perf_counter() - t0,
    }


def score_grid(
    prep: Path, runs: Path, config, methods, seeds, test_csv: Path, pool_csv: Path, out_json: Path
) -> list[dict]:
    """``train_and_score`` for every seed and method into ``runs/{method}_s{seed}``; rows also go to ``out_json``."""
    results = []
    for seed in seeds:
        for method in methods:
            row = {
                "method": method,
                **train_and_score(prep, runs / f"{method}_s{seed}", config, method, seed, test_csv, pool_csv),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    out_json.write_text(json.dumps(results, indent=1))
    return results


def shift_args(work: str) -> argparse.ArgumentParser:
    """The options shared by the single-shift scripts (channel_shift.py, synth_to_real.py)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    ap.add_argument("--work", type=Path, default=Path(work))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=["source-only", "dann"])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--tag", default="default")
    return ap


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsdd", type=Path, default=Path("../shared/data/fsdd/recordings"))
    ap.add_argument("--work", type=Path, default=Path("data/fsdd"))
    ap.add_argument("--tasks", nargs="+", default=["A", "B"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["source-only", "dann", "oracle"])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--tag", default="default", help="name of this configuration (run folders, results)")
    ap.add_argument("--subset", type=int, default=None, help="use only file index < N (smoke test)")
    ap.add_argument(
        "--one-target-domain",
        action="store_true",
        help="treat the three target speakers as one domain (binary domain head)",
    )
    args = ap.parse_args()
    config = load_config(HERE / "config.yaml", args.overrides)
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for task in args.tasks:
        m = manifests(args.fsdd, args.work, task, args.subset, args.one_target_domain)
        # one prepared folder per feature setting and domain layout, so ablations never clobber each other
        key = hashlib.sha256(
            json.dumps(
                [config_to_dict(config)["features"], args.one_target_domain, args.subset], sort_keys=True
            ).encode()
        ).hexdigest()[:8]
        prep = args.work / f"{task}_prepared_{key}"
        prepare(m["source"], [m["target"]], prep, target_eval=m["test"], config=config)
        oracle_prep = args.work / f"{task}_oracle_prepared_{key}"
        if "oracle" in args.methods:
            prepare(m["oracle"], [m["target"]], oracle_prep, target_eval=m["test"], config=config)
        for seed in args.seeds:
            for method in args.methods:
                run = args.work / "runs" / args.tag / f"{task}_{method}_s{seed}"
                row = train_and_score(
                    oracle_prep if method == "oracle" else prep,
                    run,
                    config,
                    "source-only" if method == "oracle" else method,
                    seed,
                    m["test"],
                    m["target"],
                )
                row = {"task": task, "method": method, **row}
                results.append(row)
                print(json.dumps(row), flush=True)
    out = args.work / f"results_{args.tag}_{'+'.join(args.tasks)}.json"  # per task set: parallel runs never clash
    out.write_text(json.dumps({"config": args.overrides, "results": results}, indent=1))
    print(table(results))


def table(results: list[dict]) -> str:
    lines = [
        "| task | method | target test acc (mean +- std) | 95% CI (pooled seeds) | pool acc | gap closed | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in sorted({r["task"] for r in results}):
        by = {
            m: [r for r in results if r["task"] == task and r["method"] == m] for m in ("source-only", "dann", "oracle")
        }
        mean = {m: np.mean([r["test_acc"] for r in rs]) for m, rs in by.items() if rs}
        for method, rs in by.items():
            if not rs:
                continue
            acc = np.array([r["test_acc"] for r in rs])
            n = sum(r["test_n"] for r in rs)
            lo, hi = wilson_interval(int(round(sum(r["test_acc"] * r["test_n"] for r in rs))), n)
            pool = np.array([r["pool_acc"] for r in rs])
            gap = ""
            if method == "dann" and {"source-only", "oracle"} <= set(mean) and mean["oracle"] > mean["source-only"]:
                gap = f"{(mean['dann'] - mean['source-only']) / (mean['oracle'] - mean['source-only']) * 100:+.0f}%"
            lines.append(
                f"| {task} | {method} | {acc.mean():.3f} +- {acc.std():.3f} | {lo:.3f}-{hi:.3f} | "
                f"{pool.mean():.3f} +- {pool.std():.3f} | {gap} | "
                f"{np.mean([r['train_seconds'] for r in rs]):.0f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
