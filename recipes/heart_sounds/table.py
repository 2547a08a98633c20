"""The recipe's table from its rows: per task and method, the mean over seeds with a 95% interval
(Student's t over seeds) of recording-level MAcc, accuracy and each class's recall, and the share of the
gap between pure source-only and the target oracle that each method closes (left out where the oracle is
not at least 2 points above source-only).

    python recipes/heart_sounds/table.py data/heart/rows.jsonl [more rows files]

A (task, method, seed) given twice counts once (the last row). Methods tagged in their rows (``--tag``)
are kept apart from the untagged ones.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

ORDER = ["oracle", "source-only", "adabn", "auto", "dann"]
NAMES = {
    "oracle": "target oracle",
    "source-only": "pure source-only",
    "adabn": "+ AdaBN",
    "auto": "`train` default",
    "dann": "`--method dann`",
    "auto_tsound": "`train` default + the target's sound (`train.target_background=0.5`, `train.target_channel=0.5`)",
    "auto_divest": "default, `train.diversity_target=estimated`",
    "auto_balanced": "default, `train.class_weights=balanced`",
    "source-only_balanced": "source-only, `train.class_weights=balanced`",
}
MIN_GAP = 0.02  # a smaller gap between source-only and the oracle is not a gap to close


def interval(values: list[float]) -> str:
    """``mean ± half-width`` of a 95% t interval (the mean alone for one value)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return f"{v.mean():.3f}"
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return f"{v.mean():.3f} ± {half:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", type=Path)
    args = ap.parse_args()
    rows = {}
    for path in args.rows:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            rows[(r["task"], r["method"] + r.get("tag", ""), r["seed"])] = r
    by = defaultdict(list)
    for (task, method, _), r in sorted(rows.items()):
        by[(task, method)].append(r)
    print("| task | method | seeds | MAcc | accuracy | abnormal recall | normal recall | gap closed (MAcc) |")
    print("|---|---|---|---|---|---|---|---|")
    for task in sorted({t for t, _ in by}):
        methods = sorted({m for t, m in by if t == task}, key=lambda m: (ORDER.index(m) if m in ORDER else 9, m))
        base = np.mean([r["balanced_accuracy"] for r in by.get((task, "source-only"), [])] or [np.nan])
        top = np.mean([r["balanced_accuracy"] for r in by.get((task, "oracle"), [])] or [np.nan])
        for m in methods:
            rs = by[(task, m)]
            macc = [r["balanced_accuracy"] for r in rs]
            closable = m not in ("oracle", "source-only") and top - base >= MIN_GAP
            gap = (np.mean(macc) - base) / (top - base) if closable else np.nan
            print(
                f"| {task.replace(':', ' -> ')} | {NAMES.get(m, m)} | {','.join(str(r['seed']) for r in rs)} "
                f"| {interval(macc)} | {interval([r['accuracy'] for r in rs])} "
                f"| {interval([r['recall']['abnormal'] for r in rs])} | {interval([r['recall']['normal'] for r in rs])} "
                f"| {'-' if np.isnan(gap) else f'{gap:.0%}'} |"
            )


if __name__ == "__main__":
    main()
