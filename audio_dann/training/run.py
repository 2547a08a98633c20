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

import torch

from ..adaptation.critic import keep_source_sample
from ..adaptation.references import load_references
from ..adaptation.target_sound import build_target_sound
from ..config import Config
from ..data.store import open_prepared_many
from ..errors import RunError
from ..files import check_output_dir, output_lock, path_list, shown_paths, write_json
from ..nn.classifier import build_classifier
from ..runtime import barrier, init_from_env, is_main_process, rank_world, resolve_device, seed_everything, shutdown
from .checkpoints import Checkpoints
from .clips import load_clips
from .evaluation import Evaluator
from .finish import calibrate_and_estimate, prepared_paths, run_summary, self_training_stage, test_accuracy
from .loop import fit
from .plan import Plan
from .resume import asked_settings, fresh_start, resolve_config, resumed_start
from .run_folder import start_run_folder

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
    cfg = replace(  # what the loop runs
        config.train,
        method=plan.training,
        target_background=plan.background,
        target_channel=plan.channel,
        target_reverb=plan.reverb,
    )
    clips = load_clips(prep, plan.training, cfg.latent_domains, cfg.seed)
    if plan.training == "dann" and not clips.n_target:
        raise RunError(
            f"{prep.root}: method dann needs unlabelled target training clips and the prepared folder "
            "has none; use --method source-only"
        )
    target_sound = _target_sound(clips, cfg, prep.config.features)
    seed_everything(cfg.seed)  # before the model is built: its initial weights follow the seed
    model = start.model or build_classifier(config, prep.classes, clips.domains, prep.stats)
    barrier()  # every rank has checked the run folder before rank 0 writes to it
    device = _device(req.device, world)
    model.to(device)
    if rank == 0:
        start_run_folder(out, config, model, start.state)
    saved = {"plan": plan.to_dict(), "prepared": prepared_paths(prep)}
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
    summary = run_summary(prep, plan, cfg, clips, state, device, world, time.perf_counter() - t0)
    if target_sound is not None:
        summary["target_sound"] = target_sound
    if rank == 0:
        selected = checkpoints.selected()
        if plan.stage != "none":
            summary["self_training"] = self_training_stage(
                selected, clips, plan, config, device, members, req.label_shift
            )
            if "report_only" in summary:  # the shipped model after the stage (report only, like the others)
                summary["report_only"]["target_test_acc_shipped"] = test_accuracy(selected, clips, device, cfg.amp)
        selected.source_sample = keep_source_sample(clips.val_x, clips.val_y, clips.val_files)
        selected.calibration, summary["estimated_target_accuracy"] = calibrate_and_estimate(
            selected, clips, device, ref_models, req.label_shift
        )
        if ref_models and summary["estimated_target_accuracy"]:
            summary["estimated_target_accuracy"]["reference"] = shown_paths(req.reference)
        write_json(out / "summary.json", summary)
        checkpoints.finish(selected, summary)
    return summary


def _target_sound(clips, cfg, features) -> dict | None:
    """Put the target's background and channel, and a room's reverberation, on the source batches where
    the plan asks for them (``clips.data.target_sound``; a plan has none without target clips); returns
    what was built, for the summary."""
    if not (cfg.target_background > 0 or cfg.target_channel > 0 or cfg.target_reverb > 0):
        return None
    bank = build_target_sound(
        clips.pool_x, clips.pool_files, clips.data.source_x, features.log_floor, cfg.seed, features.frame_hop_seconds
    )
    clips.data.target_sound = bank
    if bank is None:
        return {"off": "no target clip has a background to take (every clip silent or too short)"}
    shares = {"background": cfg.target_background, "channel": cfg.target_channel, "reverb": cfg.target_reverb}
    return {**shares, **bank.record}


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


def _device(name: str, world: int) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda" and world > 1:
        return torch.device("cuda", torch.cuda.current_device())
    return device
