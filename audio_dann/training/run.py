"""``train``: a prepared folder in, a run folder out (model.pt, last.pt, config, metrics, summary).

Read top to bottom: resolve the configuration, open (or resume) the run, load the clips, fit
with an evaluation and a checkpoint at every ``eval_every`` steps, write the summary. The choice
of ``model.pt`` belongs to :class:`Checkpoints` alone. Selection never reads target labels:
target accuracy is computed for the record only and stored under ``report_only``. Reports and
plots are made after training, by the caller (``audio_dann.train`` and the CLI do it).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Config, TrainConfig, config_to_dict, dump_config
from ..data.store import PreparedData, open_prepared_many
from ..errors import BundleError, ConfigError, RunError
from ..files import atomic_write_text, check_output_dir, output_lock, path_list, shown_paths, write_json
from ..nn.calibration import GUARD_MARGIN, agreement, calibrate, estimate, combined_estimate, mean_agreement
from ..nn.classifier import AudioClassifier, build_classifier, load_checkpoint, load_references
from ..runtime import (all_reduce_sum, barrier, derive_seed, init_from_env, is_main_process, rank_world,
                       resolve_device, seed_everything, shard_range, shutdown)
from .criteria import dev_risk, proxy_a_distance, snd
from .criteria import score as criterion_score
from .loop import TrainData, TrainState, fit
from .outputs import model_outputs, predict_logits
from .latent import discover_domains, file_descriptors
from .reverse import reverse_validation_risk
from .self_training import AdaptConfig, TargetClips, adapt_network, ensemble_probabilities
from .run_folder import REPORT_ONLY_NOTE

__all__ = ["train", "Checkpoints"]

AUTO_NOTE = ("method auto: source-only training, then the {stage} self-training stage on the unlabelled "
             "target clips (source-only + latent-bn measured as good as DANN or better on 3 of 4 FSDD shifts, "
             "behind on a channel shift; --method dann for domain-adversarial training)")
_IN_MEMORY_LIMIT = 2 * 1024 ** 3  # bytes of float16 features loaded into RAM; beyond, read from the memmap


def train(prepared: str | Path | list[str | Path], out: str | Path, *, config: Config | None = None,
          method: str | None = None, seed: int | None = None, device: str = "auto", resume: bool = False,
          progress: Callable[[int, int, dict], None] | None = None,
          reference: str | Path | list[str | Path] | None = None, named: Iterable[str] = (),
          label_shift: bool = False) -> dict:
    """Train on a prepared folder and write the run folder ``out``.

    Args:
        prepared: the folder ``prepare`` wrote, or several (shards of one corpus, prepared alike).
        out: the run folder (created).
        config: model and training settings (features always come from ``prepared``).
        method: ``"auto"``, ``"dann"`` or ``"source-only"`` (overrides ``config.train.method``). ``auto``
            (the default) trains source-only and, where the prepared folder has target training audio,
            ends with the latent-bn self-training stage on it; the summary says so (``method_choice``).
        seed: overrides ``config.train.seed``.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        resume: continue from ``out/last.pt`` with its saved configuration (asked settings that differ are refused).
        progress: ``(step, total, running_metrics)`` callback.
        reference: a second model of the task (e.g. another seed's ``model.pt``), or several: the estimate
            of target accuracy in ``summary.json`` becomes the lowest of ATC-NE, the prior bound and the
            share of target clips on which the model agrees with them (the mean over several; checked
            against the prepared folder before training starts).
        label_shift: the target's classes may be far more skewed than the source's: leave the prior bound
            out of the estimate (see :func:`audio_dann.nn.calibration.combined_estimate`).
        named: ``section.key`` settings the caller set explicitly in ``config`` (the CLI's ``--set`` and
            ``--config`` keys): with ``resume`` they are compared with the saved run even where they equal
            the default (without ``config`` there is nothing to compare).
    Returns:
        the run summary (also written to ``summary.json``).
    """
    out = check_output_dir(out)
    reference = path_list(reference)  # once: a generator would be spent by the first look
    started = init_from_env(resolve_device(device).type)
    try:
        with output_lock(out) if is_main_process() else contextlib.nullcontext():
            return _train(prepared, out, config, method, seed, device, resume, progress, reference, named,
                          label_shift)
    finally:
        shutdown(started)


def _train(prepared, out: Path, config, method, seed, device, resume, progress, reference, named=(),
           label_shift: bool = False) -> dict:
    t0 = time.perf_counter()
    prep = open_prepared_many(list(prepared) if isinstance(prepared, (list, tuple)) else [prepared])
    ref_models = load_references(path_list(reference), prep.classes, prep.config.features, error=RunError)
    rank, world = rank_world()
    asked = _asked_settings(config, method, seed, named)
    auto = (method or (config or Config()).train.method) == "auto"
    config = _resolve_config(config or Config(), prep, method, seed)
    if resume:  # the saved run's settings decide which clips and domains load and how it continues
        config = _saved_config(out)
        auto = config.train.method == "source-only" and config.train.self_training not in ("auto", "none")  # saved auto
        _check_resume_settings(out, asked, config)
        if (out / "summary.json").is_file():  # finished: nothing to continue (the stage is not applied twice)
            return json.loads((out / "summary.json").read_text())
    clips = _load_clips(prep, config.train)
    if config.train.method == "dann" and not clips.n_target:
        raise RunError(f"{prep.root}: method dann needs unlabelled target training clips and the prepared folder "
                       "has none; use --method source-only")
    seed_everything(config.train.seed)  # before the model is built: its initial weights follow the seed
    model, state, opt_state, config = _open_run(out, config, prep, clips.domains, resume)
    barrier()  # every rank has checked the run folder before rank 0 writes to it
    device_t = _device(device, world)
    cfg = config.train
    model.to(device_t)
    is_main = rank == 0
    if is_main:
        _start_run_folder(out, config, model, state)
    evaluator = Evaluator(clips, cfg, device_t)
    checkpoints = Checkpoints(out, model, cfg.select, write=is_main)
    state = fit(model.dann, clips.data, cfg, device=device_t, state=state, optimizer_state=opt_state,
                evaluate=evaluator, on_eval=checkpoints.on_eval, progress_cb=progress if is_main else None)
    members, stage = [], cfg.self_training_method
    if cfg.ensemble_members and clips.n_target and cfg.method == "dann" and stage == "shot-file":
        if len(prep.domains) == 2:  # one unnamed target domain: the ensemble's members differ in K
            members = _train_members(prepared, out, config, device, progress)
        elif cfg.self_training == "auto":  # named target domains: no latent domains, no ensemble
            stage = "adabn"
    summary = _summary(prep, cfg, clips, state, device_t, world, time.perf_counter() - t0)
    if auto:
        summary["method_choice"] = AUTO_NOTE.format(stage=stage) if clips.n_target and stage != "none" else (
            "method auto: source-only training; no self-training stage (no unlabelled target training clips, "
            "or train.self_training=none)")
    if is_main:
        selected = checkpoints.selected()
        if stage != "none" and clips.n_target:
            summary["self_training"] = _self_train(selected, clips, replace(cfg, self_training=stage), device_t,
                                                   members, label_shift)
            if "report_only" in summary:  # the shipped model after the stage (report only, like the others)
                summary["report_only"]["target_test_acc_shipped"] = _test_accuracy(selected, clips, cfg, device_t)
        selected.calibration, summary["estimated_target_accuracy"] = _calibrate(selected, clips, device_t, ref_models,
                                                                                label_shift)
        if ref_models and summary["estimated_target_accuracy"]:
            summary["estimated_target_accuracy"]["reference"] = shown_paths(path_list(reference))
        write_json(out / "summary.json", summary)
        checkpoints.finish(selected, summary)
    return summary


def _test_accuracy(model: AudioClassifier, clips: "Clips", cfg, device: torch.device) -> float:
    """Clip accuracy of ``model`` on the target test clips (report only), on one process."""
    pred = predict_logits(model.dann.to(device), clips.test_x, device=device, amp=cfg.amp).argmax(1).numpy()
    return float((pred == np.asarray(clips.test_y)).mean())


def _self_train(model: AudioClassifier, clips: "Clips", cfg, device: torch.device,
                members: list[tuple[int, Path]] = (), label_shift: bool = False) -> dict:
    """The self-training stage after alignment (``train.self_training``) on the unlabelled target pool,
    the same machinery as ``audio-dann adapt``; ``model`` is changed in place and records it. With
    ``members`` (``train.latent_ensemble``) the pseudo-labels come from the ensemble of this model and
    the members, each with its target batch-norm statistics. With ``train.self_training_guard`` the
    stage is undone (``kept: original``) where its label-free estimate drops (:func:`_stage_guard`)."""
    t0 = time.perf_counter()
    x, files = clips.pool_x, np.asarray(clips.pool_files)  # AdaBN reads it a batch at a time
    if cfg.self_training_method != "adabn" and len(x) > cfg.self_training_max_clips:  # held in memory: a share
        pick = np.random.default_rng(derive_seed(cfg.seed, "self_training/clips"))
        keep = np.sort(pick.permutation(len(x))[:cfg.self_training_max_clips])
        x = x[torch.from_numpy(keep)] if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x[keep]))
        files = files[keep]
    elif cfg.self_training_method != "adabn" and not isinstance(x, torch.Tensor):
        x = torch.from_numpy(np.asarray(x[:]))
    target = TargetClips(x, np.unique(files, return_inverse=True)[1], [], [])
    teacher, ensemble = None, None
    if members:  # only trained where the stage is shot-file
        teacher, ensemble = _ensemble_teacher(model, members, target, clips, cfg, device)
    settings = AdaptConfig(epochs=cfg.self_training_epochs, threshold=cfg.self_training_threshold, seed=cfg.seed)
    net, info = adapt_network(model.dann, target, cfg.self_training_method, settings, device, teacher=teacher)
    guard = _stage_guard(model.dann, net, x, clips, device, label_shift) if cfg.self_training_guard else None
    if guard is None or guard["kept"] == "adapted":
        model.dann = net
    record = {"stage": "train.self_training", **info, "settings": dataclasses.asdict(settings), "clips": len(x),
              "pool_clips": len(clips.pool_x), "seconds": time.perf_counter() - t0,
              "kept": guard["kept"] if guard else "adapted", **({"guard": guard} if guard else {})}
    if ensemble is not None:
        record["ensemble"] = ensemble
    model.adaptation = [*model.adaptation, record]
    return record


def _softmax(dann, x, device: torch.device) -> np.ndarray:
    """Probabilities of ``dann`` for ``x``, run on ``device``; the network goes back where it was (the
    stage's networks live on the CPU between steps)."""
    home = next(dann.parameters()).device
    try:
        return torch.softmax(model_outputs(dann.to(device), x, device)[1], 1).numpy()
    finally:
        dann.to(home)


def _stage_guard(before, after, x, clips: "Clips", device: torch.device, label_shift: bool) -> dict:
    """``adapt``'s guard for train's stage: the label-free estimate of the network ``before`` and ``after``
    the stage on the stage's target clips ``x`` (ATC-NE from the calibration of the network before, as
    ``adapt`` keeps its original's, and the prior bound; no reference, which would have to go through the
    stage too), and which to keep: the one before when the estimate drops by more than ``GUARD_MARGIN``.
    Without source validation clips to calibrate on, the stage is kept and the record says why."""
    if len(clips.val_y) == 0:
        return {"kept": "adapted", "skipped": "no source validation clips to calibrate the estimate on"}
    calibration = calibrate(_softmax(before, clips.val_x, device), clips.val_y)
    est = {k: combined_estimate(estimate(_softmax(net, x, device), calibration), None, label_shift)
           for k, net in (("before", before), ("after", after))}
    b, a = est["before"]["value"], est["after"]["value"]
    return {"before": b, "after": a, "limited_by": {k: e["limited_by"] for k, e in est.items()},
            "prior_bound": {k: e["prior_bound"] for k, e in est.items()}, "label_shift": label_shift,
            "kept": "original" if a < b - GUARD_MARGIN else "adapted", "margin": GUARD_MARGIN,
            "note": "no target label read"}


def _train_members(prepared, out: Path, config: Config, device: str,
                   progress: Callable[[int, int, dict], None] | None = None) -> list[tuple[int, Path]]:
    """``train.latent_ensemble``: one more DANN run per K under ``out/members/latent{K}`` (K = 0: one
    target domain), each a normal run folder (AdaBN stage, model.pt by the same label-free selection).
    Finished members are kept; a member cut short resumes from its last.pt. ``progress`` gets each
    member's steps with ``{"member": "latent{K}", ...}`` in its metrics."""
    members = []
    for k in config.train.ensemble_members:
        member_out = out / "members" / f"latent{k}"
        members.append((k, member_out))
        if (member_out / "summary.json").is_file():
            continue
        member = replace(config, train=replace(config.train, latent_domains=k, latent_ensemble=(),
                                               self_training="adabn"))
        tell = None if progress is None else (
            lambda step, total, m, name=member_out.name: progress(step, total, {"member": name, **m}))
        _train(prepared, member_out, member, None, None, device, (member_out / "last.pt").is_file(), tell, None)
    return members


def _ensemble_teacher(model: AudioClassifier, members: list[tuple[int, Path]], target: TargetClips,
                      clips: "Clips", cfg, device: torch.device) -> tuple[torch.Tensor, dict]:
    """The mean target-pool probabilities of ``model`` and the members, each normalised as
    ``train.ensemble_teacher`` says (``latent-bn``: batch-norm statistics per latent target condition,
    K = 1-4; ``adabn``: the pool's), and a record of how often each agrees with that mean (no label
    read; test accuracies, after AdaBN, under report_only)."""
    nets = [adapt_network(model.dann, target, "adabn", device=device)[0]]
    nets += [load_checkpoint(path / "model.pt")[0].dann for _, path in members]
    probs = ensemble_probabilities(nets, target, cfg.ensemble_teacher, cfg.seed, device)
    mean = np.mean(probs, axis=0)
    record = {"latent_domains": [cfg.latent_domains, *(k for k, _ in members)],
              "runs": [".", *(str(path) for _, path in members)], "normalisation": cfg.ensemble_teacher,
              "agreement_with_teacher": [agreement(p, mean) for p in probs]}
    if len(clips.test_y):
        test = [torch.softmax(predict_logits(net.to(device), clips.test_x, device=device, amp=cfg.amp).float(), 1).numpy()
                for net in nets]
        hit = lambda p: float((p.argmax(1) == np.asarray(clips.test_y)).mean())  # noqa: E731
        record["report_only"] = {"member_test_acc": [hit(p) for p in test],
                                 "teacher_test_acc": hit(np.mean(test, axis=0)), "note": REPORT_ONLY_NOTE}
    return torch.from_numpy(mean).float(), record


def _calibrate(model: AudioClassifier, clips: Clips, device: torch.device, references: list[AudioClassifier] = (),
               label_shift: bool = False) -> tuple[dict | None, dict | None]:
    """The selected model's calibration on source validation clips, and the label-free estimate of its
    accuracy on the unlabelled target pool (:func:`audio_dann.nn.calibration.combined_estimate`: the lowest of
    ATC-NE, the prior bound and, with ``references``, the model's mean agreement with them)."""
    if len(clips.val_y) == 0:
        return None, None
    calibration = calibrate(_softmax(model.dann, clips.val_x, device), clips.val_y)
    if clips.pool_x is None or len(clips.pool_x) == 0:
        return calibration, None
    probs = _softmax(model.dann, clips.pool_x, device)
    figures = estimate(probs, calibration)
    if references:
        figures["agreement"] = mean_agreement(probs, [_softmax(r.dann, clips.pool_x, device) for r in references])
    return calibration, {**combined_estimate(figures, figures.get("agreement"), label_shift), "all": figures,
                         "on": f"{len(clips.pool_x)} unlabelled target training clips; no target label read"}


def _resolve_config(config: Config, prep: PreparedData, method: str | None, seed: int | None) -> Config:
    """The run's configuration: features and data settings always from the prepared folder."""
    if config.features != Config().features and config.features != prep.config.features:
        raise ConfigError(f"{prep.root}: features.* settings differ from those the folder was prepared with; "
                          "they are fixed at prepare time (run `audio-dann prepare` with them)")
    train_cfg = config.train
    if method is not None:
        train_cfg = replace(train_cfg, method=method)
    if seed is not None:
        train_cfg = replace(train_cfg, seed=seed)
    train_cfg = train_cfg.resolved()  # saved resolved, so a resumed or reloaded run needs no rule to read it
    return replace(config, features=prep.config.features, data=prep.config.data, train=train_cfg).validate()


def _open_run(out: Path, config: Config, prep: PreparedData, domains: list[str], resume: bool):
    """``(model, loop state, optimizer state, config)``: fresh, or from ``last.pt`` (whose config wins)."""
    last = out / "last.pt"
    if not resume:
        if (out / "summary.json").exists() or last.exists():
            raise RunError(f"{out}: run folder already holds a run; use --resume to continue it or choose a new --out")
        return build_classifier(config, prep.classes, domains, prep.stats), None, None, config
    if not last.is_file():
        raise RunError(f"{out}: nothing to resume (no last.pt); drop --resume to start a new run")
    model, bundle = load_checkpoint(last)
    if "loop_state" not in bundle:
        raise BundleError(f"{last}: not a resumable checkpoint (no loop_state)")
    ls = bundle["loop_state"]
    state = TrainState(step=int(ls["step"]), history=list(ls["history"]), best=ls["best"], rng=ls["rng"])
    return model.train(), state, bundle["optimizer_state"], model.config


def _asked_settings(config: Config | None, method: str | None, seed: int | None,
                    named: Iterable[str] = ()) -> dict[str, Any]:
    """The model/train settings a caller asked for: those differing from the defaults, those ``named``
    (``section.key``, set explicitly, maybe to the default), and method/seed."""
    asked: dict[str, Any] = {}
    if config is not None:
        ours, default = config_to_dict(config), config_to_dict(Config())
        named = {tuple(n.split(".", 1)) for n in named if "." in n}
        asked = {f"{sec}.{k}": v for sec in ("model", "train") for k, v in ours[sec].items()
                 if v != default[sec][k] or (sec, k) in named}
    if method is not None:
        asked["train.method"] = method
    if seed is not None:
        asked["train.seed"] = seed
    return asked


def _resolved_asks(asked: dict[str, Any], saved: TrainConfig) -> dict[str, Any]:
    """The asked ``train.method`` / ``train.self_training`` as :meth:`TrainConfig.resolved` turns them
    into what a run saves (an asked ``auto`` is compared with what ``auto`` became). Without an asked
    method, a saved source-only run is taken as the default's (auto), any other as its own."""
    implied = TrainConfig.method if saved.method == "source-only" else saved.method
    cfg = TrainConfig(method=asked.get("train.method", implied),
                      self_training=asked.get("train.self_training", saved.self_training)).resolved()
    return {key: getattr(cfg, key.split(".", 1)[1]) for key in ("train.method", "train.self_training") if key in asked}


def _saved_config(out: Path) -> Config:
    """The configuration a resumable run in ``out`` was saved with."""
    last = out / "last.pt"
    if not last.is_file():
        raise RunError(f"{out}: nothing to resume (no last.pt); drop --resume to start a new run")
    return load_checkpoint(last)[0].config


def _check_resume_settings(out: Path, asked: dict[str, Any], saved: Config) -> None:
    """``--resume`` continues with the saved configuration: refuse asked settings that differ from it
    rather than ignore them."""
    have = config_to_dict(saved)
    resolved = _resolved_asks(asked, saved.train)
    diffs = []
    for key, value in asked.items():
        section, name = key.split(".", 1)
        if have[section].get(name) != resolved.get(key, value):
            diffs.append(f"{key} (saved {have[section].get(name)!r}, asked {value!r})")
    if diffs:
        raise RunError(f"{out}: --resume continues with the run's saved settings; these differ from them: "
                       f"{', '.join(diffs)}. Drop them, or start a new --out")


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
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in (state.history if state else [])))
    if state is None:
        model.save(out / "init.pt", step=0)


