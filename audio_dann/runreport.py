"""``report``: one ``report.md`` with its PNGs for a finished run.

Curves (losses, accuracies, lambda, domain accuracy), embedding maps of source and
target clips for the initial and the selected model (PCA; t-SNE too when scikit-learn
is installed), proxy A-distance before and after, the target-eval confusion matrix
where labelled target clips exist (report only), and the selection table.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write_text
from .checkpoint import load_bundle
from .classifier import AudioClassifier
from .metrics import classification_report
from .report import plot_confusion, plot_curves, plot_embeddings
from .run import REPORT_ONLY_NOTE, RunError
from .selection import CRITERIA, embed_outputs, proxy_a_distance
from .store import open_prepared_many

__all__ = ["make_report", "selection_table"]


def _load(path: Path) -> AudioClassifier:
    bundle, config = load_bundle(path)
    model = AudioClassifier(config, bundle["classes"], bundle["domains"])
    model.load_state_dict(bundle["model_state"])
    return model.eval()


def selection_table(history: list[dict]) -> str:
    keys = list(CRITERIA.values())
    lines = ["| step | " + " | ".join(keys) + " | target test acc (report only) |",
             "|---" * (len(keys) + 2) + "|"]
    for h in history:
        sel = h.get("selection", {})
        vals = [sel.get(k, h.get(k)) for k in keys]
        rep = h.get("report_only", {}).get("target_test_acc")
        lines.append(f"| {h['step']} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in vals) +
                     f" | {'-' if rep is None else f'{rep:.4f}'} |")
    return "\n".join(lines)


def make_report(run: str | Path, prepared=None, max_clips: int = 600, tsne: bool = True) -> Path:
    """Write ``RUN/report.md`` and its PNGs; returns the report path.

    ``tsne``: add t-SNE maps where scikit-learn is installed (tens of seconds; PCA maps always).
    """
    run = Path(run)
    if not (run / "summary.json").is_file():
        raise RunError(f"{run}: not a finished run (no summary.json)")
    summary = json.loads((run / "summary.json").read_text())
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    where = prepared or summary.get("prepared")
    if not where:
        raise RunError(f"{run}: summary.json does not name the prepared folder; pass --prepared")
    prep = open_prepared_many(list(where) if isinstance(where, (list, tuple)) else [where])
    plot_curves(history, run / "curves.png")

    rng = np.random.default_rng(0)
    src = prep.rows("train", source=True)
    tgt = prep.rows("train", source=False)
    src = np.sort(rng.permutation(src)[:max_clips])
    tgt = np.sort(rng.permutation(tgt)[:max_clips])
    rows = np.concatenate([src, tgt])
    x = torch.from_numpy(np.asarray(prep.features[rows], dtype=np.float32))
    is_target = np.r_[np.zeros(len(src), bool), np.ones(len(tgt), bool)]
    labels = prep.labels(rows)
    maps, pad = {}, {}
    for name, file in (("initial", "init.pt"), ("selected", "model.pt")):
        if not (run / file).is_file():
            continue
        z, _ = embed_outputs(_load(run / file).dann, x)
        maps[name] = (z.numpy(), is_target, labels)
        if len(tgt):
            pad[name] = proxy_a_distance(z[~torch.from_numpy(is_target)], z[torch.from_numpy(is_target)])
    methods = ["pca"]
    if tsne:
        try:
            import sklearn  # noqa: F401
            methods.append("tsne")
        except ImportError:
            pass
    for method in methods:
        plot_embeddings(maps, prep.classes, run / f"embeddings_{method}.png", method)

    lines = [f"# Run report: {run.name}", "",
             f"Method **{summary['method']}**, {summary['steps']} steps, seed {summary['seed']}; `model.pt` is step "
             f"{summary['selected']['step']}, chosen by **{summary['selected']['criterion']}** (no target labels).", "",
             "![curves](curves.png)", "",
             "Domain accuracy is the domain classifier's accuracy on training batches: near 0.5 (two domains) "
             "means the features hide the domain.", ""]
    if pad:
        lines += ["## Domain distance", "", "| model | proxy A-distance (0 = indistinguishable, 2 = disjoint) |",
                  "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in pad.items()] + [""]
    for method in methods:
        lines += [f"## Embeddings ({method.upper()})", "", f"![embeddings](embeddings_{method}.png)", ""]
    test = prep.rows("test")
    if len(test):
        model = _load(run / "model.pt")
        xt = torch.from_numpy(np.asarray(prep.features[test], dtype=np.float32))
        _, logits = embed_outputs(model.dann, xt)
        y = prep.labels(test)
        rep = classification_report(y, logits.argmax(1).numpy(), prep.classes)
        plot_confusion(rep["confusion"], prep.classes, run / "confusion_target_test.png",
                       title="target test clips (report only)")
        lo, hi = rep["accuracy_ci95"]
        lines += ["## Target test clips (report only)", "", f"{REPORT_ONLY_NOTE}.", "",
                  f"Clip accuracy {rep['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}, n={rep['n']}), macro-F1 "
                  f"{rep['macro_f1']:.3f}.", "", "![confusion](confusion_target_test.png)", ""]
    lines += ["## Selection criteria at each evaluation", "",
              "Higher is better for source_val_acc and snd, lower for dev_risk and rv_risk.", "",
              selection_table(history), ""]
    out = run / "report.md"
    atomic_write_text(out, "\n".join(lines))
    return out
