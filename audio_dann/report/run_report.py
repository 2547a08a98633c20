"""``report``: one ``report.md`` with its PNGs for a finished run.

Curves (losses, accuracies, lambda, domain accuracy), embedding maps of source and
target clips for the initial and the selected model (PCA; t-SNE too when scikit-learn
is installed), proxy A-distance before and after, the target-eval confusion matrix
where labelled target clips exist (report only), and the selection table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.store import open_prepared_many
from ..errors import RunError
from ..files import atomic_write_text
from ..infer.metrics import classification_report
from ..nn.classifier import load_model
from ..nn.outputs import model_outputs
from ..runtime import derive_seed
from ..training.criteria import CRITERIA, proxy_a_distance
from ..training.run_folder import REPORT_ONLY_NOTE, read_run
from .plots import plot_confusion, plot_curves, plot_embeddings

__all__ = ["make_report", "selection_table"]


def selection_table(history: list[dict]) -> str:
    keys = list(CRITERIA.values())
    lines = ["| step | " + " | ".join(keys) + " | target test acc (report only) |", "|---" * (len(keys) + 2) + "|"]
    for h in history:
        sel = h.get("selection", {})
        vals = [sel.get(k, h.get(k)) for k in keys]
        rep = h.get("report_only", {}).get("target_test_acc")
        lines.append(
            f"| {h['step']} | "
            + " | ".join("-" if v is None else f"{v:.4f}" for v in vals)
            + f" | {'-' if rep is None else f'{rep:.4f}'} |"
        )
    return "\n".join(lines)


def make_report(run: str | Path, prepared=None, max_clips: int = 600, tsne: bool = True) -> Path:
    """Write ``RUN/report.md`` and its PNGs; returns the report path.

    ``tsne``: add t-SNE maps where scikit-learn is installed (tens of seconds; PCA maps always).
    """
    finished = read_run(run)
    run, summary, history = finished.path, finished.summary, finished.history
    where = prepared or summary.get("prepared")
    if not where:
        raise RunError(f"{run}: summary.json does not name the prepared folder; pass --prepared")
    prep = open_prepared_many(list(where) if isinstance(where, (list, tuple)) else [where])
    plot_curves(history, run / "curves.png")

    pad = _embedding_maps(run, prep, max_clips, ["pca", "tsne"] if tsne else ["pca"])
    methods = ["pca", "tsne"] if tsne else ["pca"]

    lines = [
        f"# Run report: {run.name}",
        "",
        f"Method **{summary['method']}**, {summary['steps']} steps, seed {summary['seed']}; `model.pt` is step "
        f"{summary['selected']['step']}, chosen by **{summary['selected']['criterion']}** (no target labels)."
        + (
            f" {summary['method_choice'][0].upper()}{summary['method_choice'][1:]}."
            if summary.get("method_choice")
            else ""
        ),
        "",
        "![curves](curves.png)",
        "",
    ]
    if summary["method"] == "dann":
        lines += [
            "Domain accuracy is the domain classifier's accuracy on training batches: near 0.5 (two domains) "
            "means the features hide the domain.",
            "",
        ]
    lines += _estimate_lines(summary)
    if pad:
        lines += (
            [
                "## Domain distance",
                "",
                "| model | proxy A-distance (0 = indistinguishable, 2 = disjoint) |",
                "|---|---|",
            ]
            + [f"| {k} | {v:.3f} |" for k, v in pad.items()]
            + [""]
        )
    for method in methods:
        lines += [f"## Embeddings ({method.upper()})", "", f"![embeddings](embeddings_{method}.png)", ""]
    lines += _target_test_lines(run, prep)
    lines += [
        "## Selection criteria at each evaluation",
        "",
        "Higher is better for source_val_acc and snd, lower for dev_risk and rv_risk.",
        "",
        selection_table(history),
        "",
    ]
    out = run / "report.md"
    atomic_write_text(out, "\n".join(lines))
    return out


def _estimate_lines(summary: dict) -> list[str]:
    """The report's lines on the label-free estimate of target accuracy and the self-training stage."""
    lines = []
    est = summary.get("estimated_target_accuracy")
    if est:
        refs = est.get("reference")
        refs = ", ".join(f"`{r}`" for r in ([refs] if isinstance(refs, str) else refs or []))
        others = ", ".join(f"{k} {v:.3f}" for k, v in est.get("all", {}).items())
        by = f", set by {est['limited_by']}" if est.get("limited_by") else ""
        lines += [
            "## Estimated target accuracy (no target label read)",
            "",
            f"**{est['value']:.3f}** ({est['estimator']}{by}; on {est['on']})."
            + (f" Lower bound: **{est['lower_bound']:.3f}**." if est.get("lower_bound") is not None else "")
            + (f" {est['caution']}." if est.get("caution") else "")
            + (f" Every figure: {others}." if others else "")
            + (f" Agreement measured against {refs}." if refs else "")
            + (
                " This run used `--label-shift`: the prior bound is reported but is not part of the estimate."
                if est.get("label_shift")
                else ""
            ),
        ]
        if est.get("estimator") == "combined" and "critic" in est.get("combines", []):
            lines += [
                "Without a second model the estimate comes from a critic on the model's own embeddings, "
                "capped by the prior bound, and so does its lower bound (see the estimate guide and the "
                "results page for how far off they measured)."
            ]
        elif est.get("estimator") == "combined":  # runs from before 2026-11-29 used one estimator
            lines += [
                "The estimate is the lowest of ATC-NE, the prior bound (unless `--label-shift`) and, with a "
                "second model of the task (`train --reference`), their agreement: each overestimates in its "
                "own failure (measured on the FSDD recipe grids: 4-5 points off on average with a reference, "
                "15 without; see the README)."
            ]
        if est.get("prior_bound") is not None:
            lines += [
                f"Prior bound: at most **{est['prior_bound']:.3f}** can be right if the target's classes are as "
                "frequent as the source's." + (f" **{est['warning']}**" if est.get("warning") else "")
            ]
        lines += [""]
    stage = summary.get("self_training")
    if stage:
        guard = stage.get("guard") or {}
        if stage.get("kept") == "original":
            lines += [
                f"The self-training stage **{stage['method']}** ran on {stage['clips']} unlabelled target clips "
                f"but was **undone** by its guard: {_guard_text(guard)}, so the saved model is the network before it "
                "(`train.self_training_guard=false` keeps the stage).",
                "",
            ]
        else:
            lines += [
                f"The saved model went through the self-training stage **{stage['method']}** on "
                f"{stage['clips']} unlabelled target clips after training"
                + (f" (its guard: {_guard_text(guard, kept=True)})." if "before" in guard else "."),
                "",
            ]
        ens = stage.get("ensemble")
        members = (ens or {}).get("members") or (ens or {}).get("runs", [])  # "runs": summaries before the plan
        if ens:
            lines += [
                f"Its pseudo-labels were the mean predictions of {len(members)} networks: this one and "
                f"{', '.join(map(str, members[1:]))} (`train.latent_ensemble`; "
                f"the others under `members/`), each after AdaBN; agreement of each with that mean: "
                f"{', '.join(f'{a:.3f}' for a in ens['agreement_with_teacher'])}."
                + (
                    f" Report only (target labels, never used to choose): the mean's test accuracy "
                    f"{ens['report_only']['teacher_test_acc']:.3f}, the networks' "
                    f"{', '.join(f'{a:.3f}' for a in ens['report_only']['member_test_acc'])}."
                    if "report_only" in ens
                    else ""
                ),
                "",
            ]
    return lines