@dataclass
class Clips:
    """The clips of one run: training data, source validation, report-only target test and pool."""

    data: TrainData
    n_source: int
    n_target: int
    val_x: Any
    val_y: np.ndarray
    test_x: Any
    test_y: np.ndarray
    pool_x: Any               # the unlabelled target training clips
    pool_y: np.ndarray | None  # their labels where a manifest carried them (report only), else None
    pool_files: list[str]     # the file of each pool clip
    domains: list[str]        # the domain head's classes: the source, then the target domains
    latent: dict | None = None  # how latent domains were discovered (train.latent_domains)


def _load_clips(prep: PreparedData, cfg) -> Clips:
    adapt = cfg.method == "dann"
    src_rows = prep.rows("train", source=True)
    tgt_rows = prep.rows("train", source=False)
    val_rows = prep.rows("val", source=True)
    test_rows = prep.rows("test")
    if len(src_rows) == 0:
        raise RunError(f"{prep.root}: no labelled source training clips")
    needed = sum(len(r) for r in (src_rows, tgt_rows, val_rows, test_rows)) * prep.features[0].nbytes
    in_memory = needed <= _IN_MEMORY_LIMIT
    rows = lambda r: _rows_data(prep, r, in_memory)  # noqa: E731
    target_x = rows(tgt_rows)
    pool_files = [prep.index[i]["file"] for i in tgt_rows]
    domains, domain_ids, latent = list(prep.domains), prep.domain_ids(tgt_rows), None
    if adapt and cfg.latent_domains != 0 and len(prep.domains) == 2 and len(tgt_rows):
        desc, which = file_descriptors(prep.features, tgt_rows, pool_files)
        labels, latent = discover_domains(desc, cfg.seed, k=max(cfg.latent_domains, 0))
        if latent["k"] > 1:
            domains = [prep.domains[0], *[f"{prep.domains[1]}~{j}" for j in range(latent["k"])]]
            domain_ids = 1 + labels[which]
    data = TrainData(source_x=rows(src_rows), source_y=torch.from_numpy(prep.labels(src_rows)),
                     target_x=target_x if adapt else None,
                     target_domain=torch.from_numpy(np.asarray(domain_ids, dtype=np.int64)) if adapt else None)
    pool_y = prep.labels(tgt_rows)
    has_pool_labels = len(tgt_rows) > 0 and bool((pool_y >= 0).all())
    return Clips(data, len(src_rows), len(tgt_rows), rows(val_rows), prep.labels(val_rows), rows(test_rows),
                 prep.labels(test_rows), target_x, pool_y if has_pool_labels else None, pool_files, domains, latent)


