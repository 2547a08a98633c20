"""The guard: keep the original model when adapting it is expected to hurt, judged without labels.

``adapt`` and ``train``'s self-training stage both decide with :func:`guard_decision`, on the
label-free estimate (:func:`~audio_dann.adaptation.estimators.label_free_estimate`) of the model
before and after: the adapted model is kept unless its point estimate falls below the original's lower
bound, what the original is expected to reach at the least. Replayed on the 37 (source-only, adapted)
pairs of the FSDD and heart-sound grids (``recipes/estimates/grade.py``), this rule kept the worse
model by more than 2 points on 8 pairs (0 of FSDD's 18, all heart-sound ones where every figure is
wrong), against 15 when comparing the two lower bounds and 9 when comparing the two point estimates.
"""

from __future__ import annotations

__all__ = ["GUARD_MARGIN", "guard_decision"]

# the original is kept only when the adapted model's estimate lies more than this under the original's lower
# bound: about one binomial standard error
# of an estimate over a few thousand target windows (sqrt(0.9 * 0.1 / 3000) = 0.0055), so a drop within
# the noise does not undo an adaptation
GUARD_MARGIN = 0.005


def guard_decision(before: float | None, after: float | None, enabled: bool = True) -> dict:
    """Which model to keep from ``before`` (the original's lower bound) and ``after`` (the adapted
    model's point estimate): ``kept`` is ``original`` when ``after`` lies more than :data:`GUARD_MARGIN`
    under ``before`` and the guard is ``enabled``, else ``adapted``; ``dropped`` says whether it did
    (with or without the guard); ``judged`` is False when either figure is missing (nothing to judge
    with: the adapted model is kept)."""
    judged = before is not None and after is not None
    dropped = judged and after < before - GUARD_MARGIN
    return {
        "kept": "original" if enabled and dropped else "adapted",
        "dropped": bool(dropped),
        "judged": judged,
        "margin": GUARD_MARGIN,
    }
