"""Classification metrics and confidence intervals (pure functions on numpy arrays)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion
from sklearn.metrics import f1_score

__all__ = [
    "confusion_matrix",
    "per_class_recall",
    "macro_f1",
    "balanced_accuracy",
    "wilson_interval",
    "classification_report",
]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = clips of true class i predicted as j (scikit-learn's, every class a row)."""
    return _sk_confusion(np.asarray(y_true), np.asarray(y_pred), labels=np.arange(n_classes)).astype(np.int64)


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    support = cm.sum(1)
    return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the classes present in the truth or the predictions (scikit-learn's macro average)."""
    if len(y_true) == 0:
        return float("nan")
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in the truth: a rare class counts as much as a common one."""
    recall = per_class_recall(cm)
    return float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan")


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = correct / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """The ``evaluate`` JSON: accuracy (+ 95% CI), macro-F1, per-class recall, confusion, classes."""
    cm = confusion_matrix(y_true, y_pred, len(classes))
    recall = per_class_recall(cm)
    n = int(len(y_true))
    correct = int(np.trace(cm))
    lo, hi = wilson_interval(correct, n)
    return {
        "accuracy": correct / n if n else float("nan"),
        "accuracy_ci95": [lo, hi],
        "macro_f1": macro_f1(np.asarray(y_true), np.asarray(y_pred)),
        "balanced_accuracy": balanced_accuracy(cm),
        "n": n,
        "per_class": {
            c: {"recall": (None if math.isnan(r) else float(r)), "support": int(cm[i].sum())}
            for i, (c, r) in enumerate(zip(classes, recall))
        },
        "confusion": cm.tolist(),
        "classes": list(classes),
    }