def _rows_data(prep: PreparedData, rows: np.ndarray, in_memory: bool):
    if in_memory:
        return torch.from_numpy(np.ascontiguousarray(prep.features[rows]))
    return RowView(prep.features, rows)


class RowView:
    """A lazy view ``features[rows]`` over a memmap (no copy until indexed)."""

    def __init__(self, features: np.ndarray, rows: np.ndarray) -> None:
        self.features, self.rows = features, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx):
        return self.features[self.rows[idx]]


class Evaluator:
    """``(dann, step) -> metrics``: source validation accuracy, every label-free selection criterion on
    fixed subsets of at most ``train.selection_clips`` clips, and report-only target accuracies."""

    def __init__(self, clips: Clips, cfg, device: torch.device) -> None:
        self.clips, self.cfg, self.device = clips, cfg, device
        pick = np.random.default_rng(derive_seed(cfg.seed, "selection/subsets"))
        self.sel_src = np.sort(pick.permutation(clips.n_source)[: cfg.selection_clips])
        sel_tgt = np.sort(pick.permutation(clips.n_target)[: cfg.selection_clips])
        self.src_x = _take_rows(clips.data.source_x, self.sel_src)
        self.tgt_x = _take_rows(clips.pool_x, sel_tgt)

    def __call__(self, dann, step: int) -> dict:
        c, amp = self.clips, self.cfg.amp
        m = {"source_val_acc": _accuracy(dann, c.val_x, c.val_y, self.device, amp)}
        m["selection"] = self._criteria(dann, m["source_val_acc"])
        report = {}
        if len(c.test_y):
            report["target_test_acc"] = _accuracy(dann, c.test_x, c.test_y, self.device, amp)
        if c.pool_y is not None:
            report["target_pool_acc"] = _accuracy(dann, c.pool_x, c.pool_y, self.device, amp)
        if report:
            m["report_only"] = {**report, "note": REPORT_ONLY_NOTE}
        return m

    def _criteria(self, dann, val_acc) -> dict:
        """Every label-free selection criterion for the current weights (see criteria.py)."""
        out = {"source_val_acc": val_acc}
        if len(self.tgt_x) == 0:
            return out
        c, cfg, device = self.clips, self.cfg, self.device
        src_z, _ = model_outputs(dann, self.src_x, device)
        tgt_z, tgt_logits = model_outputs(dann, self.tgt_x, device)
        out["snd"] = snd(tgt_logits)
        if len(c.val_x) > 1:
            val_z, val_logits = model_outputs(dann, c.val_x, device)
            losses = F.cross_entropy(val_logits, torch.as_tensor(c.val_y), reduction="none")
            out["dev_risk"] = dev_risk(src_z, tgt_z, val_z, losses)
            if cfg.rv_steps > 0:
                out["rv_risk"] = reverse_validation_risk(dann, self.src_x, c.data.source_y[self.sel_src], c.val_x,
                                                         c.val_y, self.tgt_x, cfg, cfg.rv_steps, device)
        out["proxy_a_distance"] = proxy_a_distance(src_z, tgt_z)
        return out


