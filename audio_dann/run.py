"""``train``: a prepared folder in, a run folder out (model.pt, last.pt, metrics, plots).

Selection of ``model.pt`` never reads target labels: target-test accuracy is
computed for the record only and stored under ``report_only``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_write_text
from .checkpoint import BundleError, load_bundle, make_bundle, save_bundle
from .classifier import build_classifier
from .config import Config, dump_config
from .distributed import all_reduce_sum, barrier, init_from_env, rank_world, shard_range, shutdown
from .loop import TrainData, TrainState, fit, predict_logits, seed_everything
from .selection import dev_risk, embed_outputs, proxy_a_distance, reverse_validation_risk, snd
from .selection import score as criterion_score
from .store import PreparedData, open_prepared_many, write_json

__all__ = ["train", "resolve_device", "RunError", "REPORT_ONLY_NOTE"]

REPORT_ONLY_NOTE = "target labels: reported only, never used for training, selection or stopping"
_IN_MEMORY_LIMIT = 2 * 1024 ** 3  # bytes of float16 features loaded into RAM; beyond, read from the memmap


class RunError(ValueError):
    """A run folder or training request cannot be used; the message names the path."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; asking for a missing device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"--device {name}: no CUDA device is available on this machine")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise RunError(f"--device {name}: expected auto, cpu or cuda[:N]")
    return torch.device(name)


def _rows_data(prep: PreparedData, rows: np.ndarray, in_memory: bool):
    if in_memory:
        return torch.from_numpy(np.ascontiguousarray(prep.features[rows]))
    return _RowView(prep.features, rows)


class _RowView:
    """A lazy view ``features[rows]`` over a memmap (no copy until indexed)."""

    def __init__(self, features: np.ndarray, rows: np.ndarray) -> None:
        self.features, self.rows = features, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx):
        return self.features[self.rows[idx]]


def _criteria(model, cfg, src_x, src_y, val_x, val_y, tgt_x, val_acc, device) -> dict:
    """Every label-free selection criterion for the current weights (see selection.py)."""
    out = {"source_val_acc": val_acc}
    if len(tgt_x) == 0:
        return out
    src_z, _ = embed_outputs(model, src_x, device)
    tgt_z, tgt_logits = embed_outputs(model, tgt_x, device)
    out["snd"] = snd(tgt_logits)
    if len(val_x) > 1:
        val_z, val_logits = embed_outputs(model, val_x, device)
        losses = F.cross_entropy(val_logits, torch.as_tensor(val_y), reduction="none")
        out["dev_risk"] = dev_risk(src_z, tgt_z, val_z, losses)
        if cfg.rv_steps > 0:
            out["rv_risk"] = reverse_validation_risk(model, src_x, src_y, val_x, val_y, tgt_x, cfg, cfg.rv_steps,
                                                     device)
    out["proxy_a_distance"] = proxy_a_distance(src_z, tgt_z)
    return out


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


