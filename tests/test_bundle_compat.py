"""Files written by older versions still load and predict the same, and what a bundle holds decides
the model it rebuilds (format 1 bundles and prepared folders, tests/fixtures/make_v1_fixtures.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_files import write

from audio_dann.api import train
from audio_dann.config import Config, apply_overrides
from audio_dann.data.store import open_prepared
from audio_dann.errors import BundleError
from audio_dann.infer.engine import iter_predictions
from audio_dann.nn.classifier import build_classifier, load_model

V1 = Path(__file__).resolve().parent / "fixtures" / "v1"
sys.path.insert(0, str(V1.parent))
from make_v1_fixtures import OVERRIDES as V1_OVERRIDES  # noqa: E402
from make_v1_fixtures import probe_waves  # noqa: E402


@pytest.mark.parametrize("method", ["source-only", "dann"])
def test_format_1_bundles_load_and_predict_as_they_did(tmp_path, method):
    model = load_model(V1 / f"model_{method}.pt")
    # source-only bundles of that time carried an untrained domain head: loaded as it is, never used
    assert model.dann.domain_head is not None
    assert model.config.train.latent_ensemble == ()  # saved before the setting: one network, as it was trained
    assert model.config.train.ensemble_teacher == "adabn"  # and the teacher of that time
    paths = [
        str(write(tmp_path / f"p{k}.wav", w, model.sample_rate)) for k, w in enumerate(probe_waves(model.sample_rate))
    ]
    expected = json.loads((V1 / f"probs_{method}.json").read_text())
    got = [r.probs for r in iter_predictions(model, paths, workers=0)]
    assert len(got) == len(expected) == 3
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, np.asarray(e), rtol=1e-5, atol=1e-6)


def test_format_1_prepared_folders_open_and_train(tmp_path):
    prep = open_prepared(V1 / "prepared")
    assert prep.classes == ["high", "low"] and prep.domains[0] == "source" and len(prep.features) == len(prep.index)
    cfg = apply_overrides(
        Config(),
        V1_OVERRIDES
        + ["train.steps=2", "train.eval_every=2", "train.batch_size=4", "train.rv_steps=0", "train.latent_ensemble=[]"],
    )
    summary = train(V1 / "prepared", tmp_path / "run", config=cfg, method="dann", device="cpu", report=False)
    assert summary["selected"]["step"] == 2 and summary["clips"]["target_train"] == len(
        prep.rows("train", source=False)
    )


def test_source_only_bundle_has_no_domain_head_and_reloads(tmp_path):
    cfg = apply_overrides(Config(), V1_OVERRIDES + ["train.method=source-only"])
    model = build_classifier(cfg, ["a", "b"], ["source", "field"])
    assert model.dann.domain_head is None
    model.save(tmp_path / "m.pt")
    assert not any("domain_head" in k for k in torch.load(tmp_path / "m.pt", weights_only=True)["model_state"])
    assert load_model(tmp_path / "m.pt").dann.domain_head is None
    assert build_classifier(
        apply_overrides(cfg, ["train.method=dann"]), ["a", "b"], ["source", "field"]
    ).dann.domain_head


def test_weights_of_the_wrong_shape_are_refused_naming_the_file(tmp_path):
    cfg = apply_overrides(Config(), V1_OVERRIDES)
    bundle = build_classifier(cfg, ["a", "b"], ["source", "field"]).to_bundle()
    bundle["config"]["model"]["channels"] = [4, 16]  # the weights hold 8 channels
    torch.save(bundle, tmp_path / "m.pt")
    with pytest.raises(
        BundleError, match=r"m\.pt: weights do not fit the model.*size mismatch|m\.pt: weights do not fit"
    ):
        load_model(tmp_path / "m.pt")
