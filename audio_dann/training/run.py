"""``train``: a prepared folder in, a run folder out (model.pt, last.pt, config, metrics, summary).

Read top to bottom: resolve the configuration and the plan (:mod:`.plan`), open (or resume) the run,
load the clips, fit with an evaluation and a checkpoint at every ``eval_every`` steps, then the
plan's self-training stage (:mod:`audio_dann.adaptation.stage`), the label-free estimate, and the
summary. The choice of ``model.pt`` belongs to :class:`~.checkpoints.Checkpoints` alone. Selection
never reads target labels: target accuracy is computed for the record only and stored under
``report_only``. Reports and plots are made after training, by the caller.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..adaptation.estimators import calibrate, label_free_estimate
from ..adaptation.references import load_references
from ..adaptation.stage import LabelledClips, StagePlan, run_stage
from ..config import Config, dump_config
from ..data.store import PreparedData, open_prepared_many
from ..errors import RunError
from ..files import atomic_write_text, check_output_dir, json_line, output_lock, path_list, shown_paths, write_json
from ..nn.classifier import AudioClassifier, build_classifier, load_checkpoint
from ..nn.outputs import predict_logits, probabilities
from ..runtime import barrier, init_from_env, is_main_process, rank_world, resolve_device, seed_everything, shutdown
from .checkpoints import Checkpoints
from .clips import Clips, load_clips
from .evaluation import Evaluator
from .loop import TrainState, fit
from .plan import Plan
from .resume import asked_settings, fresh_start, resolve_config, resumed_start
from .run_folder import REPORT_ONLY_NOTE

__all__ = ["train"]


@dataclass(frozen=True)
class _Request:
    """One ``train`` call, as the ensemble's members repeat it."""

    prepared: list
    out: Path
    config: Config | None = None
    method: str | None = None
    seed: int | None = None
    device: str = "auto"
    resume: bool = False
    progress: Callable[[int, int, dict], None] | None = None
    reference: list = field(default_factory=list)
    named: tuple = ()
    label_shift: bool = False


def train(
    prepared: str | Path | list[str | Path],
    out: str | Path,
    *,
    config: Config | None = None,
    method: str | None = None,
    seed: int | None = None,
    device: str = "auto",
    resume: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
    reference: str | Path | list[str | Path] | None = None,
    named: Iterable[str] = (),
    label_shift: bool = False,
) -> dict:
    """Train on a prepared folder and write the run folder ``out``.

    Args:
        prepared: the folder ``prepare`` wrote, or several (shards of one corpus, prepared alike).
        out: the run folder (created).
        config: model and training settings (features always come from ``prepared``).
        method: ``"auto"``, ``"dann"`` or ``"source-only"`` (overrides ``config.train.method``), resolved
            into the run's plan by :func:`audio_dann.training.plan.make_plan` (saved as ``plan``).
        seed: overrides ``config.train.seed``.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        resume: continue from ``out/last.pt`` with its saved configuration (asked settings that differ,
            and another prepared folder, are refused).
        progress: ``(step, total, running_metrics)`` callback.
        reference: a second model of the task (e.g. another seed's ``model.pt``), or several: the estimate
            of target accuracy in ``summary.json`` then includes the model's mean agreement with them
            (checked against the prepared folder before training starts).
        named: ``section.key`` settings the caller set explicitly in ``config`` (the CLI's ``--set`` and
            ``--config`` keys): with ``resume`` they are compared with the saved run even where they equal
            the default.
        label_shift: the target's classes may be far more skewed than the source's: leave the prior bound
            out of the estimate (see :func:`audio_dann.adaptation.estimators.combined_estimate`).
    Returns:
        the run summary (also written to ``summary.json``).
    """
    prepared = list(prepared) if isinstance(prepared, (list, tuple)) else [prepared]
    req = _Request(
        prepared,
        check_output_dir(out, inputs=[*prepared, *path_list(reference)], own="training run"),
        config,
        method,
        seed,
        device,
        resume,
        progress,
        path_list(reference),
        tuple(named),
        label_shift,
    )
    started = init_from_env(resolve_device(device).type)
    try:
        with output_lock(req.out) if is_main_process() else contextlib.nullcontext():
            return _train(req)
    finally:
        shutdown(started)


def _train(req: _Request) -> dict:
    t0 = time.perf_counter()
    out = req.out
    prep = open_prepared_many(req.prepared)
    ref_models = load_references(req.reference, prep.classes, prep.config.features, error=RunError)
    rank, world = rank_world()
    if req.resume:
        start = resumed_start(out, asked_settings(req.config, req.method, req.seed, req.named), prep)
        if (out / "summary.json").is_file():  # finished: nothing to continue (the stage is not applied twice)
            return json.loads((out / "summary.json").read_text())
    else:
        start = fresh_start(out, resolve_config(req.config or Config(), prep, req.method, req.seed), prep)
    config, plan = start.config, start.plan
    cfg = replace(config.train, method=plan.training)  # what the loop runs
    clips = load_clips(prep, plan.training, cfg.latent_domains, cfg.seed)
    if plan.training == "dann" and not clips.n_target:
        raise RunError(
            f"{prep.root}: method dann needs unlabelled target training clips and the prepared folder "
            "has none; use --method source-only"
        )
    seed_everything(cfg.seed)  # before the model is built: its initial weights follow the seed
    model = start.model or build_classifier(config, prep.classes, clips.domains, prep.stats)
    barrier()  # every rank has checked the run folder before rank 0 writes to it
    device = _device(req.device, world)
    model.to(device)
    if rank == 0:
        _start_run_folder(out, config, model, start.state)
    saved = {"plan": plan.to_dict(), "prepared": _prepared_paths(prep)}
    checkpoints = Checkpoints(out, model, cfg.select, write=rank == 0, **saved)
    state = fit(
        model.dann,
        clips.data,
        cfg,
        device=device,
        state=start.state,
        optimizer_state=start.optimizer_state,
        evaluate=Evaluator(clips, cfg, device),
        on_eval=checkpoints.on_eval,
        progress_cb=req.progress if rank == 0 else None,
    )
    members = _train_members(req, config, plan) if plan.ensemble else []
    summary = _summary(prep, plan, cfg, clips, state, device, world, time.perf_counter() - t0)
    if rank == 0:
        selected = checkpoints.selected()
        if plan.stage != "none":
            summary["self_training"] = _stage(selected, clips, plan, config, device, members, req.label_shift)
            if "report_only" in summary:  # the shipped model after the stage (report only, like the others)
                summary["report_only"]["target_test_acc_shipped"] = _test_accuracy(selected, clips, device)
        selected.calibration, summary["estimated_target_accuracy"] = _calibrate(
            selected, clips, device, ref_models, req.label_shift
        )
        if ref_models and summary["estimated_target_accuracy"]:
            summary["estimated_target_accuracy"]["reference"] = shown_paths(req.reference)
        write_json(out / "summary.json", summary)
        checkpoints.finish(selected, summary)
    return summary


