"""Can each database's classes be told apart by how it was recorded, rather than by the heart?

    python recipes/heart_sounds/confound.py --data ../shared/data/physionet2016 [--databases e a b]

For every recording, three sets of features that say little about a heart: its level (RMS and peak of
its first minute, dB: ``audio_dann.data.level_check.recording_level``), its long-term spectrum shape
(the mean log power in six bands, minus their mean) and the per-band dynamics of its first 4 s after
the model's own normalisation (the spread over time of each mel band of the log-mel with its per-band
mean removed). Per database: 5-fold cross-validated balanced accuracy of a logistic regression from
each set to the label; then a dynamics classifier trained on the first database, scored on the others.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audio_dann.config import load_config
from audio_dann.data.level_check import recording_level
from audio_dann.nn.frontend import LogMel

HERE = Path(__file__).resolve().parent
BANDS = [(3, 13), (13, 26), (26, 51), (51, 102), (102, 205), (205, 257)]  # FFT bins of 512 at 2 kHz


def features(path: Path, logmel: LogMel) -> dict[str, np.ndarray]:
    x, _ = sf.read(path, dtype="float32", frames=120_000, always_2d=True)
    x = x.mean(1)
    power = np.abs(np.fft.rfft(x[: len(x) // 512 * 512].reshape(-1, 512), axis=1)) ** 2
    spectrum = np.log(power.mean(0) + 1e-12)
    shape = np.array([spectrum[a:b].mean() for a, b in BANDS])
    with torch.inference_mode():
        m = logmel(torch.from_numpy(x[:8000])[None])[0].numpy()
    m = m - m.mean(1, keepdims=True)
    return {
        "level": np.array(recording_level(path)),
        "spectrum shape": shape - shape.mean(),
        "band dynamics": np.concatenate([m.std(1), np.percentile(m, 90, 1) - np.percentile(m, 10, 1)]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/physionet2016"))
    ap.add_argument("--databases", nargs="+", default=["e", "a", "b", "f"])
    args = ap.parse_args()
    logmel = LogMel.from_config(load_config(HERE / "config.yaml").features).eval()
    rows = list(csv.DictReader(open(args.data / "labels.csv")))
    data = {}
    for db in args.databases:
        items = [r for r in rows if r["database"] == db]
        feats = [features(args.data / "recordings" / f"{r['record']}.flac", logmel) for r in items]
        y = np.array([r["label"] == "abnormal" for r in items])
        data[db] = ({k: np.stack([f[k] for f in feats]) for k in feats[0]}, y)
        scores = []
        for name, x in data[db][0].items():
            model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
            cv = StratifiedKFold(5, shuffle=True, random_state=0)
            scores.append(f"{name} {cross_val_score(model, x, y, cv=cv, scoring='balanced_accuracy').mean():.3f}")
        print(f"{db} ({len(y)} recordings, {y.mean():.0%} abnormal): " + ", ".join(scores), flush=True)
    first = args.databases[0]
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    model.fit(data[first][0]["band dynamics"], data[first][1])
    for db in args.databases[1:]:
        score = balanced_accuracy_score(data[db][1], model.predict(data[db][0]["band dynamics"]))
        print(f"band dynamics trained on {first}, scored on {db}: {score:.3f}")


if __name__ == "__main__":
    main()
