"""A property of every command that writes (issue 27): whatever the command, flags and output path, the
inputs are unchanged (by content), the exit code is 0 or 2, and no traceback is printed. Hypothesis
draws the commands, flags and output paths from the inputs of a small project."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from audio_files import TINY_RUN, class_folders
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from audio_dann.api import prepare, train
from audio_dann.cli import app
from audio_dann.config import Config, apply_overrides

runner = CliRunner()

COMMANDS = [
    "predict csv",
    "predict jsonl",
    "predict raven",
    "predict audacity",
    "evaluate --json",
    "evaluate --plot",
    "estimate --json",
    "manifest",
]
OUTPUTS = [
    "the model",
    "an input audio file",
    "a new audio name in the input folder",
    "a table in the input folder",
    "the input folder",
    "the manifest",
    "a fresh file",
    "a link to the model",
    "a pipe",
    "a new nested folder",
    "the run folder",
    "a user's own file",
]

SAFE_OUTPUTS = ["a table in the input folder", "a fresh file", "a new nested folder", "a user's own file"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("property")
    src = class_folders(root / "src", per_class=2)
    tgt = class_folders(root / "tgt", per_class=2, shift=1.3)
    cfg = apply_overrides(Config(), TINY_RUN)
    prepare(src, [tgt], root / "prep", config=cfg)
    train(root / "prep", root / "run", config=cfg, method="source-only", device="cpu", report=False)
    return root


def _write_labels(project: Path) -> None:
    """The labelled manifest of the target files (rewritten before each example: a command may write over
    it where it is not that command's input)."""
    wavs = sorted((project / "tgt").rglob("*.wav"))
    (project / "labels.csv").write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in wavs))


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    }


def _output(kind: str, project: Path, scratch: Path) -> Path:
    tgt = project / "tgt"
    if kind == "a link to the model":
        os.symlink(project / "run" / "model.pt", scratch / "link.csv")
    if kind == "a pipe":
        os.mkfifo(scratch / "pipe")
    if kind == "a user's own file":
        (scratch / "mine.csv").write_text("my notes\n")
    return {
        "the model": project / "run" / "model.pt",
        "an input audio file": tgt / "low" / "low_0.wav",
        "a new audio name in the input folder": tgt / "new.wav",
        "a table in the input folder": tgt / "table.csv",
        "the input folder": tgt,
        "the manifest": project / "labels.csv",
        "a fresh file": scratch / "out.csv",
        "a link to the model": scratch / "link.csv",
        "a pipe": scratch / "pipe",
        "a new nested folder": scratch / "a" / "b" / "out.csv",
        "the run folder": project / "run",
        "a user's own file": scratch / "mine.csv",
    }[kind]


def _args(command: str, project: Path, out: Path, workers: int, window: str | None, data: str) -> list[str]:
    model, tgt = str(project / "run" / "model.pt"), str(project / "tgt")
    data_path = str(project / "labels.csv") if data == "manifest" else tgt
    tail = ["--workers", str(workers), "--device", "cpu"]
    if command.startswith("predict"):
        fmt = command.split()[1]
        return [
            "predict",
            model,
            tgt,
            "--out",
            str(out),
            "--format",
            fmt,
            *tail,
            *(["--window-seconds", window] if window else []),
        ]
    if command.startswith("evaluate"):
        return ["evaluate", model, data_path, command.split()[1], str(out), *tail]
    if command.startswith("estimate"):
        return ["estimate", model, tgt, "--json", str(out), *tail]
    return ["manifest", tgt, "--pattern", "{label}_{index}.wav", "--out", str(out)]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    command=st.sampled_from(COMMANDS),
    kind=st.sampled_from(OUTPUTS) | st.sampled_from(SAFE_OUTPUTS),
    workers=st.sampled_from([0, 0, 0, 1, 100, 5000]),
    window=st.sampled_from([None, None, None, None, "0.5", "100000", "-1"]),
    data=st.sampled_from(["folder", "manifest"]),
)
def test_no_command_changes_an_input_exits_other_than_0_or_2_or_prints_a_traceback(
    project, command, kind, workers, window, data
):
    reads_labels = command.startswith("evaluate") and data == "manifest"
    _write_labels(project)
    everything = _hashes(project)
    before = {k: v for k, v in everything.items() if reads_labels or not k.endswith("labels.csv")}
    if command == "manifest":  # reads the target folder only
        before = {k: v for k, v in before.items() if str(project / "tgt") in k}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        out = _output(kind, project, scratch)
        res = runner.invoke(app, _args(command, project, out, workers, window, data))
        event(f"exit {res.exit_code}")
        assert res.exit_code in (0, 2), (command, kind, res.output, res.exception)
        assert "Traceback" not in res.output, res.output
    after = _hashes(project)
    assert {k: after.get(k) for k in before} == before, (command, kind, res.output)
    for path in set(after) - set(everything):  # what the command wrote beside the inputs (allowed): cleared
        Path(path).unlink()
    for stray in (project / "tgt").rglob(".audio-dann-labels"):
        stray.unlink()
    for d in (project / "tgt").iterdir():
        if d.is_dir() and d.name not in ("low", "high"):
            shutil.rmtree(d)