def _prepared_paths(prep: PreparedData) -> list[str]:
    return [str(Path(r).resolve()) for r in (prep.roots or [prep.root])]


def _test_accuracy(model: AudioClassifier, clips: Clips, device: torch.device) -> float:
    """Clip accuracy of ``model`` on the target test clips (report only), on one process."""
    pred = predict_logits(model.dann.to(device), clips.test_x, device=device).argmax(1).numpy()
    return float((pred == np.asarray(clips.test_y)).mean())


def _stage(
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
    )
    nets = [(name, load_checkpoint(path / "model.pt")[0].dann) for name, path in members]
    test = LabelledClips(clips.test_x, clips.test_y) if len(clips.test_y) else None
    record = run_stage(
        model,
        clips.pool_x,
        clips.pool_files,
        stage,
        device,
        source_val=LabelledClips(clips.val_x, clips.val_y),
        members=nets,
        test=test,
        label_shift=label_shift,
    )
    if "report_only" in record.get("ensemble", {}):
        record["ensemble"]["report_only"]["note"] = REPORT_ONLY_NOTE
    return record


def _train_members(req: _Request, config: Config, plan: Plan) -> list[tuple[str, Path]]:
    """The plan's ensemble: one more DANN run per K under ``out/members/latent{K}`` (K = 0: one target
    domain), each a normal run folder (AdaBN stage, model.pt by the same label-free selection).
    Finished members are kept; a member cut short resumes from its last.pt. ``progress`` gets each
    member's steps with ``{"member": "latent{K}", ...}`` in its metrics."""
    members = []
    for k in plan.ensemble:
        member_out = req.out / "members" / f"latent{k}"
        members.append((f"members/latent{k}", member_out))
        if (member_out / "summary.json").is_file():
            continue
        member = replace(
            config,
            train=replace(config.train, method="dann", latent_domains=k, latent_ensemble=(), self_training="adabn"),
        )
        tell = (
            None
            if req.progress is None
            else (lambda step, total, m, name=member_out.name: req.progress(step, total, {"member": name, **m}))
        )
        _train(
            _Request(
                req.prepared,
                member_out,
                member,
                device=req.device,
                resume=(member_out / "last.pt").is_file(),
                progress=tell,
            )
        )
    return members


def _calibrate(
    model: AudioClassifier,
    clips: Clips,
    device: torch.device,
    references: list[AudioClassifier] = (),
    label_shift: bool = False,
) -> tuple[dict | None, dict | None]:
    """The selected model's calibration on source validation clips, and the label-free estimate of its
    accuracy on the unlabelled target pool (:func:`audio_dann.adaptation.estimators.label_free_estimate`)."""
    if len(clips.val_y) == 0:
        return None, None
    calibration = calibrate(probabilities(model.dann.to(device), clips.val_x, device), clips.val_y)
    if clips.pool_x is None or len(clips.pool_x) == 0:
        return calibration, None
    est = label_free_estimate(
        probabilities(model.dann, clips.pool_x, device),
        calibration,
        [probabilities(r.dann.to(device), clips.pool_x, device) for r in references],
        label_shift,
    )
    return calibration, {**est, "on": f"{len(clips.pool_x)} unlabelled target training clips; no target label read"}


def _device(name: str, world: int) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda" and world > 1:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _start_run_folder(out: Path, config: Config, model: AudioClassifier, state: TrainState | None) -> None:
    """config.yaml, metrics.jsonl as far as the saved history goes (a resumed run drops lines logged
    after last.pt), and the initial weights for the report's before/after maps."""
    out.mkdir(parents=True, exist_ok=True)
    dump_config(config, out / "config.yaml")
    atomic_write_text(out / "metrics.jsonl", "".join(json_line(h) + "\n" for h in (state.history if state else [])))
    if state is None:
        model.save(out / "init.pt", step=0)


def _summary(
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
        "prepared": _prepared_paths(prep),
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
    if len(clips.test_y):
        at_sel = next((h for h in state.history if h["step"] == state.best["step"]), {})
        summary["report_only"] = {
            "target_test_acc_selected": at_sel.get("report_only", {}).get("target_test_acc"),
            "target_test_acc_final": final.get("report_only", {}).get("target_test_acc"),
            "note": REPORT_ONLY_NOTE,
        }
    return summary
