"""The evaluation at every ``eval_every`` steps: source validation accuracy, the label-free selection
criteria, and report-only target accuracies (never used for training, selection or stopping)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..nn.outputs import model_outputs, predict_logits
from ..runtime import all_reduce_sum, derive_seed, rank_world, shard_range
from .clips import Clips, take_rows
from .criteria import dev_risk, proxy_a_distance, snd
from .reverse import reverse_validation_risk
from .run_folder import REPORT_ONLY_NOTE

__all__ = ["Evaluator", "accuracy"]


class Evaluator:
    """``(dann, step) -> metrics``: source validation accuracy, every label-free selection criterion on
    fixed subsets of at most ``train.selection_clips`` clips, and report-only target accuracies.
    ``cfg.method`` is the training loop's method (``dann`` or ``source-only``)."""

    def __init__(self, clips: Clips, cfg: TrainConfig, device: torch.device) -> None:
        self.clips, self.cfg, self.device = clips, cfg, device
        pick = np.random.default_rng(derive_seed(cfg.seed, "selection/subsets"))
        self.sel_src = np.sort(pick.permutation(clips.n_source)[: cfg.selection_clips])
        sel_tgt = np.sort(pick.permutation(clips.n_target)[: cfg.selection_clips])
        self.src_x = take_rows(clips.data.source_x, self.sel_src)
        self.tgt_x = take_rows(clips.pool_x, sel_tgt)

    def __call__(self, dann, step: int) -> dict:
        c, amp = self.clips, self.cfg.amp
        m = {"source_val_acc": accuracy(dann, c.val_x, c.val_y, self.device, amp)}
        m["selection"] = self._criteria(dann, m["source_val_acc"])
        report = {}
        if len(c.test_y):
            report["target_test_acc"] = accuracy(dann, c.test_x, c.test_y, self.device, amp)
        if c.pool_y is not None:
            report["target_pool_acc"] = accuracy(dann, c.pool_x, c.pool_y, self.device, amp)
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
                out["rv_risk"] = reverse_validation_risk(
                    dann,
                    self.src_x,
                    c.data.source_y[self.sel_src],
                    c.val_x,
                    c.val_y,
                    self.tgt_x,
                    cfg,
                    cfg.rv_steps,
                    device,
                )
        out["proxy_a_distance"] = proxy_a_distance(src_z, tgt_z)
        return out


def accuracy(model, x, y, device, amp: str = "off") -> float | None:
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
