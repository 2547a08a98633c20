"""The error contract (issue 13): bad inputs, bad commands, concurrent runs and kill -9 lose no work and
show no traceback. One test per failure the QA pass found; small files, few steps."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from audio_files import class_folders, tone, write
from processes import children
from typer.testing import CliRunner

from audio_dann.api import predict, prepare
from audio_dann.cli import app
from audio_dann.config import Config, apply_overrides
from audio_dann.data.audio import read_audio
from audio_dann.data.store import open_prepared
from audio_dann.errors import AudioError, OptionError, OutputLockedError, PrepareError
from audio_dann.files import atomic_write_text, output_lock
from audio_dann.nn.classifier import build_classifier

runner = CliRunner()
CFG = apply_overrides(Config(), ["features.n_mels=16", "data.workers=0"])
SMALL = ["--set", "features.n_mels=16", "--set", "data.workers=0"]


def _one_line_exit_2(args, match: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert match in res.output, res.output
    return res.output


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def data(tmp_path):
    src = class_folders(tmp_path / "src", per_class=3)
    tgt = class_folders(tmp_path / "tgt", per_class=2, shift=1.2)
    return tmp_path, src, tgt


@pytest.fixture
def model_pt(tmp_path):
    cfg = apply_overrides(Config(), ["model.channels=[4,8]", "model.embedding_dim=8", "features.n_mels=16"])
    build_classifier(cfg, ["high", "low"], ["source", "tgt"]).save(tmp_path / "model.pt")
    return tmp_path / "model.pt"


# two writers, stale locks, and a second run with other targets


def test_a_second_writer_fails_at_once_naming_the_holder(data):
    tmp, src, tgt = data
    with output_lock(tmp / "p"):
        with pytest.raises(OutputLockedError, match=rf"being written by pid {os.getpid()}"):
            prepare(src, [tgt], tmp / "p", config=CFG)
    assert prepare(src, [tgt], tmp / "p", config=CFG).clips_written > 0  # released on exit
    assert not (tmp / ".p.lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(data):
    tmp, src, tgt = data
    (tmp / ".p.lock").write_text(json.dumps({"pid": _dead_pid(), "host": os.uname().nodename, "since": "x"}))
    assert prepare(src, [tgt], tmp / "p", config=CFG).clips_written > 0


def test_a_second_prepare_with_other_inputs_is_refused_and_the_folder_kept(data):
    tmp, src, tgt = data
    other = class_folders(tmp / "other", per_class=1, shift=0.8)
    prepare(src, [tgt], tmp / "p", config=CFG)
    before = {f.name: f.read_bytes() for f in (tmp / "p").iterdir() if f.is_file()}
    with pytest.raises(PrepareError, match="already prepared from"):
        prepare(src, [other], tmp / "p", config=CFG)
    assert {f.name: f.read_bytes() for f in (tmp / "p").iterdir() if f.is_file()} == before
    prep = open_prepared(tmp / "p")
    assert prep.domains == ["source", "tgt"] and len(prep.index) == len(prep.features)
    with pytest.raises(OptionError, match="given twice"):  # one folder given twice would be read twice
        prepare(src, [tgt, tgt], tmp / "p2", config=CFG)


# discovery


def test_a_symlink_loop_and_repeated_links_are_visited_once(data):
    tmp, src, tgt = data
    plain = prepare(src, [tgt], tmp / "plain", config=CFG)
    os.symlink(".", tgt / "again")  # a loop
    os.symlink(tgt / "low" / "low_0.wav", tgt / "dup.wav")  # a second name for one file
    looped = prepare(src, [tgt], tmp / "looped", config=CFG)
    assert looped.clips_by_split == plain.clips_by_split and looped.links_skipped >= 2
    res = runner.invoke(app, ["prepare", "--source", str(src), "--target", str(tgt), "--out", str(tmp / "cli"), *SMALL])
    assert res.exit_code == 0 and "links" in res.output


def test_out_inside_the_source_folder_is_never_scanned(data):
    tmp, src, tgt = data
    for _ in range(2):  # the second run must see the same inputs, not the first run's output
        summary = prepare(src, [tgt], src / "prep", config=CFG)
    assert summary.already_complete


def test_labels_in_a_target_manifest_are_ignored(data):
    tmp, src, tgt = data
    rows = [{"path": str(p), "label": "not-a-source-class"} for p in sorted(tgt.rglob("*.wav"))]
    with open(tmp / "tgt.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label"])
        w.writeheader()
        w.writerows(rows)
    summary = prepare(src, [tmp / "tgt.csv"], tmp / "p", config=CFG)
    assert summary.files_skipped == 0 and summary.files_read == 6 + len(rows)


def test_a_manifest_with_a_byte_order_mark_is_read(data):
    tmp, src, tgt = data
    paths = sorted(tgt.rglob("*.wav"))
    (tmp / "bom.csv").write_bytes("\ufeffpath\n".encode("utf-8") + "".join(f"{p}\n" for p in paths).encode())
    assert prepare(src, [tmp / "bom.csv"], tmp / "p", config=CFG).files_read == 6 + len(paths)


# decoding


def test_a_header_claiming_more_than_the_file_holds_is_refused(tmp_path):
    path = write(tmp_path / "x.wav", tone(300, 0.5, 16000), 16000)
    raw = bytearray(path.read_bytes())
    raw[24:28] = (1).to_bytes(4, "little")  # sample rate field: 1 Hz
    path.write_bytes(bytes(raw))
    with pytest.raises(AudioError, match="sample rate of 1 Hz"):
        read_audio(path)
    raw[24:28] = (16000).to_bytes(4, "little")
    raw[40:44] = (10**8).to_bytes(4, "little")  # data chunk size far beyond the file
    path.write_bytes(bytes(raw))
    try:
        x, sr = read_audio(path)
    except AudioError as exc:  # a libsndfile that believes the claim: refused, with the reason
        assert "can hold" in str(exc) or "cannot decode" in str(exc)
    else:  # a libsndfile that clamps the claim to the file: exactly the samples the file holds, nothing invented
        assert sr == 16000 and len(x) == 8000


def test_silent_files_follow_one_rule_in_prepare_and_predict(data, model_pt):
    tmp, src, tgt = data
    write(tgt / "silent.wav", np.zeros(8000, dtype=np.float32), 16000)
    prepare(src, [tgt], tmp / "p", config=CFG)
    skipped = {r["file"]: r["reason"] for r in csv.DictReader(open(tmp / "p" / "skipped.csv"))}
    predict(model_pt, tgt, tmp / "pred.csv", workers=0)
    rows = {r["path"]: r["status"] for r in csv.DictReader(open(tmp / "pred.csv"))}
    reason = skipped[str(tgt / "silent.wav")]
    assert "silent" in reason and rows[str(tgt / "silent.wav")] == f"error: {reason}"


def test_a_folder_that_cannot_be_listed_is_reported_in_prepare_and_predict(data, model_pt, monkeypatch):
    tmp, src, tgt = data
    locked = tgt / "locked"  # os.walk cannot list it: as a folder without read permission (root reads any)
    write(locked / "x.wav", tone(300, 0.5, 16000), 16000)
    import audio_dann.data.scan as scan

    real_walk = scan.os.walk

    def walk(top, *args, onerror=None, **kwargs):
        for dirpath, dirnames, filenames in real_walk(top, *args, **kwargs):
            if "locked" in dirnames:
                dirnames.remove("locked")
                onerror(PermissionError(13, "Permission denied", str(Path(dirpath) / "locked")))
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(scan.os, "walk", walk)
    prepare(src, [tgt], tmp / "p", config=CFG)
    skipped = {r["file"]: r["reason"] for r in csv.DictReader(open(tmp / "p" / "skipped.csv"))}
    assert "could not be read" in skipped[str(locked)]
    predict(model_pt, tgt, tmp / "pred.csv", workers=0)
    rows = {r["path"]: r["status"] for r in csv.DictReader(open(tmp / "pred.csv"))}
    assert rows[str(locked)] == f"error: {skipped[str(locked)]}" and str(locked / "x.wav") not in rows


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_says_permission_denied(tmp_path):
    path = write(tmp_path / "x.wav", tone(300, 0.5, 16000), 16000)
    path.chmod(0)
    with pytest.raises(AudioError, match="permission denied"):
        read_audio(path)


def test_fuzzed_wav_files_give_a_clip_or_a_reason_never_a_crash(tmp_path, model_pt):
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from audio_dann.data.audio import load_clip_source
    from audio_dann.infer.engine import iter_predictions
    from audio_dann.nn.classifier import load_model

    base = write(tmp_path / "base.wav", tone(440, 0.3, 16000), 16000).read_bytes()
    model = load_model(model_pt)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), max_size=8), st.integers(8, len(base))
    )
    def check(edits, cut):
        raw = bytearray(base[:cut])
        for pos, value in edits:
            if pos < len(raw):
                raw[pos] = value
        path = tmp_path / "fuzz.wav"
        path.write_bytes(bytes(raw))
        try:
            x = load_clip_source(path, 16000)
            assert x.dtype == np.float32 and x.ndim == 1 and np.isfinite(x).all()
        except AudioError as exc:
            assert str(exc).startswith(str(path)) and exc.reason
        (res,) = list(iter_predictions(model, [str(path)], workers=0))
        assert (res.error is None) != (res.probs is None)
        if res.probs is not None:
            assert np.isfinite(res.probs).all()

    check()


# outputs, options and damaged files: one line, exit 2, before the work


def test_bad_outputs_options_and_files_are_one_line_exit_2(data, model_pt):
    tmp, src, tgt = data
    (tmp / "adir").mkdir()
    _one_line_exit_2(["predict", model_pt, tgt, "--out", tmp / "adir", "--workers", "0"], "is a folder")
    _one_line_exit_2(["evaluate", model_pt, src, "--json", tmp / "adir"], "--json")
    (tmp / "afile").write_text("x")
    _one_line_exit_2(["predict", model_pt, tgt, "--out", tmp / "afile" / "p.csv"], "is a file, not a folder")
    _one_line_exit_2(["predict", model_pt, tgt, "--out", tmp / "p.csv", "--batch-size", "0"], "--batch-size")
    _one_line_exit_2(["predict", model_pt, tgt, "--out", tmp / "p.csv", "--workers", "-1"], "--workers")
    _one_line_exit_2(
        ["predict", model_pt, tgt, "--out", tmp / "p.csv", "--window-seconds", "-1", "--workers", "0"],
        "--window-seconds",
    )
    (tmp / "empty.pt").write_bytes(b"")
    _one_line_exit_2(["predict", tmp / "empty.pt", tgt, "--out", tmp / "p.csv"], "not an audio-dann model bundle")
    _one_line_exit_2(
        [
            "prepare",
            "--source",
            src,
            "--target",
            tgt,
            "--out",
            tmp / "q",
            *SMALL,
            "--set",
            "features.clip_seconds=0.001",
        ],
        "clip_seconds",
    )
    prepare(src, [tgt], tmp / "p", config=CFG)
    _one_line_exit_2(["train", tmp / "p", "--out", tmp / "afile", "--device", "cpu"], "not a folder")
    _one_line_exit_2(["train", tmp / "p", "--out", tmp / "r", "--set", "train.lr=.inf"], "finite")
    (tmp / "p" / "features.npy").write_bytes(b"")
    _one_line_exit_2(["train", tmp / "p", "--out", tmp / "r", "--device", "cpu"], "damaged")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused_before_work(data, model_pt):
    tmp, src, tgt = data
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)
    _one_line_exit_2(["predict", model_pt, tgt, "--out", tmp / "ro" / "p.csv"], "not writable")


# resume and clean-up after crashes


def test_a_deleted_features_file_is_rebuilt_by_the_same_command(data):
    tmp, src, tgt = data
    first = prepare(src, [tgt], tmp / "p", config=CFG)
    (tmp / "p" / "features.npy").unlink()
    again = prepare(src, [tgt], tmp / "p", config=CFG)
    assert not again.already_complete and again.clips_written == first.clips_written
    assert len(open_prepared(tmp / "p").features) == first.clips_written


def test_temp_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    stale = tmp_path / f".out.csv.{_dead_pid()}.abc123.tmp"
    stale.write_bytes(b"")
    mine = tmp_path / f".out.csv.{os.getpid()}.live.tmp"  # a live writer's temp file stays
    mine.write_bytes(b"")
    atomic_write_text(tmp_path / "out.csv", "x\n")
    assert not stale.exists() and mine.exists() and (tmp_path / "out.csv").read_text() == "x\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_decoder_workers_die_with_a_killed_prepare(tmp_path):
    src = class_folders(tmp_path / "src", per_class=2)
    tgt = tmp_path / "tgt"
    for k in range(900):  # enough work that the workers are busy when the parent dies (a fast machine: seconds)
        write(tgt / f"t{k}.wav", tone(300 + k, 2.0, 16000, seed=k), 16000)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "audio_dann.cli",
            "prepare",
            "--source",
            str(src),
            "--target",
            str(tgt),
            "--out",
            str(tmp_path / "p"),
            "--workers",
            "2",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "err.txt", "w"),  # noqa: SIM115 - closed with the process
    )
    deadline = time.time() + 120  # a loaded machine takes long to import torch in each process
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.02)
        workers = children(proc.pid)
    assert len(workers) >= 2, ("the workers never started", proc.poll(), (tmp_path / "err.txt").read_text()[-2000:])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(
        Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0]
        for w in workers
        if Path(f"/proc/{w}/stat").exists()
    ):
        time.sleep(0.2)
    alive = [
        w
        for w in workers
        if Path(f"/proc/{w}/stat").exists() and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    ]
    assert not alive, f"workers {alive} outlived their parent"


def test_qa_pass_findings_are_one_line_exit_2(data, model_pt):
    tmp, src, tgt = data
    for bad in ("nan", "inf", "0", "0.001"):  # the last: one frame, the tiny model pools once
        _one_line_exit_2(
            ["predict", model_pt, tgt, "--out", tmp / "p.csv", "--window-seconds", bad], "--window-seconds"
        )
    assert not list(tmp.glob(".p.csv*"))  # refused before a journal or temp file exists
    _one_line_exit_2(["predict", model_pt, tgt, "--out", tmp / "p.csv", "--hop-seconds", "0"], "--hop-seconds")
    (tmp / "adir").mkdir()
    _one_line_exit_2(["manifest", src, "--pattern", "{label}_{index}.wav", "--out", tmp / "adir"], "is a folder")
    _one_line_exit_2(["adapt", model_pt, tgt, "--out", tmp / "a", "--epochs", "0"], "--epochs 0")
    _one_line_exit_2(["train", tmp / "nowhere", "--out", tmp / "r", "--method", "foo"], "--method")
    prepare(src, [tgt], tmp / "p", config=CFG)
    _one_line_exit_2(["train", tmp / "p", "--out", tmp / "r", "--set", "features.n_mels=40"], "prepare")
    (tmp / "x.csv").write_text("path\n")
    _one_line_exit_2(["evaluate", tmp / "x.csv", src], "not an audio-dann model bundle")
    _one_line_exit_2(["predict", tmp / "nosuch.pt", tgt, "--out", tmp / "q.csv"], "model file not found")


def test_a_threshold_or_merge_implies_detections(data, model_pt):
    tmp, src, tgt = data
    predict(model_pt, tgt, tmp / "d.csv", min_confidence=0.99, workers=0)
    header = (tmp / "d.csv").read_text().splitlines()[0]
    assert "begin_s" in header and len((tmp / "d.csv").read_text().splitlines()) < 1 + 6  # filtered rows
