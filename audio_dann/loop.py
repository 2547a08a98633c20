"""The training loop: DANN or source-only, AMP, DDP, exact resume.

Each step draws a source batch and (for DANN) a target batch of equal size,
passes both through the extractor in one batch (so batch norm sees both
domains), and minimises

    CE(class | source) + w_d * domain_loss(source ∪ target) + w_e * H(class | target)

where the domain head sits behind a gradient reversal layer with coefficient
``lambda_p = lambda_max * grl_coeff(p)``. ``source-only`` is the same loop with
no target data at all. Target labels never enter this file except as
report-only metrics computed by the caller's ``evaluate`` hook.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .distributed import rank_world
from .loaders import batch_indices, take
from .models import DANN
from .schedules import grl_coeff, lr_factor, progress

__all__ = ["TrainData", "TrainState", "fit", "domain_loss", "make_optimizer", "autocast_for",
           "predict_logits", "seed_everything"]


@dataclass
class TrainData:
    """Arrays the loop trains on (tensors or memmaps; rows are clips).

    ``target_domain`` holds 1..K for K target domains (0 is the source).
    """

    source_x: Any
    source_y: torch.Tensor
    target_x: Any = None
    target_domain: torch.Tensor | None = None

    @property
    def n_domains(self) -> int:
        if self.target_domain is None or len(self.target_domain) == 0:
            return 1
        return int(self.target_domain.max()) + 1


@dataclass
class TrainState:
    """Everything a resumed run needs besides the data: saved whole in ``last.pt``."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    rng: torch.Tensor | None = None


def seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_for(device: torch.device, amp: str):
    """The autocast context for ``train.amp`` on ``device`` (a null context when off)."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_optimizer(model: DANN, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW; the domain head may learn at ``domain_lr_mult`` x the base rate."""
    head = list(model.domain_head.parameters()) if model.domain_head is not None else []
    head_ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if id(p) not in head_ids]
    groups = [{"params": rest, "lr_mult": 1.0}]
    if head:
        groups.append({"params": head, "lr_mult": cfg.domain_lr_mult})
    for g in groups:
        g["lr"] = cfg.lr * g["lr_mult"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def domain_loss(logits: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits for one logit (source vs target), cross-entropy for K logits."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits.squeeze(1).float(), (domains > 0).float())
    return F.cross_entropy(logits.float(), domains)


def _domain_correct(logits: torch.Tensor, domains: torch.Tensor) -> int:
    if logits.shape[1] == 1:
        pred = (logits.squeeze(1) > 0).long()
        return int((pred == (domains > 0).long()).sum())
    return int((logits.argmax(1) == domains).sum())


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1).mean()


@torch.no_grad()
def predict_logits(model: nn.Module, x, batch_size: int = 256, device: torch.device | str = "cpu",
                   amp: str = "off") -> torch.Tensor:
    """Class logits for every row of ``x`` in eval mode, ``(N, n_classes)`` float32 on the CPU."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        idx = np.arange(start, min(start + batch_size, len(x)))
        with autocast_for(device, amp):
            logits = model(take(x, idx, device), 0.0, with_domain=False)[0]
        out.append(logits.float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def fit(model: DANN, data: TrainData, cfg: TrainConfig, *, device: torch.device | str = "cpu",
        state: TrainState | None = None, optimizer_state: dict | None = None,
        evaluate: Callable[[DANN, int], dict] | None = None,
        on_eval: Callable[[DANN, torch.optim.Optimizer, TrainState, dict], None] | None = None,
        progress_cb: Callable[[int, int, dict], None] | None = None) -> TrainState:
    """Train ``model`` in place for ``cfg.steps`` steps (continuing from ``state.step``).

    Args:
        model: a :class:`DANN`; already holding resumed weights when resuming.
        data: source features/labels and (for DANN) unlabelled target features/domains.
        cfg: the training configuration.
        state: the saved loop state to continue from (``None``: start fresh).
        optimizer_state: the saved optimizer state to continue from.
        evaluate: ``(model, step) -> metrics`` called every ``eval_every`` steps and at the end.
        on_eval: ``(model, optimizer, state, metrics)`` after each evaluation (checkpointing).
        progress_cb: ``(step, total, running_metrics)`` after every step.
    Returns:
        the final :class:`TrainState` (``history`` holds one dict per evaluation).
    """
    device = torch.device(device)
    rank, world = rank_world()
    adapt = cfg.method == "dann"
    if adapt and (data.target_x is None or len(data.target_x) == 0):
        raise ValueError("method 'dann' needs unlabelled target clips; none were given")
    state = state or TrainState()
    model.to(device).train()
    net: nn.Module = model
    if world > 1:
        if cfg.sync_bn:
            if device.type != "cuda":
                raise ValueError("train.sync_bn: SyncBatchNorm needs CUDA devices; on CPU (gloo) each rank "
                                 "normalises with its own batch statistics (set train.sync_bn=false)")
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=not (adapt and cfg.domain_weight > 0))
    optimizer = make_optimizer(model, cfg)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    scaler = torch.amp.GradScaler(device.type, enabled=(cfg.amp == "fp16" and device.type == "cuda"))
    if state.rng is not None:
        torch.set_rng_state(state.rng)
    else:
        torch.manual_seed(cfg.seed * 1000 + rank)
    source_y = data.source_y.to(device)
    target_d = data.target_domain.to(device) if adapt else None
    running = _Running()

    while state.step < cfg.steps:
        step = state.step
        p = progress(step, cfg.steps)
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * g["lr_mult"] * lr_factor(p, cfg.lr_alpha, cfg.lr_beta)
        coeff = cfg.lambda_max * grl_coeff(p, cfg.lambda_gamma)

        si = batch_indices(len(data.source_x), cfg.batch_size, step, cfg.seed, rank, world)
        xs, ys = take(data.source_x, si, device), source_y[torch.as_tensor(si, device=device)]
        with autocast_for(device, cfg.amp):
            if adapt:
                ti = batch_indices(len(data.target_x), cfg.batch_size, step, cfg.seed + 7919, rank, world)
                xt = take(data.target_x, ti, device)
                dom = torch.cat([torch.zeros_like(ys), target_d[torch.as_tensor(ti, device=device)]])
                logits, dom_logits, _ = net(torch.cat([xs, xt]), coeff, with_domain=cfg.domain_weight > 0)
                logits_s, logits_t = logits[: len(xs)], logits[len(xs):]
            else:
                logits_s, dom_logits, _ = net(xs, 0.0, with_domain=False)
            class_loss = F.cross_entropy(logits_s.float(), ys)
            loss = class_loss
            terms = {"class_loss": class_loss.detach()}
            if adapt and dom_logits is not None:
                d_loss = domain_loss(dom_logits, dom)
                loss = loss + cfg.domain_weight * d_loss
                terms["domain_loss"] = d_loss.detach()
                running.add_count("domain_acc", _domain_correct(dom_logits.detach(), dom), len(dom))
            if adapt and cfg.entropy_weight > 0:
                ent = entropy(logits_t)
                loss = loss + cfg.entropy_weight * ent
                terms["entropy"] = ent.detach()

        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"training diverged at step {step}: loss is {float(loss)}; lower train.lr")
        running.add(terms, (logits_s.detach().argmax(1) == ys).float().mean())
        state.step = step + 1

        if progress_cb is not None:
            progress_cb(state.step, cfg.steps, running.peek())
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
            metrics = {"step": state.step, "lambda": coeff, "lr": optimizer.param_groups[0]["lr"],
                       **running.reduce(world)}
            if evaluate is not None:
                metrics.update(evaluate(model, state.step))
            state.history.append(metrics)
            state.rng = torch.get_rng_state()
            if on_eval is not None:
                on_eval(model, optimizer, state, metrics)
    return state


class _Running:
    """Means of the training terms since the last evaluation (reduced over ranks)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, terms: dict[str, torch.Tensor], train_acc: torch.Tensor) -> None:
        for k, v in {**terms, "train_acc": train_acc}.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def add_count(self, key: str, correct: int, total: int) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + correct
        self.counts[key] = self.counts.get(key, 0) + total

    def peek(self) -> dict[str, float]:
        return {k: self.sums[k] / max(self.counts[k], 1) for k in self.sums}

    def reduce(self, world: int) -> dict[str, float]:
        keys = sorted(self.sums)
        if world > 1 and keys:
            t = torch.tensor([[self.sums[k], self.counts[k]] for k in keys], dtype=torch.float64)
            dist.all_reduce(t)
            out = {k: float(t[i, 0] / max(t[i, 1], 1)) for i, k in enumerate(keys)}
        else:
            out = self.peek()
        self.sums, self.counts = {}, {}
        return out
