import pytest
import torch

from audio_dann.config import Config, apply_overrides
from audio_dann.errors import BundleError
from audio_dann.nn.bundle import BUNDLE_FORMAT as FORMAT_VERSION
from audio_dann.nn.bundle import load_bundle, make_bundle, save_bundle
from audio_dann.nn.classifier import build_classifier, load_model

CFG = apply_overrides(Config(), ["features.n_mels=16", "model.channels=[4,8]", "model.embedding_dim=8"])


def _bundle(**extra):
    model = build_classifier(CFG, ["a", "b"], ["source", "target"], {"mean": [1.0] * 16, "std": [2.0] * 16})
    return model, make_bundle(CFG, ["a", "b"], ["source", "target"], model.state_dict(), step=5, **extra)


def test_bundle_round_trip_gives_the_same_outputs(tmp_path):
    model, bundle = _bundle()
    save_bundle(bundle, tmp_path / "model.pt")
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temp file left
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.classes == ["a", "b"] and loaded.sample_rate == CFG.features.sample_rate
    assert not loaded.training
    wave = torch.randn(3, 16000)
    model.eval()
    torch.testing.assert_close(loaded(wave), model(wave))
    assert torch.equal(loaded.dann.input_norm.std, torch.full((16,), 2.0))
    raw = torch.load(tmp_path / "model.pt", weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION and raw["step"] == 5 and "torch" in raw["versions"]


def test_missing_key_is_named(tmp_path):
    _, bundle = _bundle()
    del bundle["classes"]
    save_bundle(bundle, tmp_path / "m.pt")
    with pytest.raises(BundleError, match="missing key.*classes"):
        load_bundle(tmp_path / "m.pt")


def test_newer_format_is_refused(tmp_path):
    _, bundle = _bundle()
    bundle["format_version"] = FORMAT_VERSION + 1
    save_bundle(bundle, tmp_path / "m.pt")
    with pytest.raises(BundleError, match="newer"):
        load_bundle(tmp_path / "m.pt")


def test_foreign_and_missing_files(tmp_path):
    (tmp_path / "x.pt").write_text("not a checkpoint")
    with pytest.raises(BundleError, match="not an audio-dann model bundle"):
        load_bundle(tmp_path / "x.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "y.pt")
    with pytest.raises(BundleError, match="no format_version"):
        load_bundle(tmp_path / "y.pt")
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope.pt")
