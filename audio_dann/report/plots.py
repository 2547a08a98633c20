"""Plots and run reports (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..files import atomic_path  # noqa: E402

__all__ = ["plot_curves", "plot_confusion", "plot_embeddings", "plot_detections"]


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Losses, accuracies (target test marked report only), lambda and domain accuracy over steps."""
    if not history:
        return
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key in ("class_loss", "domain_loss", "entropy"):
        if any(key in h for h in history):
            axes[0].plot(steps, [h.get(key, np.nan) for h in history], label=key)
    axes[0].set_title("training losses")
    axes[0].legend()
    for key, label in (("train_acc", "source train"), ("source_val_acc", "source val")):
        axes[1].plot(steps, [h.get(key) if h.get(key) is not None else np.nan for h in history], label=label)
    if any("report_only" in h for h in history):
        axes[1].plot(
            steps,
            [h.get("report_only", {}).get("target_test_acc", np.nan) for h in history],
            "--",
            label="target test (report only)",
        )
    axes[1].set_title("accuracy")
    axes[1].set_ylim(0, 1.02)
    axes[1].legend()
    axes[2].plot(steps, [h.get("lambda", np.nan) for h in history], label="lambda (GRL)")
    if any("domain_acc" in h for h in history):
        axes[2].plot(steps, [h.get("domain_acc", np.nan) for h in history], label="domain accuracy")
        axes[2].axhline(0.5, color="grey", lw=0.5)
    axes[2].set_title("adversary")
    axes[2].legend()
    for ax in axes:
        ax.set_xlabel("step")
    _save(fig, Path(path))


def plot_confusion(confusion: list[list[int]], classes: list[str], path: str | Path, title: str = "") -> None:
    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(classes), 1 + 0.5 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, Path(path))


def _project_2d(z: np.ndarray, method: str) -> np.ndarray:
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, init="pca", perplexity=min(30, max(5, len(z) // 10)), random_state=0).fit_transform(
            z
        )
    from sklearn.decomposition import PCA

    return PCA(n_components=2).fit_transform(z)


def plot_embeddings(
    maps: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    classes: list[str],
    path: str | Path,
    method: str = "pca",
) -> None:
    """One row per model (``name -> (embeddings, is_target, class_index)``): coloured by domain, then by class."""
    fig, axes = plt.subplots(len(maps), 2, figsize=(11, 5 * len(maps)), squeeze=False)
    for row, (name, (z, is_target, label)) in enumerate(maps.items()):
        xy = _project_2d(z, method)
        ax = axes[row, 0]
        ax.scatter(*xy[~is_target].T, s=6, alpha=0.6, label="source")
        ax.scatter(*xy[is_target].T, s=6, alpha=0.6, label="target")
        ax.set_title(f"{name}: by domain ({method.upper()})")
        ax.legend()
        ax = axes[row, 1]
        known = label >= 0
        sc = ax.scatter(
            *xy[known].T,
            c=label[known],
            cmap="tab10",
            s=6,
            alpha=0.7,
            marker="o",
            vmin=0,
            vmax=max(len(classes) - 1, 1),
        )
        ax.set_title(f"{name}: by class (target classes are report only)")
        handles = [
            plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(i)), label=c)
            for i, c in enumerate(classes[:10])
        ]
        ax.legend(handles=handles, fontsize=7, loc="best")
    _save(fig, Path(path))


def _read_detections(table: Path, fmt: str, audio: str) -> list[tuple[float, float, str, float]]:
    """``(begin, end, label, confidence)`` of ``audio`` from a predict output (csv/jsonl per window, raven,
    audacity); a per-file table gives the file's label over its whole length (end = -1)."""
    import csv
    import json

    if fmt == "audacity":
        label_file = next((p for p in table.rglob(Path(audio).stem + ".txt")), None)
        if label_file is None:
            return []
        return [
            (float(a), float(b), c, float("nan"))
            for a, b, c in (line.split("\t") for line in label_file.read_text().splitlines() if line.strip())
        ]
    with open(table, newline="") as f:
        if fmt == "raven":
            rows = [r for r in csv.DictReader(f, delimiter="\t") if r["Begin Path"] == audio]
            return [
                (
                    float(r["File Offset (s)"]),
                    float(r["File Offset (s)"]) + float(r["End Time (s)"]) - float(r["Begin Time (s)"]),
                    r["Class"],
                    float(r["Confidence"]),
                )
                for r in rows
            ]
        rows = list(csv.DictReader(f)) if fmt == "csv" else [json.loads(x) for x in f if x.strip()]
    out = []
    for r in rows:
        if r["path"] != audio or r["status"] != "ok":
            continue
        if r.get("begin_s") not in (None, ""):
            out.append((float(r["begin_s"]), float(r["end_s"]), r["label"], float(r["confidence"])))
        else:
            out.append((0.0, -1.0, r["label"], float(r["confidence"])))
    return out


def plot_detections(
    model_path: str | Path,
    inputs: str | Path,
    table: str | Path,
    fmt: str,
    path: str | Path,
    max_seconds: float = 120.0,
) -> None:
    """The first readable input file's log-mel spectrogram (its first ``max_seconds``) with the detections
    of ``table`` as labelled spans: what a reviewer checks before opening Raven or Audacity."""
    import torch

    from ..data.audio import load_mono
    from ..data.scan import list_inputs
    from ..errors import AudioError
    from ..nn.classifier import load_model

    model = load_model(model_path)
    for audio in list_inputs(inputs):
        try:
            x = load_mono(audio, model.sample_rate)[: int(max_seconds * model.sample_rate)]
            break
        except AudioError:
            continue
    else:
        raise AudioError(inputs, "no readable audio file to plot")
    with torch.no_grad():
        mel = model.frontend(torch.from_numpy(x)[None])[0].numpy()
    seconds = len(x) / model.sample_rate
    events = _read_detections(Path(table), fmt, audio)
    classes = list(model.classes)
    colours = plt.get_cmap("tab10")
    fig, (ax, lane) = plt.subplots(
        2, 1, figsize=(min(4 + seconds / 4, 18), 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.imshow(mel, origin="lower", aspect="auto", extent=(0, seconds, 0, mel.shape[0]), cmap="magma")
    ax.set_ylabel("mel band")
    ax.set_title(f"{Path(audio).name}: detections ({fmt})")
    for b, e, label, conf in events:
        e = seconds if e < 0 else min(e, seconds)
        if b >= seconds:
            continue
        k = classes.index(label) if label in classes else 0
        row = k % 4
        lane.add_patch(plt.Rectangle((b, row), e - b, 0.8, color=colours(k % 10), alpha=0.7))
        text = label if conf != conf else f"{label} {conf:.2f}"
        lane.text(b + 0.02, row + 0.4, text, fontsize=7, va="center")
        ax.axvspan(b, e, ymin=0.97, ymax=1.0, color=colours(k % 10))
    lane.set_ylim(0, 4)
    lane.set_yticks([])
    lane.set_xlabel("time (s)")
    lane.set_xlim(0, seconds)
    _save(fig, Path(path))
