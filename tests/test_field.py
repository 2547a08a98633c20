"""Field recordings (issue 14): streamed decoding equals whole-file decoding, detections, Raven and
Audacity tables read back, folder runs that resume to the same table, long files in flat memory."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from audio_files import class_folders, tone, write

from audio_dann.api import predict, prepare
from audio_dann.config import Config, apply_overrides
from audio_dann.data.audio import gather_windows, load_mono, plan_windows
from audio_dann.data.store import open_prepared
from audio_dann.data.stream import stream_mono, stream_windows
from audio_dann.infer import engine
from audio_dann.infer.detections import DetectionSettings, detections
from audio_dann.infer.writers import RAVEN_COLUMNS
from audio_dann.nn.classifier import build_classifier


@pytest.mark.parametrize(
    "sr,seconds,channels", [(44100, 7.3, 2), (16000, 3.0, 1), (22050, 0.4, 1), (16000, 1.0, 1), (8000, 10.01, 1)]
)
@pytest.mark.parametrize("block", [0.37, 1.0, 5.0])
def test_streamed_windows_are_those_of_whole_file_decoding(tmp_path, sr, seconds, channels, block):
    rng = np.random.default_rng(0)
    path = write(
        tmp_path / "x.wav", (rng.standard_normal((int(sr * seconds), channels)) * 0.2).astype(np.float32), sr, "PCM_16"
    )
    signal, starts = plan_windows(load_mono(path, 16000), 16000, 8000, "tile")
    got = list(stream_windows(stream_mono(path, 16000, block), 16000, 8000, "tile", batch=3))
    assert np.array_equal(np.concatenate([g[0] for g in got]), starts)
    assert np.array_equal(np.concatenate([g[1] for g in got]), gather_windows(signal, starts, 16000))


def test_detections_threshold_all_classes_and_merge():
    classes = ["a", "b", "c"]
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.35, 0.05], [0.2, 0.7, 0.1], [0.8, 0.1, 0.1]])
    begins = np.array([0.0, 0.5, 1.0, 3.0])
    top = detections(probs, begins, 1.0, 3.6, classes)
    assert [(d.begin_s, d.end_s, d.label) for d in top] == [
        (0.0, 1.0, "a"),
        (0.5, 1.5, "a"),
        (1.0, 2.0, "b"),
        (3.0, 3.6, "a"),
    ]  # the last ends with the file
    assert [d.label for d in detections(probs, begins, 1.0, 3.6, classes, DetectionSettings(0.65))] == ["a", "b", "a"]
    every = detections(probs, begins, 1.0, 3.6, classes, DetectionSettings(0.3, all_classes=True))
    assert [(d.begin_s, d.label) for d in every] == [(0.0, "a"), (0.5, "a"), (0.5, "b"), (1.0, "b"), (3.0, "a")]
    merged = detections(probs, begins, 1.0, 3.6, classes, DetectionSettings(merge=True))
    assert [(d.begin_s, d.end_s, d.label, d.confidence) for d in merged] == [
        (0.0, 1.5, "a", 0.7),
        (1.0, 2.0, "b", 0.7),
        (3.0, 3.6, "a", 0.8),
    ]


@pytest.fixture
def field(tmp_path):
    torch.manual_seed(0)
    cfg = apply_overrides(Config(), ["model.channels=[4,8]", "model.embedding_dim=8", "features.n_mels=16"])
    model = build_classifier(cfg, ["high", "low"], ["source", "field"])
    model.save(tmp_path / "model.pt")
    folder = tmp_path / "field"
    for k in range(8):
        write(folder / f"site{k % 2}" / f"rec{k}.wav", tone(300 + 400 * k, 1.0 + 0.7 * k, 16000, seed=k), 16000)
    (folder / "broken.wav").write_text("no audio")
    return tmp_path / "model.pt", folder


def test_raven_selection_table_reads_back(field, tmp_path):
    model, folder = field
    counts = predict(model, folder, tmp_path / "sel.txt", fmt="raven", min_confidence=0.0, workers=0)
    with open(tmp_path / "sel.txt", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
        f.seek(0)
        assert tuple(f.readline().rstrip("\n").split("\t")) == RAVEN_COLUMNS
    assert counts["errors"] == 1 and [int(r["Selection"]) for r in rows] == list(range(1, len(rows) + 1))
    assert {r["View"] for r in rows} == {"Spectrogram 1"} and {r["Channel"] for r in rows} == {"1"}
    files = sorted({r["Begin Path"] for r in rows})
    assert len(files) == 8 and all(float(r["End Time (s)"]) > float(r["Begin Time (s)"]) for r in rows)
    # Begin Time runs on across files in input order; File Offset is the time within the file
    seen = {}
    for r in rows:
        seen.setdefault(r["Begin Path"], float(r["Begin Time (s)"]) - float(r["File Offset (s)"]))
    starts = [seen[p] for p in files]
    assert starts == sorted(starts) and starts[0] == 0.0 and starts[1] == pytest.approx(1.0, abs=1e-3)


def test_audacity_label_files_one_per_audio_file(field, tmp_path):
    model, folder = field
    predict(model, folder, tmp_path / "labels", fmt="audacity", merge=True, workers=0)
    files = sorted((tmp_path / "labels").rglob("*.txt"))
    assert len(files) == 8 and (tmp_path / "labels" / "site1" / "rec3.wav.txt").is_file()
    for f in files:
        for line in f.read_text().splitlines():
            start, end, label = line.split("\t")
            assert float(start) < float(end) and label in ("high", "low")


def test_an_interrupted_folder_run_resumes_to_the_same_table(field, tmp_path):
    model, folder = field
    predict(model, folder, tmp_path / "full.csv", per_window=True, workers=0)
    seen = []

    def stop_after_five(done, total, text=""):
        seen.append(done)
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict(model, folder, tmp_path / "cut.csv", per_window=True, workers=0, progress=stop_after_five)
    assert (tmp_path / ".cut.csv.journal").is_file() and not (tmp_path / "cut.csv").exists()
    again = predict(model, folder, tmp_path / "cut.csv", per_window=True, workers=0)
    assert again["resumed"] == 5 and again["restarted_because"] is None
    assert (tmp_path / "cut.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()
    assert not (tmp_path / ".cut.csv.journal").exists()
    with pytest.raises(KeyboardInterrupt):
        predict(model, folder, tmp_path / "x.csv", workers=0, progress=stop_after_five)
    changed = predict(model, folder, tmp_path / "x.csv", workers=0, min_confidence=0.5)
    assert changed["resumed"] == 0 and "changed" in changed["restarted_because"]


def test_long_files_are_classified_as_a_stream_with_the_same_results(field, tmp_path, monkeypatch):
    model, folder = field
    predict(model, folder, tmp_path / "whole.csv", per_window=True, workers=0)
    monkeypatch.setattr(engine, "STREAM_ABOVE_SECONDS", 0.5)  # every file but the shortest streams
    predict(model, folder, tmp_path / "streamed.csv", per_window=True, workers=0)
    a = list(csv.DictReader(open(tmp_path / "whole.csv")))
    b = list(csv.DictReader(open(tmp_path / "streamed.csv")))
    assert [(r["path"], r["begin_s"], r["label"]) for r in a] == [(r["path"], r["begin_s"], r["label"]) for r in b]
    for x, y in zip(a, b):
        if x["status"] == "ok":
            assert abs(float(x["confidence"]) - float(y["confidence"])) < 1e-5


def test_prepare_spills_long_recordings_with_the_same_features(tmp_path, monkeypatch):
    from audio_dann.data import prepare as prepare_module

    cfg = apply_overrides(Config(), ["features.n_mels=16", "data.workers=0"])
    src = class_folders(tmp_path / "src", per_class=3)
    tgt = tmp_path / "tgt"
    write(tgt / "long.wav", tone(500, 20.0, 16000), 16000)
    write(tgt / "short.wav", tone(700, 2.0, 16000), 16000)
    prepare(src, [tgt], tmp_path / "a", config=cfg)
    real = prepare_module.FileFeatures.__init__

    def tiny_spill(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.spill_clips = 5  # the 20 s file (39 clips) goes through a spill file

    monkeypatch.setattr(prepare_module.FileFeatures, "__init__", tiny_spill)
    prepare(src, [tgt], tmp_path / "b", config=cfg)
    a, b = open_prepared(tmp_path / "a"), open_prepared(tmp_path / "b")
    assert np.array_equal(np.asarray(a.features), np.asarray(b.features)) and a.index == b.index
    assert not (tmp_path / "b" / ".spill").exists()
    sa, sb = (json.loads((tmp_path / d / "stats.json").read_text()) for d in "ab")
    assert all(np.allclose(sa[k], sb[k], rtol=1e-9) for k in ("mean", "std"))


def test_predict_plots_detections_over_a_spectrogram(field, tmp_path):
    from typer.testing import CliRunner

    from audio_dann.cli import app

    model, folder = field
    res = CliRunner().invoke(
        app,
        [
            "predict",
            str(model),
            str(folder),
            "--out",
            str(tmp_path / "s.txt"),
            "--format",
            "raven",
            "--workers",
            "0",
            "--plot",
            str(tmp_path / "d.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "real-time factor" in res.output


def test_folder_runs_are_listed_lazily_and_pass_by_pass(field, tmp_path, monkeypatch):
    from audio_dann.data.scan import iter_inputs
    from audio_dann.infer import predict as predict_module

    model, folder = field
    walk = iter_inputs(folder)
    first = next(walk)  # the walk yields before it has seen the whole folder
    assert first.endswith("broken.wav") and next(walk).endswith("site0/rec0.wav")
    predict(model, folder, tmp_path / "one.csv", workers=0)
    monkeypatch.setattr(predict_module, "_FILES_PER_PASS", 3)  # 9 files in three passes
    counts = predict(model, folder, tmp_path / "three.csv", workers=0)
    assert counts["files"] == 9 and (tmp_path / "one.csv").read_bytes() == (tmp_path / "three.csv").read_bytes()


def test_long_files_stream_in_the_main_process_when_the_network_runs_there(tmp_path, monkeypatch):
    """The GPU path (network outside the workers): a long file is never decoded whole, and it scores
    as the plain model does; a long silent file gets its reason, the others still score."""
    from audio_dann.data.audio import load_mono, slice_windows
    from audio_dann.infer.engine import iter_predictions
    from audio_dann.nn.classifier import build_classifier

    torch.manual_seed(0)
    model = build_classifier(Config(), ["a", "b"], ["source", "target"]).eval()
    paths = [str(write(tmp_path / f"{k}.wav", tone(300 + 200 * k, 0.6 + 1.2 * k, 16000), 16000)) for k in range(3)]
    paths.append(str(write(tmp_path / "silent.wav", np.zeros(3 * 16000, dtype=np.float32), 16000)))
    decoded_whole = []
    real = engine.load_clip_source
    monkeypatch.setattr(engine, "load_clip_source", lambda p, sr: decoded_whole.append(p) or real(p, sr))
    monkeypatch.setattr(engine, "STREAM_ABOVE_SECONDS", 1.0)
    streamed, real_stream = [], engine._stream_scores
    monkeypatch.setattr(engine, "_stream_scores", lambda *a: streamed.append(a[1]) or real_stream(*a))
    results, streamed_before = [], []
    for r in iter_predictions(model, paths, batch_size=3, workers=0, network_in_workers=False):
        streamed_before.append(len(streamed))
        results.append(r)
    assert decoded_whole == [paths[0]] and streamed == paths[1:]
    assert streamed_before == [0, 1, 2, 3]  # each result as soon as it is ready (progress, journal)
    assert [r.path for r in results] == paths and "silent" in results[3].error
    for p, r in zip(paths[:3], results):
        windows, _ = slice_windows(load_mono(p, 16000), 16000, 8000)
        with torch.no_grad():
            ref = torch.softmax(model(torch.from_numpy(windows)), 1).numpy()
        np.testing.assert_allclose(r.probs, ref, atol=1e-5)


def test_a_device_failure_on_a_streamed_file_stops_the_run_instead_of_marking_the_file(tmp_path, monkeypatch):
    """Only decoding problems become a file's error (the journal would never retry it); a failure of
    the network or device propagates, so a resumed predict retries the file."""
    from audio_dann.infer.engine import iter_predictions

    model = build_classifier(Config(), ["a", "b"], ["source", "target"]).eval()
    path = str(write(tmp_path / "long.wav", tone(400, 3.0, 16000), 16000))
    monkeypatch.setattr(engine, "STREAM_ABOVE_SECONDS", 1.0)

    def out_of_memory(*args):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(engine, "_stream_scores", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(iter_predictions(model, [path], workers=0, network_in_workers=False))
