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
import torch

from audio_dann.adaptation.estimators import label_free_estimate
from audio_dann.adaptation.target import load_target_clips
from audio_dann.api import adapt, evaluate, prepare, train
from audio_dann.config import apply_overrides, load_config
from audio_dann.nn.classifier import load_checkpoint
from audio_dann.nn.outputs import probabilities

HERE = Path(__file__).resolve().parent


def manifests(data: Path, task: str, work: Path, seed: int = 0) -> dict[str, Path]:
    """``source.csv`` (with its val split), ``pool.csv`` and ``test.csv`` for ``task`` = ``s:t``."""
    src_dbs, tgt_db = task.split(":")
    rows = list(csv.DictReader(open(data / "labels.csv")))
    if src_dbs == "rest":  # leave one database out: every other database is the source
        src_dbs = "".join(sorted({r["database"] for r in rows} - {tgt_db}))
    rng = np.random.default_rng(seed)
    out = work / task.replace(":", "_to_")
    out.mkdir(parents=True, exist_ok=True)
    src = [r for r in rows if r["database"] in set(src_dbs)]
    tgt = [r for r in rows if r["database"] == tgt_db]
    val = set(rng.permutation([r["record"] for r in src])[: max(1, len(src) // 10)])
    order = rng.permutation(len(tgt))
    pool, test = [tgt[i] for i in order[: len(tgt) // 2]], [tgt[i] for i in order[len(tgt) // 2 :]]
    audio = (data / "recordings").resolve()

    def write(name: str, items: list[dict], split: bool = False, val: set = val) -> Path:
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

    pool_val = set(rng.permutation([r["record"] for r in pool])[: max(1, len(pool) // 10)])
    return {
        "source": write("source.csv", src, split=True),
        "oracle": write("oracle.csv", pool, split=True, val=pool_val),
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


def pool_figures(model: Path, pool: Path, out: Path) -> dict:
    """The model's probabilities on the pool's windows (saved as ``out``, with each window's label for
    grading offline), every label-free figure and the pool windows' true accuracy and MAcc (report only)."""
    bundle = load_checkpoint(model)[0]
    clips = load_target_clips(bundle.config, [pool], max_clips=20000, seed=0, workers=None)
    probs = probabilities(bundle.dann, clips.x, torch.device("cpu"))
    by_path = {str(Path(r["path"]).resolve()): r["label"] for r in csv.DictReader(open(pool))}
    labels = np.array([bundle.classes.index(by_path[str(Path(clips.paths[i]).resolve())]) for i in clips.file_index])
    np.savez(out, probs=probs, labels=labels, file_index=clips.file_index, prior=bundle.calibration["class_prior"])
    pred = probs.argmax(1)
    recall = [float((pred[labels == c] == c).mean()) for c in range(probs.shape[1]) if (labels == c).any()]
    est = label_free_estimate(probs, bundle.calibration)
    return {
        "pool_window_accuracy": float((pred == labels).mean()),
        "pool_window_macc": float(np.mean(recall)),
        "estimate": {k: est.get(k) for k in ("value", "limited_by")},
        "figures": est.get("all"),
        "class_shares": est.get("class_shares"),
    }


def run(args, task: str, seed: int, config, rows_out) -> None:
    m = manifests(args.data, task, args.work, seed)
    prep = m["dir"] / f"prepared{args.tag}_s{seed}"
    prepare(m["source"], [m["pool"]], prep, target_eval=m["test"], config=config)
    for method in args.methods:
        if method == "oracle":  # the target pool with its labels: a ceiling, report only
            prep_oracle = m["dir"] / f"prepared_oracle{args.tag}_s{seed}"
            prepare(m["oracle"], [m["pool"]], prep_oracle, target_eval=m["test"], config=config)
            prep_for = prep_oracle
        else:
            prep_for = prep
        t0 = time.perf_counter()
        run_dir = m["dir"] / f"{method}{args.tag}_s{seed}"
        base = "source-only" if method == "adabn" else method
        train_as = "source-only" if base == "oracle" else base
        base_dir = m["dir"] / f"{base}{args.tag}_s{seed}"
        if not (base_dir / "summary.json").is_file():
            train(prep_for, base_dir, config=config, method=train_as, seed=seed, device="cpu", report=False)
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
            **({"tag": args.tag} if args.tag else {}),
            "seed": seed,
            **scores(model, m["test"]),
            "pool_abnormal_share": m["pool_abnormal"],
            "estimated_abnormal_share": {
                k: v[abnormal] for k, v in shares.items() if isinstance(v, list) and abnormal is not None
            },
            "estimated_accuracy": est.get("value"),
            "pool": pool_figures(model, m["pool"], run_dir.with_name(run_dir.name + "_pool.npz")),
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
