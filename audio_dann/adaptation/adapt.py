"""``adapt``: a model bundle and unlabelled target audio in, an adapted bundle out, with a label-free
estimate of target accuracy before and after and a guard that keeps the original when adaptation is
expected to hurt."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from ..errors import OptionError
from ..files import check_output_dir, output_lock, path_list, shown_paths, write_json
from ..nn.classifier import load_checkpoint
from ..nn.outputs import probabilities
from ..runtime import resolve_device
from .critic import critic_estimate
from .estimators import agreement, label_free_estimate
from .floor import floor_holds, floor_of, starting_state, stored_floor
from .guard import guard_decision
from .methods import DEFAULT_METHOD, METHODS, AdaptConfig, adapt_network
from .references import load_references
from .target import load_target_clips

__all__ = ["adapt"]


def adapt(
    model: str | Path,
    targets: Sequence[str | Path] | str | Path,
    out: str | Path,
    *,
    method: str = DEFAULT_METHOD,
    config: AdaptConfig = AdaptConfig(),
    guard: bool = True,
    reference: str | Path | list[str | Path] | None = None,
    label_shift: bool = False,
    max_clips: int = 20000,
    workers: int | None = None,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> dict:
    """Adapt the bundle ``model`` to unlabelled ``targets`` (folders or manifests) into the run folder ``out``.

    Writes ``out/model.pt`` (a normal bundle recording the adaptation under ``adaptation``) and
    ``out/summary.json`` with the label-free estimate of target accuracy before and after
    (:func:`audio_dann.adaptation.estimators.label_free_estimate`; with ``reference`` models, each is
    adapted alike for the estimate after) and their lower bounds. With ``guard`` (the default) the
    original weights are kept when the estimate after falls more than
    :data:`audio_dann.adaptation.guard.GUARD_MARGIN` below the lower bound before.
    ``label_shift`` leaves the prior bound out of the estimate. ``progress(done, total)`` follows the
    decoded target files, ``on_epoch(done, total)`` the epochs of the trained methods (all but AdaBN).
    """
    if method not in METHODS:
        raise OptionError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    t0 = time.perf_counter()
    reference = path_list(reference)  # once: a generator would be spent by the first look
    out = check_output_dir(out, inputs=[model, *path_list(targets), *reference], writes=("model.pt", "summary.json"))
    with output_lock(out):
        original, bundle = load_checkpoint(model)
        refs = [
            r.dann
            for r in load_references(reference, original.classes, original.config.features, model=original, own=model)
        ]  # a bad one fails before any work
        dev = resolve_device(device)
        clips = load_target_clips(
            original.config, targets, max_clips=max_clips, seed=config.seed, workers=workers, progress=progress
        )
        adapted_net, info = adapt_network(original.dann, clips, method, config, dev, on_epoch=on_epoch)
        before, after, est = _before_and_after(original, adapted_net, refs, clips, method, config, dev, label_shift)
        decision = guard_decision(est["before"].get("lower_bound"), est["after"].get("value"), enabled=guard)
        final = copy.deepcopy(original).cpu()
        if decision["kept"] == "adapted":  # a later estimate's floor reads the network self-training started from
            final.before_self_training = starting_state(original.dann) if floor_holds(original, method) else None
            final.dann = adapted_net.cpu()
        record = {
            "method": method,
            "kept": decision["kept"],
            "targets": [str(t) for t in path_list(targets)],
            "clips": len(clips),
            "files": len(clips.paths),
            "files_skipped": len(clips.skipped),
            "skipped": [{"file": str(f), "reason": r} for f, r in clips.skipped],
            "settings": asdict(config),
            "estimated_accuracy": {
                **_estimate_record(est, decision["kept"], reference, label_shift),
                "dropped": decision["dropped"],
            },
            "agreement_with_original": agreement(before, after),
            **info,
        }
        final.adaptation = [*original.adaptation, record]
        final.save(out / "model.pt", summary=bundle.get("summary"))
        summary = {
            "model": str(model),
            "out": str(out / "model.pt"),
            **record,
            "all_estimates": {k: e.get("all", {}) for k, e in est.items()},
            "device": str(dev),
            "seconds": time.perf_counter() - t0,
            "guard": guard,
            "note": "estimates use no target label" if decision["judged"] else _NO_ESTIMATE,
            "adapted_before": _adapted_before(original),
        }
        write_json(out / "summary.json", summary)
    return summary


_NO_ESTIMATE = "no calibration in the bundle and no --reference: no estimate, the guard cannot judge"


def _adapted_before(original) -> list[str]:
    """The methods the bundle had already been through and kept (e.g. train's own stage)."""
    return [r.get("method") for r in original.adaptation if r.get("kept", "adapted") != "original"]


def _before_and_after(original, adapted_net, refs, clips, method, config, dev, label_shift):
    """The model's target probabilities before and after, and the label-free estimate of each (with
    ``refs``, each reference adapted alike for the estimate after; without, a self-trained model's
    estimate is raised to its agreement with the network it started from under AdaBN,
    :mod:`~audio_dann.adaptation.floor`: the original, for the model after; for the original itself, the
    network the bundle keeps where it was self-trained before, as by ``train``'s stage)."""
    before = probabilities(original.dann.to(dev), clips.x, dev)
    after = probabilities(adapted_net.to(dev), clips.x, dev)
    ref_before = [probabilities(r.to(dev), clips.x, dev) for r in refs]
    ref_after = [probabilities(adapt_network(r, clips, method, config, dev)[0].to(dev), clips.x, dev) for r in refs]
    critic = {
        k: critic_estimate(net, original.source_sample, clips.x, target_files=clips.file_index, device=dev)
        for k, net in (("before", original.dann), ("after", adapted_net))
    }
    floor = {"before": None, "after": None}
    if not refs:  # a self-trained model: its agreement with the network it started from, under AdaBN
        floor["before"] = stored_floor(original, before, clips.x, dev)  # e.g. train's own stage
        floor["after"] = floor_of(after, original.dann, clips.x, dev) if floor_holds(original, method) else None
    est = {
        "before": label_free_estimate(
            before, original.calibration, ref_before, label_shift, critic["before"], floor["before"]
        ),
        "after": label_free_estimate(
            after, original.calibration, ref_after, label_shift, critic["after"], floor["after"]
        ),
    }
    return before, after, est


def _estimate_record(est: dict, kept: str, reference: list, label_shift: bool = False) -> dict:
    """``estimated_accuracy`` of the summary: the estimate before and after, which figure set each, the
    prior bounds and, where the kept model's estimate is its prior bound well below the others, the warning."""
    if not est["before"] and not est["after"]:
        return {"estimator": None, "before": None, "after": None, "label_shift": label_shift}
    record = {
        "estimator": est["after"].get("estimator") or est["before"].get("estimator"),
        "before": est["before"].get("value"),
        "after": est["after"].get("value"),
        "lower_bound": {k: e.get("lower_bound") for k, e in est.items()},
        "guard_compares": "the lower bound before, the estimate after",
        "limited_by": {k: e.get("limited_by") for k, e in est.items()},
        "prior_bound": {k: e.get("prior_bound") for k, e in est.items()},
        "label_shift": label_shift,
        **({"reference": shown_paths(reference)} if reference else {}),
    }
    chosen = est["before" if kept == "original" else "after"]
    return {**record, **{k: chosen[k] for k in ("warning", "caution") if chosen.get(k)}}