def _embedding_maps(run: Path, prep, max_clips: int, methods: list[str]) -> dict:
    """Embedding maps of up to ``max_clips`` source and target clips, initial and selected weights, as
    PNGs; returns the proxy A-distance of each."""
    rng = np.random.default_rng(derive_seed(0, "report/clips"))
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
        z, _ = model_outputs(load_model(run / file).dann, x)
        maps[name] = (z.numpy(), is_target, labels)
        if len(tgt):
            pad[name] = proxy_a_distance(z[~torch.from_numpy(is_target)], z[torch.from_numpy(is_target)])
    for method in methods:
        plot_embeddings(maps, prep.classes, run / f"embeddings_{method}.png", method)
    return pad


def _target_test_lines(run: Path, prep) -> list[str]:
    """The report-only section on the labelled target test clips (none without them)."""
    lines = []
    test = prep.rows("test")
    if len(test):
        model = load_model(run / "model.pt")
        xt = torch.from_numpy(np.asarray(prep.features[test], dtype=np.float32))
        _, logits = model_outputs(model.dann, xt)
        y = prep.labels(test)
        rep = classification_report(y, logits.argmax(1).numpy(), prep.classes)
        plot_confusion(
            rep["confusion"], prep.classes, run / "confusion_target_test.png", title="target test clips (report only)"
        )
        lo, hi = rep["accuracy_ci95"]
        lines += [
            "## Target test clips (report only)",
            "",
            f"{REPORT_ONLY_NOTE}.",
            "",
            f"Clip accuracy {rep['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}, n={rep['n']}), macro-F1 "
            f"{rep['macro_f1']:.3f}.",
            "",
            "![confusion](confusion_target_test.png)",
            "",
        ]
    return lines


def _guard_text(guard: dict, kept: bool = False) -> str:
    """What the stage's guard compared, in the words of the run's version (summaries written before the
    guard compared the lower bound before with the estimate after compared two estimates)."""
    if "compares" in guard:
        verb = "stayed above" if kept else "fell below"
        return (
            f"the label-free estimate after it, {guard['after']:.3f}, {verb} the lower bound before it, "
            f"{guard['before']:.3f}"
        )
    return f"the label-free estimate went from {guard['before']:.3f} to {guard['after']:.3f}"