def train(prepared: str | Path | list[str | Path], out: str | Path, *, config: Config | None = None, method: str | None = None,
          seed: int | None = None, device: str = "auto", resume: bool = False,
          progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train on a prepared folder and write the run folder ``out``.

    Args:
        prepared: the folder ``prepare`` wrote, or several (shards of one corpus, prepared alike).
        out: the run folder (created).
        config: model and training settings (features always come from ``prepared``).
        method: ``"dann"`` or ``"source-only"`` (overrides ``config.train.method``).
        seed: overrides ``config.train.seed``.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        resume: continue from ``out/last.pt`` (its saved configuration wins).
        progress: ``(step, total, running_metrics)`` callback.
    Returns:
        the run summary (also written to ``summary.json``).
    """
    started = init_from_env(resolve_device(device).type)
    try:
        return _train(prepared, out, config=config, method=method, seed=seed, device=device, resume=resume,
                      progress=progress)
    finally:
        shutdown(started)


def _train(prepared, out, *, config, method, seed, device, resume, progress) -> dict:
    t0 = time.perf_counter()
    prep = open_prepared_many(list(prepared) if isinstance(prepared, (list, tuple)) else [prepared])
    out = Path(out)
    rank, world = rank_world()
    config = config or Config()
    train_cfg = config.train
    if method is not None:
        train_cfg = replace(train_cfg, method=method)
    if seed is not None:
        train_cfg = replace(train_cfg, seed=seed)
    config = replace(config, features=prep.config.features, data=prep.config.data, train=train_cfg).validate()

    state, opt_state, start_bundle = None, None, None
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise RunError(f"{out}: nothing to resume (no last.pt); drop --resume to start a new run")
        start_bundle, config = load_bundle(last)
        if "loop_state" not in start_bundle:
            raise BundleError(f"{last}: not a resumable checkpoint (no loop_state)")
        ls = start_bundle["loop_state"]
        state = TrainState(step=int(ls["step"]), history=list(ls["history"]), best=ls["best"], rng=ls["rng"])
        opt_state = start_bundle["optimizer_state"]
    elif (out / "summary.json").exists() or last.exists():
        raise RunError(f"{out}: run folder already holds a run; use --resume to continue it or choose a new --out")
    barrier()  # every rank has checked the run folder before rank 0 writes to it

    device_t = resolve_device(device)
    if device_t.type == "cuda" and world > 1:
        device_t = torch.device("cuda", torch.cuda.current_device())
    cfg = config.train
    seed_everything(cfg.seed)
    adapt = cfg.method == "dann"

    src_rows = prep.rows("train", source=True)
    tgt_rows = prep.rows("train", source=False)
    val_rows = prep.rows("val", source=True)
    test_rows = prep.rows("test")
    if len(src_rows) == 0:
        raise RunError(f"{prep.root}: no labelled source training clips")
    needed = sum(len(r) for r in (src_rows, tgt_rows, val_rows, test_rows)) * prep.features[0].nbytes
    in_memory = needed <= _IN_MEMORY_LIMIT
    data = TrainData(
        source_x=_rows_data(prep, src_rows, in_memory),
        source_y=torch.from_numpy(prep.labels(src_rows)),
        target_x=_rows_data(prep, tgt_rows, in_memory) if adapt else None,
        target_domain=torch.from_numpy(prep.domain_ids(tgt_rows)) if adapt else None,
    )
    val_x, val_y = _rows_data(prep, val_rows, in_memory), prep.labels(val_rows)
    test_x, test_y = _rows_data(prep, test_rows, in_memory), prep.labels(test_rows)

    model = build_classifier(config, prep.classes, prep.domains, prep.stats)
    if start_bundle is not None:
        model.load_state_dict(start_bundle["model_state"])
    model.to(device_t)
    is_main = rank == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(config, out / "config.yaml")
        # metrics.jsonl mirrors the saved history (a resumed run drops lines logged after last.pt)
        atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in (state.history if state else [])))
        if start_bundle is None:  # the initial weights, for the report's before/after embedding maps
            save_bundle(make_bundle(config, prep.classes, prep.domains, model.state_dict(), step=0), out / "init.pt")

    # Fixed subsets (at most train.selection_clips) for the label-free selection criteria.
    pick = np.random.default_rng([cfg.seed, 0x5E1])
    sel_src = np.sort(pick.permutation(len(src_rows))[: cfg.selection_clips])
    sel_tgt = np.sort(pick.permutation(len(tgt_rows))[: cfg.selection_clips])
    sel_src_x = _rows_data(prep, src_rows[sel_src], True)
    sel_tgt_x = _rows_data(prep, tgt_rows[sel_tgt], True)
    pool_y = prep.labels(tgt_rows)
    has_pool_labels = len(tgt_rows) > 0 and bool((pool_y >= 0).all())
    pool_x = None
    if has_pool_labels:  # the target pool's labels, when a manifest carried them: report only
        pool_x = data.target_x if data.target_x is not None else _rows_data(prep, tgt_rows, in_memory)

    def evaluate(dann, step: int) -> dict:
        m = {"source_val_acc": _accuracy(dann, val_x, val_y, device_t, cfg.amp)}
        m["selection"] = _criteria(dann, cfg, sel_src_x, data.source_y[sel_src], val_x, val_y, sel_tgt_x,
                                   m["source_val_acc"], device_t)
        report = {}
        if len(test_rows):
            report["target_test_acc"] = _accuracy(dann, test_x, test_y, device_t, cfg.amp)
        if has_pool_labels:
            report["target_pool_acc"] = _accuracy(dann, pool_x, pool_y, device_t, cfg.amp)
        if report:
            m["report_only"] = {**report, "note": REPORT_ONLY_NOTE}
        return m

    def bundle(dann, **extra) -> dict:
        return make_bundle(config, prep.classes, prep.domains, model.state_dict(), **extra)

    def on_eval(dann, optimizer, st: TrainState, metrics: dict) -> None:
        score = criterion_score(cfg.select, metrics)
        score = -math.inf if score is None else score
        if st.best is None or score >= st.best["score"]:
            st.best = {"step": st.step, "score": score, "criterion": cfg.select}
            if is_main:
                save_bundle(bundle(dann, step=st.step, selected_by=cfg.select), out / "model.pt")
        if is_main:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            save_bundle(bundle(dann, step=st.step, optimizer_state=optimizer.state_dict(),
                               loop_state={"step": st.step, "history": st.history, "best": st.best, "rng": st.rng}),
                        last)

    opt = None if opt_state is None else opt_state
    state = fit(model.dann, data, cfg, device=device_t, state=state, optimizer_state=opt, evaluate=evaluate,
                on_eval=on_eval, progress_cb=progress if is_main else None)

    final = state.history[-1] if state.history else {}
    summary = {
        "prepared": [str(Path(r).resolve()) for r in (prep.roots or [prep.root])],
        "method": cfg.method, "steps": cfg.steps, "seed": cfg.seed, "device": str(device_t), "world_size": world,
        "selected": {"step": state.best["step"], "criterion": cfg.select, "score": state.best["score"]},
        "final": {k: v for k, v in final.items() if k != "report_only"},
        "clips": {"source_train": len(src_rows), "target_train": len(tgt_rows) if adapt else 0,
                  "source_val": len(val_rows), "target_test": len(test_rows)},
        "train_seconds": time.perf_counter() - t0,
    }
    if len(test_rows):
        at_sel = next((h for h in state.history if h["step"] == state.best["step"]), {})
        summary["report_only"] = {
            "target_test_acc_selected": at_sel.get("report_only", {}).get("target_test_acc"),
            "target_test_acc_final": final.get("report_only", {}).get("target_test_acc"),
            "note": REPORT_ONLY_NOTE}
    if is_main:
        write_json(out / "summary.json", summary)
        sel = load_bundle(out / "model.pt")[0]
        sel["summary"] = summary
        save_bundle(sel, out / "model.pt")
        from .runreport import make_report
        make_report(out, prep.roots or [prep.root], tsne=False)  # `audio-dann report RUN` adds t-SNE maps
    return summary


