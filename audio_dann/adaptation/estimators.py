"""Label-free estimates of a model's accuracy on target clips (no target label is read).

- ATC (average thresholded confidence, Garg et al., ICLR 2022): on held-out *source* clips, find
  the score threshold above which the share of clips equals the source accuracy; the estimate is the
  share of target clips above it. Scores: max softmax probability (``atc-mc``) or negative entropy
  (``atc-ne``, the paper's better variant).
- DoC (difference of confidences, Guillory et al., ICCV 2021): source accuracy minus the drop in mean
  max-probability from source to target.
- Agreement (Jiang et al., ICLR 2022): the share of target clips on which two models agree.
- Prior bound (``prior-bound``): not an estimate but a ceiling. If the target's classes are about as
  frequent as the source's (``class_prior``, from the calibration clips), a model that puts a share
  ``m_c`` of the target clips on class ``c`` gets at most ``min(m_c, prior_c)`` of them right, so its
  accuracy is at most ``sum_c min(m_c, prior_c)``. It catches the failure every other estimator here
  misses, a model that collapses onto a few classes while staying confident and agreeing with its
  sibling seeds (FSDD's channel shift, pure source-only: agreement 0.82-0.90 and ATC-NE 0.64-0.92,
  accuracy 0.14-0.20, bound 0.16-0.26). It
  is only a ceiling under that assumption: a target where one class is far more common than in the
  source (label shift) lowers it below a good model's accuracy; ``label_shift=True`` (``--label-shift``)
  leaves it out of the estimate.

The toolkit's estimate (``combined``, :func:`combined_estimate`) of a single model is the critic's
(:mod:`audio_dann.adaptation.critic`), capped by the prior bound, with the critic's lower bound; bundles
without source clips, and estimates with a second model, use what follows. It is the lowest of the
agreement (when a second model is given), ATC-NE and the prior bound. Each of the three overestimates
in its own failure, and rarely underestimates: agreement where the two models make the same mistakes
(source-only seeds on synthetic -> real speech: 0.72-0.80 for 0.29-0.64), ATC-NE wherever training or
adaptation made the target predictions confident (DANN's entropy term, every self-training stage:
0.9-1.0 whatever the accuracy), the bound nowhere under its assumption. Their minimum measured 4.8
points off on average over the 72 models of the CPU grid against 10.2 for the agreement alone
(experiments/fsdd_speakers, ``agreement_table.py``). ``limited_by`` names the figure that set it.

ATC and DoC need a calibration measured on labelled source clips *for the model being estimated*:
``train`` stores it in every bundle it writes (``calibration``, carried by
:class:`~audio_dann.nn.classifier.AudioClassifier`). A model changed by ``adapt`` keeps its
original's calibration; the recipes measure how much that costs. Pure functions of probabilities,
so training, inference and adaptation share them.
"""

from __future__ import annotations

import numpy as np

from .label_shift import class_shares

__all__ = [
    "ESTIMATORS",
    "COMBINED",
    "agreement",
    "FLOOR_SHARE_GAP",
    "agreement_floor",
    "bound_warning",
    "floor_applies",
    "calibrate",
    "combined_estimate",
    "estimate",
    "label_free_estimate",
    "mean_agreement",
    "prior_bound",
    "scores",
]

COMBINED = "combined"  # the name of the toolkit's estimate (combined_estimate) in summaries and reports

ESTIMATORS = ("atc-ne", "atc-mc", "doc")


