"""DCASE 2020 Task 1A device-shift recipe on the official development-set layout.

    python recipes/dcase_devices/run_recipe.py --dataset TAU-urban-acoustic-scenes-2020-mobile-development \
        --work data/dcase [--seeds 0] [--methods source-only dann] [--set train.steps=6000 ...]

Layout read (as distributed): ``meta.csv`` (tab-separated: filename, scene_label, identifier,
source_label) and ``evaluation_setup/fold1_train.csv`` / ``fold1_evaluate.csv`` (tab-separated,
with a header, first two columns filename and scene_label). Source = device ``a`` files of
fold1_train (labelled); each other device's fold1_train files = one unlabelled target domain;
test = fold1_evaluate, every device, labels for reporting only. Devices absent from fold1_train
(s4-s6) are the unseen devices.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from audio_dann.api import evaluate, prepare, train
from audio_dann.config import load_config

HERE = Path(__file__).resolve().parent


def _read_tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise SystemExit(f"error: {path}: not found (expected the official DCASE 2020 Task 1A development layout)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def device_of(filename: str) -> str:
    """``audio/airport-barcelona-0-0-a.wav`` -> ``a``."""
    return Path(filename).stem.rsplit("-", 1)[-1]


def write_manifests(dataset: Path, work: Path, source_device: str = "a") -> dict[str, Path]:
    """Source (device a train), target (other devices' train, domain = device), test (fold1_evaluate)."""
    meta = {r["filename"]: r for r in _read_tsv(dataset / "meta.csv")}
    train_rows = _read_tsv(dataset / "evaluation_setup" / "fold1_train.csv")
    test_rows = _read_tsv(dataset / "evaluation_setup" / "fold1_evaluate.csv")
    work.mkdir(parents=True, exist_ok=True)

    def device(fn: str) -> str:
        return meta.get(fn, {}).get("source_label") or device_of(fn)

    parts = {
        "source": [
            (r["filename"], r["scene_label"], source_device)
            for r in train_rows
            if device(r["filename"]) == source_device
        ],
        "target": [
            (r["filename"], "", device(r["filename"])) for r in train_rows if device(r["filename"]) != source_device
        ],
        "test": [(r["filename"], r["scene_label"], device(r["filename"])) for r in test_rows],
    }
    out = {}
    for name, rows in parts.items():
        out[name] = work / f"{name}.csv"
        with open(out[name], "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "domain"])
            w.writerows((str((dataset / fn).resolve()), label, dom) for fn, label, dom in rows)
    seen = sorted({d for _, _, d in parts["target"]})
    unseen = sorted({d for _, _, d in parts["test"]} - set(seen) - {source_device})
    (work / "devices.json").write_text(json.dumps({"source": source_device, "seen": seen, "unseen": unseen}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("data/dcase"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--methods", nargs="+", default=["source-only", "dann"])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    config = load_config(HERE / "config.yaml", args.overrides)
    m = write_manifests(args.dataset, args.work)
    devices = json.loads((args.work / "devices.json").read_text())
    prepare(m["source"], [m["target"]], args.work / "prepared", target_eval=m["test"], config=config)
    results = []
    for seed in args.seeds:
        for method in args.methods:
            run = args.work / "runs" / f"{method}_s{seed}"
            if not (run / "summary.json").exists():
                train(
                    args.work / "prepared",
                    run,
                    config=config,
                    method=method,
                    seed=seed,
                    resume=(run / "last.pt").exists(),
                )
            ev = evaluate(run / "model.pt", m["test"])
            per = {d: v["accuracy"] for d, v in ev.get("per_domain", {}).items()}
            row = {
                "method": method,
                "seed": seed,
                "overall": ev["accuracy"],
                "per_device": per,
                "seen": float(np.mean([per[d] for d in devices["seen"] if d in per])) if devices["seen"] else None,
                "unseen": float(np.mean([per[d] for d in devices["unseen"] if d in per]))
                if devices["unseen"]
                else None,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    names = [devices["source"], *devices["seen"], *devices["unseen"]]
    print("| method | seed | overall | " + " | ".join(names) + " | seen | unseen |")
    print("|---" * (len(names) + 5) + "|")
    for r in results:
        cells = [f"{r['per_device'].get(d, float('nan')):.3f}" for d in names]
        print(
            f"| {r['method']} | {r['seed']} | {r['overall']:.3f} | "
            + " | ".join(cells)
            + f" | {r['seen'] if r['seen'] is None else round(r['seen'], 3)} | "
            f"{r['unseen'] if r['unseen'] is None else round(r['unseen'], 3)} |"
        )


if __name__ == "__main__":
    main()
