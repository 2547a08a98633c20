"""Heart sounds across stethoscopes (PhysioNet/CinC Challenge 2016): manifests, prepare, the methods,
recording-level scores and the estimated abnormal share, one row per (task, method, seed).

    python recipes/heart_sounds/run_recipe.py --data ../shared/data/physionet2016 --work data/heart \\
        [--tasks e:b e:a] [--seeds 0 1 2] [--methods source-only adabn auto dann] [--set train.steps=1500]

Task ``s:t``: the labelled source is every recording of database ``s`` (10% of them, by recording, the
source validation set); the target's recordings are split in half by a seeded draw: the unlabelled pool
(``prepare --target``; labels never read) and the labelled test half (``--target-eval``, report only).
Windows of one recording never cross a split. ``adabn`` is source-only + target batch-norm statistics
(``adapt --method adabn``); ``auto`` is ``train``'s default; ``dann`` is ``--method dann``. Scores are per
recording (the mean of its windows' probabilities), as ``evaluate`` gives them: accuracy, balanced accuracy
(the challenge's MAcc for two classes: the mean of sensitivity and specificity) and per-class recall.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from audio_dann.api import adapt, evaluate, prepare, train
from audio_dann.config import apply_overrides, load_config

HERE = Path(__file__).resolve().parent


def manifests(data: Path, task: str, work: Path, seed: int = 0) -> dict[str, Path]:
    """``source.csv`` (with its val split), ``pool.csv`` and ``test.csv`` for ``task`` = ``s:t``."""
    src_db, tgt_db = task.split(":")
    rows = list(csv.DictReader(open(data / "labels.csv")))
    rng = np.random.default_rng(seed)
    out = work / task.replace(":", "_to_")
    out.mkdir(parents=True, exist_ok=True)
    src = [r for r in rows if r["database"] == src_db]
    tgt = [r for r in rows if r["database"] == tgt_db]
    val = set(rng.permutation([r["record"] for r in src])[: max(1, len(src) // 10)])
    order = rng.permutation(len(tgt))
    pool, test = [tgt[i] for i in order[: len(tgt) // 2]], [tgt[i] for i in order[len(tgt) // 2 :]]
    audio = (data / "recordings").resolve()

    def write(name: str, items: list[dict], split: bool = False) -> Path:
        with open(out / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", *(["split"] if split else [])])
            for r in items:
                w.writerow(
                    [
                        audio / f"{r['record']}.flac",
                        r["label"],
                        *(["val" if r["record"] in val else "train"] if split else []),
                    ]
                )
        return out / name

    return {
        "source": write("source.csv", src, split=True),
        "pool": write("pool.csv", pool),
        "test": write("test.csv", test),
        "pool_abnormal": float(np.mean([r["label"] == "abnormal" for r in pool])),
        "dir": out,
    }


def scores(model: Path, test: Path) -> dict:
    report = evaluate(model, test, workers=None, device="cpu")
    recall = {c: v["recall"] for c, v in report["per_class"].items()}
    return {
        "accuracy": report["accuracy"],
        "balanced_accuracy": report["balanced_accuracy"],
        "recall": recall,
        "n": report["n"],
    }


def run(args, task: str, seed: int, config, rows_out) -> None:
    m = manifests(args.data, task, args.work, seed)
    prep = m["dir"] / f"prepared_s{seed}"
    prepare(m["source"], [m["pool"]], prep, target_eval=m["test"], config=config)
    for method in args.methods:
        t0 = time.perf_counter()
        run_dir = m["dir"] / f"{method}{args.tag}_s{seed}"
        base = "source-only" if method == "adabn" else method
        base_dir = m["dir"] / f"{base}{args.tag}_s{seed}"
        if not (base_dir / "summary.json").is_file():
            train(prep, base_dir, config=config, method=base, seed=seed, device="cpu", report=False)
        model = base_dir / "model.pt"
        if method == "adabn":
            if not (run_dir / "summary.json").is_file():
                adapt(model, m["pool"], run_dir, method="adabn", guard=False, device="cpu")
            model = run_dir / "model.pt"
        summary = json.loads((base_dir / "summary.json").read_text())
        est = summary.get("estimated_target_accuracy") or {}
        shares = est.get("class_shares") or {}
        classes = summary.get("classes", [])
        abnormal = classes.index("abnormal") if "abnormal" in classes else None
        row = {
            "task": task,
            "method": method,
            "seed": seed,
            **scores(model, m["test"]),
            "pool_abnormal_share": m["pool_abnormal"],
            "estimated_abnormal_share": {
                k: v[abnormal] for k, v in shares.items() if isinstance(v, list) and abnormal is not None
            },
            "estimated_accuracy": est.get("value"),
            "seconds": time.perf_counter() - t0,
        }
        rows_out.write(json.dumps(row) + "\n")
        rows_out.flush()
        print(
            f"{task} {method} s{seed}: MAcc {row['balanced_accuracy']:.3f} acc {row['accuracy']:.3f} "
            f"recall {row['recall']} abnormal share {m['pool_abnormal']:.2f} est {row['estimated_abnormal_share']}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/physionet2016"))
    ap.add_argument("--work", type=Path, default=Path("data/heart"))
    ap.add_argument("--tasks", nargs="+", default=["e:b", "e:a"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["source-only", "adabn", "auto", "dann"])
    ap.add_argument("--rows", type=Path, default=Path("data/heart/rows.jsonl"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--tag", default="", help="appended to the run folders' names (runs with other --set values)")
    args = ap.parse_args()
    config = apply_overrides(load_config(HERE / "config.yaml"), args.overrides)
    args.rows.parent.mkdir(parents=True, exist_ok=True)
    with open(args.rows, "a") as rows_out:
        for task in args.tasks:
            for seed in args.seeds:
                run(args, task, seed, config, rows_out)


if __name__ == "__main__":
    main()
