"""The check that a source's classes cannot be told apart by recording level alone."""

from __future__ import annotations

import json

import numpy as np
from audio_files import TINY_RUN, class_folders, tone, write
from typer.testing import CliRunner

from audio_dann.cli import app
from audio_dann.data.level_check import level_check, recording_level


def _folders(root, loud_class: str | None, per_class: int = 12):
    """Two classes of the same sounds (each file its own level); with ``loud_class`` that class is
    peak-normalised to full scale and the other left quiet, as PhysioNet 2016's database e was."""
    rng = np.random.default_rng(0)
    for c in ("low", "high"):
        for k in range(per_class):
            x = tone(300.0 * (1 + 0.05 * k), 0.5, 8000, seed=k)
            x = x * rng.uniform(0.05, 0.5) / np.abs(x).max()
            if c == loud_class:
                x = 0.999 * x / np.abs(x).max()
            write(root / c / f"{c}_{k}.wav", x.astype(np.float32), 8000)
    return root


def test_level_alone_is_flagged_only_where_it_tells_the_classes_apart(tmp_path):
    for loud, flagged in ((None, False), ("high", True)):
        root = _folders(tmp_path / str(loud), loud)
        files = sorted(root.rglob("*.wav"))
        out = level_check(np.array([recording_level(f) for f in files]), np.array([f.parent.name for f in files]))
        assert out["chance"] == 0.5 and out["files"] == 24
        assert ("warning" in out) is flagged, out
        assert (out["balanced_accuracy"] > 0.9) is flagged, out


def test_level_check_needs_enough_files_per_class():
    assert level_check(np.zeros((6, 2)), np.array(["a"] * 3 + ["b"] * 3)) is None


def test_prepare_warns_when_the_classes_differ_in_level(tmp_path):
    src = _folders(tmp_path / "src", "high")
    tgt = class_folders(tmp_path / "tgt", per_class=3, sr=8000)
    args = ["--set", "features.sample_rate=8000", "--set", "features.n_mels=16", "--set", "data.workers=0"]
    res = CliRunner().invoke(
        app, ["prepare", "--source", str(src), "--target", str(tgt), "--out", str(tmp_path / "prep"), *args]
    )
    assert res.exit_code == 0, res.output
    assert "told apart by recording level alone" in res.output
    info = json.loads((tmp_path / "prep" / "prepared.json").read_text())
    assert info["level_check"]["balanced_accuracy"] > 0.9
    # train repeats it, on the console and in summary.json
    sets = [a for o in TINY_RUN if not o.startswith("features.") for a in ("--set", o)]
    res = CliRunner().invoke(
        app, ["train", str(tmp_path / "prep"), "--out", str(tmp_path / "run"), "--method", "source-only", *sets]
    )
    assert res.exit_code == 0, res.output
    assert "told apart by recording level alone" in res.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "recording level alone" in summary["source_warnings"][0]
