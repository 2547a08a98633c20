"""Ranking finished runs by a label-free criterion, with the criterion's rank correlation to
target accuracy (report only) where the runs logged it."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr

from ..errors import RunError
from ..training.criteria import CRITERIA, score
from ..training.run_folder import read_run

__all__ = ["rank_runs", "spearman"]


def rank_runs(runs, criterion: str) -> dict:
    """Each finished run's criteria at its selected checkpoint, ranked by ``criterion`` (best first).

    Where the runs logged target-test accuracy (report only) it is included, with the Spearman
    correlation between the criterion and that accuracy and the regret (best accuracy among the
    runs minus the accuracy of the run the criterion picks).
    """
    rows, finished = [], [read_run(r) for r in runs]
    tasks = {tuple(f.summary.get("prepared") or ()) for f in finished}
    if len(tasks) > 1:
        raise RunError(
            "the runs were trained on different prepared folders ("
            + "; ".join(", ".join(t) or "?" for t in sorted(tasks))
            + "): rank runs of one task at a time"
        )
    for run in finished:
        at = run.selected()
        row = {"run": str(run.path), "step": at.get("step")}
        for name in CRITERIA:
            row[name] = at.get("selection", {}).get(CRITERIA[name], at.get(CRITERIA[name]))
        shipped = run.summary.get("report_only", {}).get("target_test_acc_shipped")  # after the stage, if any
        row["target_test_acc"] = shipped if shipped is not None else at.get("report_only", {}).get("target_test_acc")
        row["_score"] = score(criterion, at)
        rows.append(row)
    rows.sort(key=lambda r: -math.inf if r["_score"] is None else r["_score"], reverse=True)
    result = {"criterion": criterion, "runs": [{k: v for k, v in r.items() if k != "_score"} for r in rows]}
    accs = [r["target_test_acc"] for r in rows]
    scores = [r["_score"] for r in rows]
    if len(rows) > 1 and None not in accs and None not in scores:
        result["spearman"] = spearman(scores, accs)
        result["regret"] = max(accs) - accs[0]
    return result


def spearman(a, b) -> float:
    """Spearman rank correlation (scipy; average ranks for ties); NaN where either side is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
