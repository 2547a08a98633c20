"""Classification metrics against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

from audio_dann.infer.metrics import (
    balanced_accuracy,
    classification_report,
    confusion_matrix,
    macro_f1,
    per_class_recall,
    wilson_interval,
)


def test_metrics_against_hand_counts():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y_true, y_pred, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    recall = per_class_recall(cm)
    np.testing.assert_allclose(recall[:3], [2 / 3, 1 / 2, 1.0])
    assert np.isnan(recall[3])
    assert balanced_accuracy(cm) == pytest.approx((2 / 3 + 1 / 2 + 1.0) / 3)  # class 3 has no clip: left out
    # F1 per class: 0.8, 0.5, 2/3; class 3 is absent from both and left out
    assert macro_f1(y_true, y_pred) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)  # the textbook Wilson interval for 8/10
    rep = classification_report(y_true, y_pred, ["a", "b", "c", "d"])
    assert rep["accuracy"] == pytest.approx(4 / 6) and rep["n"] == 6 and rep["per_class"]["d"]["recall"] is None
    assert rep["balanced_accuracy"] == pytest.approx(balanced_accuracy(cm))
