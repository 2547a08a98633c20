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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..adaptation.objectives import entropy
from ..config import TrainConfig
from ..errors import DivergedError
from ..nn.dann import DANN
from ..nn.outputs import take
from ..runtime import autocast_for, derive_seed, rank_world
from .adversarial import DomainAdversarialLoss
from .batches import batch_indices
from .schedules import grl_coeff, lr_factor, progress

__all__ = ["TrainData", "TrainState", "fit", "make_optimizer"]


@dataclass
class TrainData:
    """Arrays the loop trains on (tensors or memmaps; rows are clips).

    ``target_domain`` holds 1..K for K target domains (0 is the source).
    """

    source_x: Any
    source_y: torch.Tensor
    target_x: Any = None
    target_domain: torch.Tensor | None = None
    target_sound: nn.Module | None = None  # the target's background and channel and a room, put on source batches


@dataclass
class TrainState:
    """Everything a resumed run needs besides the data: saved whole in ``last.pt``."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    rng: torch.Tensor | None = None


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


def _wrap(model: DANN, cfg: TrainConfig, device: torch.device, world: int) -> nn.Module:
    """The module to call in training: the model itself, or its DDP wrapper under torchrun."""
    if world == 1:
        return model
    net: nn.Module = model
    if cfg.sync_bn:
        if device.type != "cuda":
            raise ValueError(
                "train.sync_bn: SyncBatchNorm needs CUDA devices; on CPU (gloo) each rank "
                "normalises with its own batch statistics (set train.sync_bn=false)"
            )
        net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    adversarial = cfg.method == "dann" and cfg.domain_weight > 0
    return nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=not adversarial
    )


class _Step:
    """One training step's batches and losses; ``__call__(step)`` returns the loss and logged terms."""

    def __init__(
        self,
        net: nn.Module,
        data: TrainData,
        cfg: TrainConfig,
        device: torch.device,
        running: _Running,
        rank: int,
        world: int,
    ) -> None:
        self.net, self.data, self.cfg, self.device, self.running = net, data, cfg, device, running
        self.rank, self.world = rank, world
        self.adapt = cfg.method == "dann"
        self.source_y = data.source_y.to(device)
        weight = class_weights(data.source_y, cfg.class_weights)
        self.class_weight = None if weight is None else weight.to(device)
        self.target_d = data.target_domain.to(device) if self.adapt else None
        self.target_sound = None if data.target_sound is None else data.target_sound.to(device)
        head = getattr(net, "module", net).domain_head
        self.adversarial = DomainAdversarialLoss(head) if self.adapt and cfg.domain_weight > 0 else None

    def _batch(self, x, n_rows: int, step: int, stream: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = batch_indices(n_rows, self.cfg.batch_size, step, self.cfg.seed, self.rank, self.world, stream)
        return take(x, idx, self.device), torch.as_tensor(idx, device=self.device)

    def __call__(self, step: int, coeff: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, {term: value})`` at ``step`` with GRL coefficient ``coeff``; ``train_acc`` is a term."""
        cfg, data = self.cfg, self.data
        xs, si = self._batch(data.source_x, len(data.source_x), step, "source")
        ys = self.source_y[si]
        if self.target_sound is not None:
            xs = self.target_sound(xs, cfg.target_background, cfg.target_channel, cfg.target_reverb)
        with autocast_for(self.device, cfg.amp):
            if not self.adapt:
                logits_s = self.net(xs)[0]
                class_loss = F.cross_entropy(logits_s.float(), ys, weight=self.class_weight)
                return class_loss, {"class_loss": class_loss.detach(), "train_acc": _accuracy(logits_s, ys)}
            xt, ti = self._batch(data.target_x, len(data.target_x), step, "target")
            dom = torch.cat([torch.zeros_like(ys), self.target_d[ti]])
            logits, z = self.net(torch.cat([xs, xt]))
            logits_s, logits_t = logits[: len(xs)], logits[len(xs) :]
            class_loss = F.cross_entropy(logits_s.float(), ys, weight=self.class_weight)
            loss, terms = class_loss, {"class_loss": class_loss.detach(), "train_acc": _accuracy(logits_s, ys)}
            if self.adversarial is not None:
                d_loss = self.adversarial(z, dom, coeff, logits)
                loss = loss + cfg.domain_weight * d_loss
                terms["domain_loss"] = d_loss.detach()
                self.running.add_count("domain_acc", self.adversarial.correct, len(dom))
            if cfg.entropy_weight > 0:
                ent = entropy(logits_t)
                loss = loss + cfg.entropy_weight * ent
                terms["entropy"] = ent.detach()
        return loss, terms


def class_weights(source_y: torch.Tensor, rule: str = "none") -> torch.Tensor | None:
    """The source loss's class weights: None (``none``), or (``balanced``) the inverse of each class's
    share of the source training clips, scaled to a mean of one over the classes present."""
    if rule == "none":
        return None
    counts = torch.bincount(source_y.long()).double()
    weights = torch.where(counts > 0, counts.sum() / counts.clamp_min(1), torch.zeros_like(counts))
    return (weights / weights[counts > 0].mean()).float()


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == y).float().mean()


def fit(
    model: DANN,
    data: TrainData,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    state: TrainState | None = None,
    optimizer_state: dict | None = None,
    evaluate: Callable[[DANN, int], dict] | None = None,
    on_eval: Callable[[DANN, torch.optim.Optimizer, TrainState, dict], None] | None = None,
    progress_cb: Callable[[int, int, dict], None] | None = None,
) -> TrainState:
    """Train ``model`` in place for ``cfg.steps`` steps (continuing from ``state.step``).

    Args:
        model: a :class:`DANN` (with a domain head for ``method="dann"``); already holding
            resumed weights when resuming.
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
    if cfg.method == "auto":
        raise ValueError(
            "train.method 'auto' is resolved by audio_dann.train from the prepared folder; give fit "
            "'dann' or 'source-only'"
        )
    if cfg.method == "dann" and (data.target_x is None or len(data.target_x) == 0):
        raise ValueError("method 'dann' needs unlabelled target clips; none were given")
    if cfg.method == "dann" and cfg.domain_weight > 0 and model.domain_head is None:
        raise ValueError("method 'dann' with train.domain_weight > 0 needs a model with a domain head")
    state = state or TrainState()
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    scaler = torch.amp.GradScaler(device.type, enabled=(cfg.amp == "fp16" and device.type == "cuda"))
    if state.rng is not None:
        torch.set_rng_state(state.rng)
    else:
        torch.manual_seed(derive_seed(cfg.seed, "torch/train", rank))
    running = _Running()
    train_step = _Step(_wrap(model, cfg, device, world), data, cfg, device, running, rank, world)

    while state.step < cfg.steps:
        step = state.step
        p = progress(step, cfg.steps)
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * g["lr_mult"] * lr_factor(p, cfg.lr_alpha, cfg.lr_beta)
        coeff = cfg.lambda_max * grl_coeff(p, cfg.lambda_gamma)
        loss, terms = train_step(step, coeff)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if not math.isfinite(float(loss.detach())):
            raise DivergedError(f"training diverged at step {step}: the loss is {float(loss)}; lower train.lr")
        running.add(terms)
        state.step = step + 1
        if progress_cb is not None:
            progress_cb(state.step, cfg.steps, running.peek())
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
            _evaluate(model, optimizer, state, running, world, coeff, evaluate, on_eval)
    return state


def _evaluate(
    model, optimizer, state: TrainState, running: _Running, world: int, coeff: float, evaluate, on_eval
) -> None:
    """Log the running means and the caller's metrics at ``state.step``, then let the caller checkpoint."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):  # the last step's update overflowed
        raise DivergedError(f"training diverged before step {state.step}: the weights are not finite; lower train.lr")
    metrics = {"step": state.step, "lambda": coeff, "lr": optimizer.param_groups[0]["lr"], **running.reduce(world)}
    if evaluate is not None:
        metrics.update(evaluate(model, state.step))
    state.history.append(metrics)
    state.rng = torch.get_rng_state()
    if on_eval is not None:
        on_eval(model, optimizer, state, metrics)


class _Running:
    """Means of the training terms since the last evaluation (reduced over ranks)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
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
