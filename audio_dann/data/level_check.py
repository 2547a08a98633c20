"""Can the source's classes be told apart by how loud their recordings are?

If they can, the classes were probably recorded differently (another gain, microphone or room per
class), and a network will learn the recording set-up instead of the sound: it will look excellent on
the source's own validation files and fail on any other device. PhysioNet 2016's database e is such a
source: nine in ten of its abnormal recordings peak at full scale (0 dBFS), against a median of -1.9 dB
for its normal ones, so the level alone tells the classes apart at 0.89 balanced accuracy; models
trained on it are at chance on the other databases (recipes/heart_sounds).

The check is cheap and needs no target: each source file's level (root mean square and peak of its
first minute, in dB; at most 1000 files) and a cross-validated logistic regression from those two numbers alone
to the file's class (scikit-learn; folds by file, classes weighted equally). ``prepare`` runs it and
warns when the balanced accuracy is far above chance.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import AudioError
from .audio import DECODE_ERRORS, open_audio

__all__ = ["LEVEL_WARNING", "level_check", "prepared_level_check", "recording_level"]

LEVEL_WARNING = 0.6  # warn at chance + 0.6 x (1 - chance): 0.80 for two classes, 0.64 for ten


def recording_level(path: str | Path, seconds: float = 60.0) -> tuple[float, float]:
    """The level of a recording's first ``seconds`` in dB: ``(root mean square, peak)``."""
    with open_audio(path) as f:
        x = f.read(int(seconds * f.samplerate), dtype="float32", always_2d=True).mean(1)
    if not len(x):
        return -120.0, -120.0
    return float(10 * np.log10(np.mean(np.square(x)) + 1e-12)), float(20 * np.log10(np.abs(x).max() + 1e-6))


def level_check(levels: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> dict | None:
    """Cross-validated balanced accuracy of predicting each file's class ``labels`` ``(n_files,)`` from its
    ``levels`` ``(n_files, 2)`` alone, with the chance level and a ``warning`` when it is far above chance;
    None where a class has fewer than ``folds`` files."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.min() < folds:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
    pred = cross_val_predict(model, levels, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    score = float(np.mean([(pred[labels == c] == c).mean() for c in classes]))
    chance = 1.0 / len(classes)
    out = {"balanced_accuracy": score, "chance": chance, "files": len(labels)}
    if score >= chance + LEVEL_WARNING * (1 - chance):
        out["warning"] = (
            f"warning: the source's classes can be told apart by recording level alone (balanced accuracy "
            f"{score:.2f} over {len(labels)} files, chance {chance:.2f}): they were probably recorded or "
            "processed differently per class (gain, normalisation, device), and a model may learn the "
            "set-up instead of the sound and fail on other devices; check how each class was recorded"
        )
    return out


def prepared_level_check(out: Path, max_files: int = 1000, seed: int = 0) -> dict | None:
    """:func:`level_check` on the source files of the prepared folder ``out`` (at most ``max_files`` of
    them, a seeded choice, each read for its first minute); files that can no longer be read are left out."""
    labels: dict[str, str] = {}
    with open(out / "index.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["domain"] == "source":
                labels.setdefault(r["file"], r["label"])
    files = sorted(labels)
    if len(files) > max_files:
        files = [files[i] for i in sorted(np.random.default_rng(seed).choice(len(files), max_files, replace=False))]
    levels, kept = [], []
    for path in files:
        try:
            levels.append(recording_level(path))
        except (AudioError, *DECODE_ERRORS):  # read by prepare, unreadable since: left out
            continue
        kept.append(labels[path])
    return level_check(np.array(levels), np.array(kept)) if kept else None