def _take_rows(x, rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x[rows]))) if not isinstance(x, torch.Tensor) else x[rows]


def _accuracy(model, x, y, device, amp) -> float | None:
    """Accuracy on ``x``; under DDP each rank scores its shard and the counts are summed."""
    if x is None or len(x) == 0:
        return None
    rank, world = rank_world()
    start, stop = shard_range(len(x), rank, world)
    correct = 0.0
    if stop > start:
        pred = predict_logits(model, x[start:stop], device=device, amp=amp).argmax(1).numpy()
        correct = float((pred == y[start:stop]).sum())
    correct, total = all_reduce_sum([correct, float(stop - start)])
    return correct / total


class Checkpoints:
    """The one owner of ``model.pt``: after each evaluation, keeps the best model by the label-free
    criterion ``select`` (ties go to the later step), appends ``metrics.jsonl`` and writes ``last.pt``.
    Only the writing process (rank 0) touches files; every rank tracks the same choice."""

    def __init__(self, out: Path, model: AudioClassifier, select: str, write: bool = True) -> None:
        self.out, self.model, self.select, self.write = out, model, select, write

    def on_eval(self, dann, optimizer, state: TrainState, metrics: dict) -> None:
        score = criterion_score(self.select, metrics)
        score = -math.inf if score is None else score
        if state.best is None or score >= state.best["score"]:
            state.best = {"step": state.step, "score": score, "criterion": self.select}
            if self.write:
                self.model.save(self.out / "model.pt", step=state.step, selected_by=self.select)
        if self.write:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            self.model.save(self.out / "last.pt", step=state.step, optimizer_state=optimizer.state_dict(),
                            loop_state={"step": state.step, "history": state.history, "best": state.best,
                                        "rng": state.rng})

    def selected(self) -> AudioClassifier:
        """The model ``model.pt`` holds."""
        return load_checkpoint(self.out / "model.pt")[0]

    def finish(self, selected: AudioClassifier, summary: dict) -> None:
        """Store the run summary (and the selected model's calibration) inside ``model.pt``."""
        bundle = load_checkpoint(self.out / "model.pt")[1]
        selected.save(self.out / "model.pt", **{k: v for k, v in bundle.items() if k in ("step", "selected_by")},
                      summary=summary)


def _summary(prep: PreparedData, cfg, clips: Clips, state: TrainState, device: torch.device, world: int,
             seconds: float) -> dict:
    final = state.history[-1] if state.history else {}
    summary = {
        "prepared": [str(Path(r).resolve()) for r in (prep.roots or [prep.root])],
        "method": cfg.method, "steps": cfg.steps, "seed": cfg.seed, "device": str(device), "world_size": world,
        "selected": {"step": state.best["step"], "criterion": cfg.select, "score": state.best["score"]},
        "final": {k: v for k, v in final.items() if k != "report_only"},
        "latent_domains": clips.latent,
        "clips": {"source_train": clips.n_source, "target_train": clips.n_target if cfg.method == "dann" else 0,
                  "source_val": len(clips.val_y), "target_test": len(clips.test_y)},
        "train_seconds": seconds,
    }
    if len(clips.test_y):
        at_sel = next((h for h in state.history if h["step"] == state.best["step"]), {})
        summary["report_only"] = {
            "target_test_acc_selected": at_sel.get("report_only", {}).get("target_test_acc"),
            "target_test_acc_final": final.get("report_only", {}).get("target_test_acc"),
            "note": REPORT_ONLY_NOTE}
    return summary
