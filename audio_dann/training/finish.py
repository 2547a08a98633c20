"""What follows the training loop: the plan's self-training stage on the target pool, the selected
model's calibration and label-free estimate, and the run summary (report-only target accuracies
kept apart under ``report_only``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..adaptation.critic import critic_estimate
from ..adaptation.estimators import calibrate, label_free_estimate
from ..adaptation.floor import stored_floor
from ..adaptation.stage import LabelledClips, StagePlan, run_stage
from ..config import Config
from ..data.store import PreparedData
from ..nn.classifier import AudioClassifier, load_checkpoint
from ..nn.outputs import predict_logits, probabilities
from .clips import Clips
from .loop import TrainState
from .plan import Plan
from .run_folder import REPORT_ONLY_NOTE

__all__ = ["self_training_stage", "calibrate_and_estimate", "test_accuracy", "run_summary", "prepared_paths"]


def prepared_paths(prep: PreparedData) -> list[str]:
    """The prepared folders of a run, resolved: what the summary and the checkpoints record."""
    return [str(Path(r).resolve()) for r in (prep.roots or [prep.root])]


def test_accuracy(model: AudioClassifier, clips: Clips, device: torch.device, amp: str = "off") -> float:
    """Clip accuracy of ``model`` on the target test clips (report only), on one process."""
    pred = predict_logits(model.dann.to(device), clips.test_x, device=device, amp=amp).argmax(1).numpy()
    return float((pred == np.asarray(clips.test_y)).mean())


def self_training_stage(
    model: AudioClassifier,
    clips: Clips,
    plan: Plan,
    config: Config,
    device: torch.device,
    members: list[tuple[str, Path]],
    label_shift: bool,
) -> dict:
    """The plan's self-training stage on the target pool (``model`` changes in place)."""
    cfg = config.train
    stage = StagePlan(
        plan.stage,
        cfg.self_training_epochs,
        cfg.self_training_threshold,
        cfg.self_training_max_clips,
        cfg.self_training_guard,
        cfg.seed,
        cfg.ensemble_teacher,
        cfg.diversity_target,
    )
    nets = [(name, load_checkpoint(path / "model.pt")[0].dann) for name, path in members]
    test = LabelledClips(clips.test_x, clips.test_y) if len(clips.test_y) else None
    record = run_stage(
        model,
        clips.pool_x,
        clips.pool_files,
        stage,
        device,
        source_val=LabelledClips(clips.val_x, clips.val_y, clips.val_files),
        members=nets,
        test=test,
        label_shift=label_shift,
    )
    if "report_only" in record.get("ensemble", {}):
        record["ensemble"]["report_only"]["note"] = REPORT_ONLY_NOTE
    return record


def calibrate_and_estimate(
    model: AudioClassifier,
    clips: Clips,
    device: torch.device,
    references: list[AudioClassifier] = (),
    label_shift: bool = False,
) -> tuple[dict | None, dict | None]:
    """The selected model's calibration on source validation clips, and the label-free estimate of its
    accuracy on the unlabelled target pool (:func:`audio_dann.adaptation.estimators.label_free_estimate`,
    with the critic on ``model.source_sample``, and for a model this run's stage self-trained, the floor
    of :mod:`audio_dann.adaptation.floor`)."""
    if len(clips.val_y) == 0:
        return None, None
    calibration = calibrate(probabilities(model.dann.to(device), clips.val_x, device), clips.val_y)
    if clips.pool_x is None or len(clips.pool_x) == 0:
        return calibration, None
    pool_files = np.unique(np.asarray(clips.pool_files), return_inverse=True)[1]
    probs = probabilities(model.dann, clips.pool_x, device)
    est = label_free_estimate(
        probs,
        calibration,
        [probabilities(r.dann.to(device), clips.pool_x, device) for r in references],
        label_shift,
        critic=critic_estimate(model.dann, model.source_sample, clips.pool_x, target_files=pool_files, device=device),
        floor=None if references else stored_floor(model, probs, clips.pool_x, device),
    )
    return calibration, {**est, "on": f"{len(clips.pool_x)} unlabelled target training clips; no target label read"}


def run_summary(
    prep: PreparedData,
    plan: Plan,
    cfg,
    clips: Clips,
    state: TrainState,
    device: torch.device,
    world: int,
    seconds: float,
) -> dict:
    final = state.history[-1] if state.history else {}
    summary = {
        "prepared": prepared_paths(prep),
        "classes": list(prep.classes),
        "method": plan.training,
        "plan": plan.to_dict(),
        "method_choice": plan.describe(),
        "steps": cfg.steps,
        "seed": cfg.seed,
        "device": str(device),
        "world_size": world,
        "selected": {"step": state.best["step"], "criterion": cfg.select, "score": state.best["score"]},
        "final": {k: v for k, v in final.items() if k != "report_only"},
        "latent_domains": clips.latent,
        "clips": {
            "source_train": clips.n_source,
            "target_train": clips.n_target if plan.training == "dann" or plan.stage != "none" else 0,
            "source_val": len(clips.val_y),
            "target_test": len(clips.test_y),
        },
        "train_seconds": seconds,
    }
    warnings = [c["warning"] for c in prep.level_checks if c.get("warning")]
    if warnings:
        summary["source_warnings"] = warnings
    if len(clips.test_y):
        at_sel = next((h for h in state.history if h["step"] == state.best["step"]), {})
        summary["report_only"] = {
            "target_test_acc_selected": at_sel.get("report_only", {}).get("target_test_acc"),
            "target_test_acc_final": final.get("report_only", {}).get("target_test_acc"),
            "note": REPORT_ONLY_NOTE,
        }
    return summary
