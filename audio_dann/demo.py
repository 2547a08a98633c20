"""``demo``: the whole job on seeded synthetic data: source-only, DANN and ``train``'s default.

Writes a studio (labelled) / field (unlabelled) dataset with :mod:`.data.synth`,
prepares it once, trains source-only, DANN and the default (``method: auto``: source-only,
then the latent-bn stage on the field pool) with the same features, model, budget and seed,
evaluates each on held-out studio and field clips, and writes ``demo_results.json``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .api import evaluate, prepare, train
from .config import Config, apply_overrides
from .data.synth import SynthSpec, write_dataset
from .errors import OptionError
from .files import write_json
from .training.run_folder import REPORT_ONLY_NOTE

__all__ = ["demo_config", "run_demo"]

METHODS = ("source-only", "dann", "auto")


def demo_config(quick: bool = False) -> tuple[SynthSpec, Config]:
    """The demo's data size and settings; ``quick`` is a seconds-long smoke version."""
    if quick:
        spec = SynthSpec(
            studio_train_per_class=8,
            field_train_per_class=8,
            field_test_per_class=4,
            studio_test_per_class=4,
            seconds=0.5,
        )
        overrides = [
            "features.n_mels=32",
            "features.clip_seconds=0.5",
            "train.steps=12",
            "train.eval_every=6",
            "train.batch_size=8",
            "model.channels=[8,16,16]",
            "model.embedding_dim=32",
            "data.workers=0",
        ]
    else:
        spec = SynthSpec()
        overrides = ["features.n_mels=40", "train.steps=600", "train.eval_every=100"]
    # one network: the demo's field set is one synthetic recording condition, and the latent ensemble (for
    # target folders that mix several) would quadruple the demo's training time
    return spec, apply_overrides(Config(), [*overrides, "train.latent_ensemble=[]"])


def run_demo(
    out: str | Path = "demo_out",
    *,
    quick: bool = False,
    seed: int = 0,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    data_only: bool = False,
) -> dict:
    """Run the demo into ``out`` and return the results written to ``demo_results.json``; with
    ``data_only``, write its synthetic data only (``out/data/studio/<class>/``, ``out/data/field/``,
    ``out/data/field_test.csv``) and return their paths."""
    out = Path(out)
    log = log or (lambda _msg: None)
    spec, config = demo_config(quick)
    spec = replace(spec, seed=seed)
    t0 = time.perf_counter()
    _start_afresh(out)
    log(f"writing synthetic studio/field data to {out / 'data'}")
    parts = write_dataset(out / "data", spec)
    if data_only:
        return {"data": {k: str(v) for k, v in parts.items()}}
    log("preparing features")
    prep = prepare(parts["studio"], [parts["field"]], out / "prepared", target_eval=parts["field_test"], config=config)
    results: dict = {"note": f"field test accuracy: {REPORT_ONLY_NOTE}", "seed": seed, "quick": quick}
    for method in METHODS:
        log(f"training {method} ({config.train.steps} steps)")
        run_dir = out / "runs" / method
        cb = (lambda s, total, _m, _name=method: progress(_name, s, total)) if progress else None
        summary = train(out / "prepared", run_dir, config=config, method=method, seed=seed, device=device, progress=cb)
        field = evaluate(run_dir / "model.pt", parts["field_test"])
        studio = evaluate(run_dir / "model.pt", parts["studio_test"])
        results[method.replace("-", "_")] = {
            "target_accuracy": field["accuracy"],
            "target_accuracy_ci95": field["accuracy_ci95"],
            "source_accuracy": studio["accuracy"],
            "target_macro_f1": field["macro_f1"],
            "selected_step": summary["selected"]["step"],  # training, and the self-training stage where one ran
            "train_seconds": summary["train_seconds"] + summary.get("self_training", {}).get("seconds", 0.0),
        }
    results["gain"] = results["dann"]["target_accuracy"] - results["source_only"]["target_accuracy"]
    results["gain_auto"] = results["auto"]["target_accuracy"] - results["source_only"]["target_accuracy"]
    results["seconds"] = time.perf_counter() - t0
    results["prepared_clips"] = prep.clips_written
    write_json(out / "demo_results.json", results)
    return results


_MARKER = ".audio-dann-demo"  # in a folder the demo wrote: it may start it afresh


def _start_afresh(out: Path) -> None:
    """Remove what an earlier demo wrote in ``out``; refuse a folder whose data, prepared or runs
    sub-folders the demo did not write (they would be deleted)."""
    parts = [out / p for p in ("data", "prepared", "runs") if (out / p).exists()]
    if parts and not (out / _MARKER).is_file() and not (out / "demo_results.json").is_file():
        raise OptionError(f"--out {out}: holds {parts[0].name}/, which the demo did not write; choose a new --out")
    for part in parts:
        shutil.rmtree(part)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text(
        "written by audio-dann demo; it removes and rewrites this folder's data, prepared, runs\n"
    )
