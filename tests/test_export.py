"""ONNX export: the convolutional frontend twin, parity with PyTorch, metadata, the refusal, int8,
and the torch-free example script giving predict's labels."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_files import tone, write

from audio_dann.config import Config, apply_overrides
from audio_dann.nn.classifier import build_classifier, load_model
from audio_dann.nn.frontend import LogMel
from audio_dann.nn.frontend_conv import ConvLogMel

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_predict.py"


@pytest.mark.parametrize("sr,n_mels,win,floor", [(16000, 64, 400, 1e-3), (8000, 40, 200, 1e-6), (22050, 32, 512, 1e-3)])
def test_conv_frontend_equals_the_stft_frontend(sr, n_mels, win, floor):
    logmel = LogMel(sr, 512, win, sr // 100, n_mels, log_floor=floor)
    x = torch.randn(3, sr // 2) * 0.3
    torch.testing.assert_close(ConvLogMel(logmel)(x), logmel(x), rtol=1e-4, atol=2e-4)


def _model(tmp_path: Path, classes=("a", "b", "c")) -> Path:
    torch.manual_seed(0)
    cfg = apply_overrides(
        Config(), ["model.channels=[8,16]", "model.embedding_dim=16", "features.n_mels=32", "train.method=dann"]
    )
    model = build_classifier(cfg, list(classes), ["source", "field"])
    with torch.no_grad():  # batch norm away from its initial statistics, so folding it matters
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 2.0), m.bias.uniform_(-0.5, 0.5)
    model.dann.input_norm.set_stats(np.linspace(-6, -3, 32), np.linspace(1, 2, 32))
    model.save(tmp_path / "model.pt")
    return tmp_path / "model.pt"


def test_export_matches_pytorch_on_raw_waveforms_and_carries_metadata(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from audio_dann.api import export

    path = _model(tmp_path)
    report = export(path, tmp_path / "m.onnx")
    assert report["max_abs_prob_diff"] <= 1e-4 and report["windows"] == 64
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == ["a", "b", "c"] and meta["sample_rate"] == "16000"
    assert float(meta["window_seconds"]) == 1.0 and json.loads(meta["adaptation"]) == {"method": "dann"}
    model = load_model(path)
    rng = np.random.default_rng(1)
    for batch in (1, 5):  # a dynamic batch, fresh waveforms
        x = (0.2 * rng.standard_normal((batch, 16000))).astype(np.float32)
        got = sess.run(None, {"waveform": x})[0]
        with torch.no_grad():
            want = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_export_refuses_a_graph_that_disagrees_and_writes_nothing(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from audio_dann.deploy import onnx_export
    from audio_dann.errors import ExportError

    path = _model(tmp_path)
    real = ConvLogMel.forward
    monkeypatch.setattr(
        ConvLogMel,
        "forward",
        lambda self, w: real(self, w) + 0.5 * torch.sin(torch.arange(real(self, w).shape[-1], dtype=torch.float32)),
    )
    with pytest.raises(ExportError, match=r"differ from PyTorch's by .* nothing written"):
        onnx_export.export(path, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists() and not list(tmp_path.glob(".bad.onnx*"))


def test_int8_export_reports_agreement_and_speed(tmp_path):
    pytest.importorskip("onnxruntime")
    from audio_dann.api import export

    report = export(_model(tmp_path), tmp_path / "q.onnx", quantize="int8", check_windows_n=32)
    import onnx

    q = report["int8"]
    assert report["bytes"] == q["int8_bytes"] and q["speedup"] > 0 and q["top1_agreement_with_float32"] >= 0.75, q
    nodes = onnx.load(str(tmp_path / "q.onnx")).graph.node
    ops = {n.op_type for n in nodes}
    assert "ConvInteger" in ops or "DynamicQuantizeLinear" in ops  # the network is quantized ...
    assert [n for n in nodes if n.name.startswith("/frontend/") and n.op_type == "Conv"]  # ... the frontend is not


def test_example_script_gives_the_labels_of_predict(tmp_path):
    pytest.importorskip("onnxruntime")
    from typer.testing import CliRunner

    from audio_dann.api import predict
    from audio_dann.cli import app

    path = _model(tmp_path)
    audio = tmp_path / "audio"
    for k, f in enumerate((200.0, 700.0, 1500.0, 3000.0, 5000.0)):
        write(audio / f"t{k}.wav", tone(f, 0.4 + 0.9 * k, 16000, seed=k), 16000)
    write(audio / "sub" / "stereo44k.wav", tone(900.0, 2.2, 44100, channels=2), 44100)
    (audio / "broken.wav").write_text("not audio")
    res = CliRunner().invoke(app, ["export", str(path), "--out", str(tmp_path / "m.onnx"), "--check", str(audio)])
    assert res.exit_code == 0 and "largest probability difference" in " ".join(res.output.split()), res.output
    predict(path, audio, tmp_path / "torch.csv", workers=0)
    subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "m.onnx"), str(audio), "--out", str(tmp_path / "onnx.csv")],
        check=True,
        capture_output=True,
    )
    read = lambda p: {r["path"]: r for r in csv.DictReader(open(p))}  # noqa: E731
    a, b = read(tmp_path / "torch.csv"), read(tmp_path / "onnx.csv")
    assert a.keys() == b.keys() and len(a) == 7
    for p in a:
        assert a[p]["label"] == b[p]["label"], p
        assert a[p]["status"].startswith("error") == b[p]["status"].startswith("error"), p
        if a[p]["status"] == "ok":
            assert abs(float(a[p]["confidence"]) - float(b[p]["confidence"])) < 1e-3, p


@pytest.mark.slow
def test_example_script_labels_equal_predict_on_fsdd(fsdd_dir, tmp_path):
    """Real recordings (8 kHz, as the FSDD recipe): 300 files, a model with non-trivial weights."""
    pytest.importorskip("onnxruntime")
    from audio_dann.api import export, predict

    torch.manual_seed(3)
    cfg = apply_overrides(Config(), ["features.sample_rate=8000", "features.n_mels=40", "model.channels=[8,16,32]"])
    model = build_classifier(cfg, [str(d) for d in range(10)], ["source", "t"])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    model.save(tmp_path / "model.pt")
    audio = tmp_path / "fsdd"
    audio.mkdir()
    for p in sorted(fsdd_dir.glob("*.wav"))[::10]:
        (audio / p.name).symlink_to(p)
    export(tmp_path / "model.pt", tmp_path / "m.onnx", check=audio)
    predict(tmp_path / "model.pt", audio, tmp_path / "torch.csv", workers=0)
    subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "m.onnx"), str(audio), "--out", str(tmp_path / "onnx.csv")],
        check=True,
        capture_output=True,
    )
    a = {Path(r["path"]).name: r["label"] for r in csv.DictReader(open(tmp_path / "torch.csv"))}
    b = {Path(r["path"]).name: r["label"] for r in csv.DictReader(open(tmp_path / "onnx.csv"))}
    assert len(a) == 300 and a == b
