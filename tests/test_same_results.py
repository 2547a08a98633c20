"""The results of the three models a user ships, pinned: ``train``'s default, ``--method dann`` (with its
ensemble) and ``adapt``'s default, on a small fixed task, give the same predictions as when the
fixture was written (``python tests/test_same_results.py`` rewrites it; do that only for a change
that is meant to change results, and say so in the commit). A move of code between modules must
leave these predictions unchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audio_files import TINY_RUN, class_folders  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pinned" / "predictions.json"
# the ensemble on (the default), so --method dann trains its members
OVERRIDES = [s for s in TINY_RUN if not s.startswith("train.latent_ensemble")] + ["train.self_training_epochs=2"]
ATOL = 1e-5  # float32 sums in another order (another CPU's kernels) move probabilities by ~1e-7


def shipped_predictions(root: Path) -> dict[str, list[list[float]]]:
    """Probabilities of each shipped model on the target files of a fixed synthetic task."""
    from audio_dann.api import adapt, prepare, train
    from audio_dann.config import Config, apply_overrides
    from audio_dann.infer.engine import iter_predictions
    from audio_dann.nn.classifier import load_model

    classes = ("low", "mid", "high")
    src = class_folders(root / "src", classes=classes, per_class=6)
    tgt = class_folders(root / "tgt", classes=classes, per_class=5, shift=1.3)
    cfg = apply_overrides(Config(), OVERRIDES)
    prepare(src, [tgt], root / "prep", config=cfg)
    paths = sorted(str(p) for p in tgt.rglob("*.wav"))
    out = {}
    for method in ("auto", "dann", "source-only"):
        train(root / "prep", root / method, config=cfg, method=method, device="cpu", report=False)
    adapt(root / "source-only" / "model.pt", tgt, root / "adapted", device="cpu", workers=0)
    for name in ("auto", "dann", "adapted"):
        model = load_model(root / name / "model.pt")
        out[name] = [r.probs.tolist() for r in iter_predictions(model, paths, workers=0)]
    return out


@pytest.mark.slow
def test_shipped_models_predict_as_when_pinned(tmp_path):
    expected = json.loads(FIXTURE.read_text())
    got = shipped_predictions(tmp_path)
    assert sorted(got) == sorted(expected)
    for name in expected:
        g, e = np.asarray(got[name]), np.asarray(expected[name])
        assert g.shape == e.shape and g.shape[0] == 15, name
        np.testing.assert_allclose(g, e, rtol=0, atol=ATOL, err_msg=name)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(shipped_predictions(Path(tmp))))
    print(f"wrote {FIXTURE}")
