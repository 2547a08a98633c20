"""Estimating the target's class shares without labels (label shift): EM and BBSE."""

from __future__ import annotations

import numpy as np
import pytest

from audio_dann.adaptation.estimators import calibrate, label_free_estimate
from audio_dann.adaptation.label_shift import bbse_class_shares, class_shares, em_class_shares


def _posteriors(rng, labels: np.ndarray, prior: np.ndarray, sharpness: float = 1.0) -> np.ndarray:
    """Bayes posteriors of a 1-D two-Gaussian problem under the class ``prior`` (calibrated by construction)."""
    x = rng.normal(loc=sharpness * (2 * labels - 1), scale=1.0)
    like = np.stack([np.exp(-((x + sharpness) ** 2) / 2), np.exp(-((x - sharpness) ** 2) / 2)], 1)
    post = like * prior
    return post / post.sum(1, keepdims=True)


@pytest.mark.parametrize("target_abnormal", [0.09, 0.21, 0.71])
def test_em_and_bbse_recover_the_target_shares_where_the_model_alone_does_not(target_abnormal):
    rng = np.random.default_rng(0)
    source = np.array([0.91, 0.09])  # a source like PhysioNet's database e: 9% abnormal
    val_y = (rng.random(4000) < source[1]).astype(int)
    calibration = calibrate(_posteriors(rng, val_y, source), val_y)
    tgt_y = (rng.random(6000) < target_abnormal).astype(int)
    probs = _posteriors(rng, tgt_y, source)  # the source-trained model on the target
    truth = tgt_y.mean()
    em = em_class_shares(probs, np.asarray(calibration["class_prior"]))
    bbse = bbse_class_shares(probs, np.asarray(calibration["joint"]))
    assert abs(em[1] - truth) < 0.03 and abs(bbse[1] - truth) < 0.08, (em, bbse, truth)  # BBSE: noisier
    if target_abnormal > 0.5:  # the model's own predicted share is pulled towards the source's
        assert abs(probs.argmax(1).mean() - truth) > 0.1
    shares = class_shares(probs, calibration)
    assert shares["by"] == "bbse" and shares["estimate"] == shares["bbse"] and set(shares) >= {"predicted", "em"}
    est = label_free_estimate(probs, calibration)
    assert est["class_shares"]["estimate"][1] == pytest.approx(bbse[1])


def test_bbse_says_nothing_where_the_confusion_cannot_be_inverted():
    joint = np.array([[0.5, 0.5], [0.0, 0.0]])  # class 1 never predicted on the source
    assert bbse_class_shares(np.array([[0.9, 0.1]] * 10), joint) is None
    assert class_shares(np.zeros((0, 2)), None) is None
    no_calibration = class_shares(np.array([[0.2, 0.8], [0.6, 0.4]]), None)
    assert no_calibration["by"] == "predicted" and no_calibration["estimate"] == [0.5, 0.5]
