"""The guard: keep the original model when adapting it is expected to hurt, judged without labels.

``adapt`` and ``train``'s self-training stage both decide with :func:`guard_decision`, on the
label-free estimate (:func:`~audio_dann.adaptation.estimators.label_free_estimate`) of the model
before and after.
"""

from __future__ import annotations

__all__ = ["GUARD_MARGIN", "guard_decision"]

# the original is kept only when the estimate drops by more than this: about one binomial standard error
# of an estimate over a few thousand target windows (sqrt(0.9 * 0.1 / 3000) = 0.0055), so a drop within
# the noise does not undo an adaptation
GUARD_MARGIN = 0.005


def guard_decision(before: float | None, after: float | None, enabled: bool = True) -> dict:
    """Which model to keep from the estimates ``before`` and ``after`` adaptation: ``kept`` is
    ``original`` when the estimate drops by more than :data:`GUARD_MARGIN` and the guard is ``enabled``,
    else ``adapted``; ``dropped`` says whether it dropped that much (with or without the guard);
    ``judged`` is False when either estimate is missing (nothing to judge with: the adapted model is kept)."""
    judged = before is not None and after is not None
    dropped = judged and after < before - GUARD_MARGIN
    return {
        "kept": "original" if enabled and dropped else "adapted",
        "dropped": bool(dropped),
        "judged": judged,
        "margin": GUARD_MARGIN,
    }