def scores(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per clip: ``mc`` max probability, ``ne`` negative entropy (nats)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return {"mc": p.max(1), "ne": (p * np.log(p)).sum(1)}


def _threshold(score: np.ndarray, accuracy: float) -> float:
    """``t`` with ``mean(score > t) == accuracy`` (as near as the clips allow)."""
    return (
        float(np.quantile(score, 1.0 - accuracy))
        if 0 < accuracy < 1
        else (float(score.min()) - 1e-9 if accuracy >= 1 else float(score.max()))
    )


def calibrate(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The calibration record of a model from its probabilities on labelled held-out source clips."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    acc = float((probs.argmax(1) == labels).mean())
    s = scores(probs)
    prior = np.bincount(labels.astype(np.int64), minlength=probs.shape[1])[: probs.shape[1]] / max(len(labels), 1)
    joint = np.zeros((probs.shape[1], probs.shape[1]))
    np.add.at(joint, (probs.argmax(1), labels.astype(np.int64)), 1.0 / max(len(labels), 1))
    return {
        "source_accuracy": acc,
        "source_mean_confidence": float(s["mc"].mean()),
        "atc_mc_threshold": _threshold(s["mc"], acc),
        "atc_ne_threshold": _threshold(s["ne"], acc),
        "n": int(len(labels)),
        "class_prior": [float(v) for v in prior],
        "joint": joint.tolist(),  # share of (predicted i, true j): what BBSE inverts (label_shift.py)
    }


def prior_bound(probs: np.ndarray, calibration: dict | None) -> float | None:
    """The most accuracy ``probs`` can have if the target's class frequencies are the calibration's
    ``class_prior`` (``sum_c min(predicted share_c, prior_c)``); None without a prior (bundles saved
    before it) or for another number of classes."""
    prior = (calibration or {}).get("class_prior")
    probs = np.asarray(probs)
    if not prior or len(probs) == 0 or probs.ndim != 2 or probs.shape[1] != len(prior):
        return None
    share = np.bincount(probs.argmax(1), minlength=len(prior)) / len(probs)
    return float(np.minimum(share, np.asarray(prior, dtype=np.float64)).sum())


def bound_warning(value: float | None, bound: float | None, margin: float = 0.1) -> str | None:
    """A one-line warning when an estimate lies more than ``margin`` above the prior bound, else None."""
    if value is None or bound is None or value <= bound + margin:
        return None
    return (
        f"warning: the estimate is {bound:.3f}, the prior bound, against {value:.3f} from the other estimators: "
        "the model's predictions concentrate on few classes, and if the target's classes are as frequent as "
        "the source's it gets at most the lower figure; if the target's classes really are that skewed, "
        "rerun with --label-shift to leave the bound out"
    )


def combined_estimate(
    figures: dict, agreement_value: float | None = None, label_shift: bool = False, floor: float | None = None
) -> dict:
    """The toolkit's estimate from a model's ``figures`` (:func:`estimate`, with the ``critic`` and
    ``critic-bound`` of :func:`~audio_dann.adaptation.critic.critic_estimate` where the bundle carries
    source clips) and, when a second model was given, their ``agreement_value``.

    ``value`` is the lowest of: the agreement, ATC-NE and the prior bound with a second model (4.8 points
    off on the FSDD grid); else the critic and the prior bound; else (a bundle without source clips)
    ATC-NE and the prior bound. The prior bound is left out with ``label_shift``. ``lower_bound`` is the
    lowest of ``value`` and the critic's bound (``value`` itself without a critic): what the guards
    decide with. Also ``limited_by`` (the figure that set ``value``), ``combines``, ``prior_bound`` and,
    when the prior bound set it well below the others, a ``warning``; ``{}`` when there is nothing to
    combine (no calibration, no source clips and no second model).

    ``floor`` (a self-trained model's :func:`agreement_floor`) raises the critic's figure to at least
    itself before the prior bound caps it (``raised_by`` says so), where :func:`floor_applies`: on the
    demo the critic took a self-trained model's right predictions for mistakes (0.58 for a true 0.97)."""
    critic = figures.get("critic")
    raised = (
        floor is not None
        and critic is not None
        and agreement_value is None
        and floor > critic
        and floor_applies(figures.get("prior-bound"), label_shift)
    )
    first = {"agreement": agreement_value} if agreement_value is not None else {"critic": critic}
    if raised:  # the floor sets the figure, and limited_by names it
        first = {"agreement-adabn": float(floor)}
    if agreement_value is not None or critic is None:
        first["atc-ne"] = figures.get("atc-ne")
    parts = {**first, "prior-bound": None if label_shift else figures.get("prior-bound")}
    parts = {k: float(v) for k, v in parts.items() if v is not None}
    if not parts:
        return {}
    name = min(parts, key=lambda k: parts[k])
    bound = figures.get("critic-bound")
    lower = parts[name] if bound is None else min(parts[name], float(bound))
    out = {
        "estimator": COMBINED,
        "value": parts[name],
        "lower_bound": lower,
        "lower_bound_by": "critic" if bound is not None and bound < parts[name] else name,
        "limited_by": name,
        "combines": sorted(parts),
        "prior_bound": figures.get("prior-bound"),
        "label_shift": label_shift,
        **({"raised_by": "agreement with the network before adaptation, under AdaBN"} if raised else {}),
    }
    others = [v for k, v in parts.items() if k != "prior-bound"]
    warning = bound_warning(min(others), parts[name]) if name == "prior-bound" and others else None
    if warning:
        out["warning"] = warning
    return out


def estimate(probs: np.ndarray, calibration: dict | None) -> dict[str, float]:
    """Every estimator's figure for target probabilities ``(N, C)``; ``{}`` without a calibration."""
    if not calibration or len(probs) == 0:
        return {}
    s = scores(probs)
    bound = prior_bound(probs, calibration)
    return {
        **({} if bound is None else {"prior-bound": bound}),
        "atc-ne": float((s["ne"] > calibration["atc_ne_threshold"]).mean()),
        "atc-mc": float((s["mc"] > calibration["atc_mc_threshold"]).mean()),
        "doc": float(
            np.clip(calibration["source_accuracy"] - (calibration["source_mean_confidence"] - s["mc"].mean()), 0.0, 1.0)
        ),
    }


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Share of clips on which two models' top classes agree."""
    return float((np.asarray(probs_a).argmax(1) == np.asarray(probs_b).argmax(1)).mean())


# the floor is left out where the predicted class shares lie further than this (total variation) from the
# source's: a sign of label shift, under which a network and its self-trained copy share their mistakes
FLOOR_SHARE_GAP = 0.1


def floor_applies(prior_bound_value: float | None, label_shift: bool = False) -> bool:
    """Whether :func:`agreement_floor` may raise an estimate: not with ``label_shift``, and only where the
    model's predicted class shares are within :data:`FLOOR_SHARE_GAP` of the source's (the prior bound,
    ``1 -`` their total variation distance, at least ``1 - FLOOR_SHARE_GAP``). On heart sounds e -> a
    (a target with eight times the source's share of abnormal recordings) the agreement said 0.61 for a
    stage at 0.42, its shares 0.39 from the source's; on FSDD and the demo the gap was 0.01-0.09."""
    return not label_shift and prior_bound_value is not None and prior_bound_value >= 1.0 - FLOOR_SHARE_GAP


def agreement_floor(probs: np.ndarray, before_adabn_probs: np.ndarray) -> float:
    """A self-trained model's floor for its estimate: its agreement with the network it started from,
    read with the target's batch-norm statistics (AdaBN, the stage's own first step), on the same clips.

    The stage moves the network's predictions away from AdaBN's where it corrects them; a stage that
    breaks many right predictions lowers its agreement as much. Never above the truth on the 15
    stage models of FSDD A, B, C and the demo (``recipes/estimates/grade.py``), 9.9 points under on average.
    It fails where both make the same mistakes: under label shift (heart sounds e -> a: 0.61 for a true
    0.42), which :func:`floor_applies` guards against, and where the network before the stage is weak
    (synthetic -> real speech, AdaBN at 0.37: 0.58 for a true 0.46, shares within 0.1 of the source's).
    So it raises the point estimate only; the lower bound stays the critic's."""
    return agreement(probs, before_adabn_probs)


def mean_agreement(probs: np.ndarray, others: list[np.ndarray]) -> float | None:
    """The mean of ``probs``'s agreement with each of ``others`` (None without any): with two reference
    models instead of one, the estimate measured 4.7 points off on average over the 180 CPU recipe models
    instead of 5.1 (a single reference that happens to be much worse drags it down less)."""
    return float(np.mean([agreement(probs, o) for o in others])) if others else None


def label_free_estimate(
    probs: np.ndarray,
    calibration: dict | None,
    reference_probs: list[np.ndarray] = (),
    label_shift: bool = False,
    critic: dict | None = None,
    floor: float | None = None,
) -> dict:
    """The toolkit's estimate of a model's accuracy from its target probabilities ``(N, C)``: every
    figure (:func:`estimate`, plus the mean agreement with each of ``reference_probs``, other models'
    probabilities on the same clips, and the ``critic`` of
    :func:`~audio_dann.adaptation.critic.critic_estimate`) and their combination
    (:func:`combined_estimate`, with ``floor`` for a self-trained model), with ``all`` holding every
    figure; ``{}`` when there is nothing to estimate from. The one place train, adapt, estimate and
    evaluate assemble it."""
    figures = estimate(probs, calibration)
    if critic:
        figures["critic"], figures["critic-bound"] = critic["value"], critic["lower_bound"]
    if floor is not None:
        figures["agreement-adabn"] = float(floor)
    agreed = mean_agreement(probs, list(reference_probs))
    if agreed is not None:
        figures["agreement"] = agreed
    combined = combined_estimate(figures, agreed, label_shift, floor)
    if not combined:
        return {}
    shares = class_shares(probs, calibration)
    caution = {"caution": critic["caution"]} if critic and critic.get("caution") else {}
    return {**combined, "all": figures, **({"class_shares": shares} if shares else {}), **caution}
