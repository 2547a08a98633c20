"""How well does each label-free criterion choose runs and checkpoints? (issue: model selection)

    python experiments/fsdd_speakers/selection_table.py data/fsdd/runs/sweep_*/B_dann_s0

Across runs: each criterion's value at every run's final checkpoint against the run's target test
accuracy (report only): Spearman rank correlation, and the regret = best target accuracy among the
runs minus the accuracy of the run the criterion ranks first. Within runs: for every run, the
checkpoint each criterion would pick, and its target accuracy against the best checkpoint's.
Target labels are used here only to grade the criteria, never to choose.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from audio_dann.report.ranking import spearman
from audio_dann.training.criteria import CRITERIA, score


def main(runs: list[Path]) -> None:
    histories = {}
    for run in runs:
        histories[run] = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    print("## Across runs (final checkpoint of each run)\n")
    header = "| run | " + " | ".join(CRITERIA) + " | target test acc (report only) |"
    print(header + "\n" + "|---" * (len(CRITERIA) + 2) + "|")
    finals = {run: h[-1] for run, h in histories.items()}
    for run, m in finals.items():
        vals = [m.get("selection", {}).get(key) for key in CRITERIA.values()]
        print(
            f"| {run.parent.name} | "
            + " | ".join("-" if v is None else f"{v:.4f}" for v in vals)
            + f" | {m['report_only']['target_test_acc']:.4f} |"
        )
    accs = np.array([m["report_only"]["target_test_acc"] for m in finals.values()])
    print("\n| criterion | Spearman vs target acc | regret of its pick (points) |\n|---|---|---|")
    for name in CRITERIA:
        scores = [score(name, m) for m in finals.values()]
        if None in scores:
            continue
        pick = int(np.argmax(scores))
        print(f"| {name} | {spearman(scores, accs):+.2f} | {100 * (accs.max() - accs[pick]):.1f} |")
    print("\n## Within runs (checkpoint picked by each criterion, mean over runs)\n")
    print(
        "| criterion | target acc of its pick | best checkpoint (forbidden oracle) | regret (points) |\n|---|---|---|---|"
    )
    for name in CRITERIA:
        picked, best = [], []
        for h in histories.values():
            s = [score(name, m) for m in h]
            if None in s:
                break
            picked.append(h[int(np.argmax(s))]["report_only"]["target_test_acc"])
            best.append(max(m["report_only"]["target_test_acc"] for m in h))
        else:
            print(
                f"| {name} | {np.mean(picked):.4f} | {np.mean(best):.4f} | {100 * (np.mean(best) - np.mean(picked)):.1f} |"
            )


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
