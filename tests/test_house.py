"""Behaviour that had no test before the move into subpackages, and the promise that files written by
the code before the move still load and give the same predictions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_dann.api import prepare, train
from audio_dann.config import Config, apply_overrides
from audio_dann.data.store import open_prepared
from audio_dann.errors import BundleError
from audio_dann.infer.engine import iter_predictions
from audio_dann.infer.metrics import classification_report, confusion_matrix, macro_f1, per_class_recall, wilson_interval
from audio_dann.nn.classifier import build_classifier, load_model
from audio_dann.runtime import derive_seed
from audio_dann.adaptation.objectives import entropy
from audio_dann.training.adversarial import domain_correct, domain_loss

from audio_files import class_folders, tone, write

V1 = Path(__file__).resolve().parent / "fixtures" / "v1"
sys.path.insert(0, str(V1.parent))
from make_v1_fixtures import OVERRIDES as V1_OVERRIDES, probe_waves  # noqa: E402


# --- files written by the format-1 code at f5a7e41 (tests/fixtures/make_v1_fixtures.py) ---

@pytest.mark.parametrize("method", ["source-only", "dann"])
def test_bundles_written_before_the_move_load_and_predict_the_same(tmp_path, method):
    model = load_model(V1 / f"model_{method}.pt")
    # source-only bundles of that time carried an untrained domain head: loaded as it is, never used
    assert model.dann.domain_head is not None
    assert model.config.train.latent_ensemble == ()  # saved before the setting: one network, as it was trained
    assert model.config.train.ensemble_teacher == "adabn"  # and the teacher of that time
    paths = [str(write(tmp_path / f"p{k}.wav", w, model.sample_rate)) for k, w in enumerate(probe_waves(model.sample_rate))]
    expected = json.loads((V1 / f"probs_{method}.json").read_text())
    got = [r.probs for r in iter_predictions(model, paths, workers=0)]
    assert len(got) == len(expected) == 3
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, np.asarray(e), rtol=1e-5, atol=1e-6)


def test_prepared_folder_written_before_the_move_opens_and_trains(tmp_path):
    prep = open_prepared(V1 / "prepared")
    assert prep.classes == ["high", "low"] and prep.domains[0] == "source" and len(prep.features) == len(prep.index)
    cfg = apply_overrides(Config(), V1_OVERRIDES + ["train.steps=2", "train.eval_every=2", "train.batch_size=4",
                                                    "train.rv_steps=0", "train.latent_ensemble=[]"])
    summary = train(V1 / "prepared", tmp_path / "run", config=cfg, method="dann", device="cpu", report=False)
    assert summary["selected"]["step"] == 2 and summary["clips"]["target_train"] == len(prep.rows("train", source=False))


# --- source-only models have no domain head; what a bundle holds decides ---

def test_source_only_bundle_has_no_domain_head_and_reloads(tmp_path):
    cfg = apply_overrides(Config(), V1_OVERRIDES + ["train.method=source-only"])
    model = build_classifier(cfg, ["a", "b"], ["source", "field"])
    assert model.dann.domain_head is None
    model.save(tmp_path / "m.pt")
    assert not any("domain_head" in k for k in torch.load(tmp_path / "m.pt", weights_only=True)["model_state"])
    assert load_model(tmp_path / "m.pt").dann.domain_head is None
    assert build_classifier(apply_overrides(cfg, ["train.method=dann"]), ["a", "b"], ["source", "field"]).dann.domain_head


def test_weights_of_the_wrong_shape_are_refused_naming_the_file(tmp_path):
    cfg = apply_overrides(Config(), V1_OVERRIDES)
    bundle = build_classifier(cfg, ["a", "b"], ["source", "field"]).to_bundle()
    bundle["config"]["model"]["channels"] = [4, 16]  # the weights hold 8 channels
    torch.save(bundle, tmp_path / "m.pt")
    with pytest.raises(BundleError, match=r"m\.pt: weights do not fit the model.*size mismatch|m\.pt: weights do not fit"):
        load_model(tmp_path / "m.pt")


# --- losses and metrics ---

def test_entropy_is_log_c_for_uniform_and_zero_for_certain_predictions():
    assert float(entropy(torch.zeros(4, 5))) == pytest.approx(np.log(5), abs=1e-6)
    assert float(entropy(torch.tensor([[50.0, 0.0, 0.0]]))) == pytest.approx(0.0, abs=1e-6)


def test_entropy_term_makes_target_predictions_confident():
    from audio_dann.config import ModelConfig, TrainConfig
    from audio_dann.nn.dann import build_dann
    from audio_dann.training.loop import TrainData, fit
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(64, 8, 12, generator=g)
    ys = torch.arange(64) % 3
    xs += ys[:, None, None].float()
    xt = torch.randn(64, 8, 12, generator=g) * 2 + 0.5
    data = TrainData(xs, ys, xt, torch.ones(64, dtype=torch.long))
    ents = {}
    for w in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_dann(ModelConfig(channels=(4, 8), embedding_dim=16, domain_hidden=16), 3, 2, n_mels=8)
        fit(model, data, TrainConfig(method="dann", steps=40, batch_size=16, eval_every=40, domain_weight=0.0,
                                      entropy_weight=w))
        with torch.no_grad():
            ents[w] = float(entropy(model.eval()(xt)[0]))
    assert ents[1.0] < 0.5 * ents[0.0], ents


def test_k_way_domain_loss_and_accuracy():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    domains = torch.tensor([0, 1, 2, 2])
    assert domain_correct(logits, domains) == 3
    assert float(domain_loss(logits, domains)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, domains)))
    one = torch.tensor([[3.0], [-3.0], [2.0]])  # one logit: source (0) vs any target (>0)
    assert domain_correct(one, torch.tensor([1, 0, 2])) == 3
    assert float(domain_loss(one, torch.tensor([1, 0, 2]))) == pytest.approx(
        float(torch.nn.functional.binary_cross_entropy_with_logits(one.squeeze(1), torch.tensor([1.0, 0.0, 1.0]))))


def test_k_way_domain_head_learns_three_domains_when_nothing_is_reversed():
    from audio_dann.config import ModelConfig, TrainConfig
    from audio_dann.nn.dann import build_dann
    from audio_dann.training.loop import TrainData, fit
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(60, 8, 12, generator=g)
    dom = torch.tensor([1, 2] * 30)
    xt = torch.randn(60, 8, 12, generator=g) + torch.where(dom == 1, 3.0, -3.0)[:, None, None]
    torch.manual_seed(0)
    model = build_dann(ModelConfig(channels=(4, 8), embedding_dim=16, domain_hidden=16, domain_dropout=0.0,
                                   input_norm="global"), 3, 3, n_mels=8)
    state = fit(model, TrainData(xs, torch.arange(60) % 3, xt, dom),
                TrainConfig(method="dann", steps=80, batch_size=16, eval_every=20, lr=0.1, lambda_max=0.0,
                            entropy_weight=0.0))
    accs = [h["domain_acc"] for h in state.history]  # running accuracy over each 20 steps; chance is 1/3 to 1/2
    assert accs[-1] > 0.75 and accs[-1] > accs[0] + 0.15, accs


def test_metrics_against_hand_counts():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y_true, y_pred, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    recall = per_class_recall(cm)
    np.testing.assert_allclose(recall[:3], [2 / 3, 1 / 2, 1.0]) and np.isnan(recall[3])
    # F1 per class: 0.8, 0.5, 2/3; class 3 is absent from both and left out
    assert macro_f1(cm) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)  # the textbook Wilson interval for 8/10
    rep = classification_report(y_true, y_pred, ["a", "b", "c", "d"])
    assert rep["accuracy"] == pytest.approx(4 / 6) and rep["n"] == 6 and rep["per_class"]["d"]["recall"] is None


# --- prepare ---

def test_a_changed_input_file_changes_the_fingerprint_and_is_prepared_again(tmp_path):
    cfg = apply_overrides(Config(), ["features.n_mels=16", "data.workers=0"])
    src = class_folders(tmp_path / "src", per_class=3)
    tgt = class_folders(tmp_path / "tgt", per_class=2, shift=1.2)
    first = prepare(src, tgt, tmp_path / "p", config=cfg)  # one target given as a plain path, not a list
    assert first.clips_written > 0 and open_prepared(tmp_path / "p").domains == ["source", "tgt"]
    assert prepare(src, [tgt], tmp_path / "p", config=cfg).already_complete
    write(tgt / "low" / "low_0.wav", tone(300, 2.0, 16000), 16000)  # longer: more clips
    again = prepare(src, [tgt], tmp_path / "p", config=cfg)
    assert not again.already_complete and again.clips_written > first.clips_written


def test_derive_seed_is_a_pure_function_of_seed_and_purpose():
    assert derive_seed(3, "batches/source", 1) == derive_seed(3, "batches/source", 1)
    seeds = {derive_seed(s, p, e) for s in (0, 1) for p in ("batches/source", "batches/target") for e in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2 ** 63 for s in seeds)


def test_the_cli_imports_nothing_heavy_until_a_command_runs():
    code = "import sys, audio_dann, audio_dann.cli; print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
