"""The error contract, round two (issue 27): no output replaces an input, nothing runs unbounded, bad
input gets one line and exit 2. Each test here failed before the one output rule and the resource bounds."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audio_files import TINY_RUN, class_folders, tone, write
from processes import descendants
from typer.testing import CliRunner

from audio_dann.api import prepare, train
from audio_dann.cli import app
from audio_dann.config import Config, apply_overrides
from audio_dann.errors import RunError

runner = CliRunner()
CFG = apply_overrides(Config(), TINY_RUN)


def _sets(settings: list[str]) -> list[str]:
    return [a for s in settings for a in ("--set", s)]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A small project: labelled source, unlabelled target, a prepared folder, a trained model."""
    root = tmp_path_factory.mktemp("contract")
    src = class_folders(root / "src", per_class=3)
    tgt = class_folders(root / "tgt", per_class=2, shift=1.3)
    prepare(src, [tgt], root / "prep", config=CFG)
    train(root / "prep", root / "run", config=CFG, method="source-only", device="cpu", report=False)
    return root


def _digest(root: Path) -> dict[str, str]:
    """Every regular file below ``root`` (or ``root`` itself), by content."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _one_line_refusal(res, *words: str) -> None:
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and all(w in text for w in words), res.output


# --- 1. resume on another prepared folder ---


def test_resume_with_another_prepared_folder_is_refused_naming_the_one_it_was_begun_on(project, tmp_path):
    other = class_folders(tmp_path / "other", classes=("low", "mid"), per_class=3)
    prepare(other, [project / "tgt"], tmp_path / "prep_b", config=CFG)
    same_classes = class_folders(tmp_path / "src2", per_class=3, shift=0.9)
    prepare(same_classes, [project / "tgt"], tmp_path / "prep_c", config=CFG)
    stopped = apply_overrides(CFG, ["train.steps=6"])
    train(project / "prep", tmp_path / "run", config=stopped, method="source-only", device="cpu", report=False)
    (tmp_path / "run" / "summary.json").unlink()  # as if cut short after its last checkpoint
    for prep in ("prep_b", "prep_c"):
        with pytest.raises(RunError, match=f"begun on {project / 'prep'}"):
            train(tmp_path / prep, tmp_path / "run", config=stopped, method="source-only", device="cpu", resume=True)


# --- 2. outputs never replace inputs; 7. nor another command's work ---


def test_no_output_flag_replaces_an_input(project, tmp_path):
    model, tgt, wav = project / "run" / "model.pt", project / "tgt", project / "tgt" / "low" / "low_0.wav"
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in sorted(tgt.rglob("*.wav"))))
    other_run = project / "other_run"  # a run whose model lives elsewhere
    other_run.mkdir(exist_ok=True)
    (other_run / "last.pt").write_bytes(b"a checkpoint")
    before = {**_digest(project), **_digest(manifest)}
    cases = [
        (["predict", str(model), str(tgt), "--out", str(wav), "--workers", "0"], "an input"),
        (["predict", str(model), str(tgt), "--out", str(tgt / "new.wav"), "--workers", "0"], "inside an input"),
        (["predict", str(model), str(tgt), "--out", str(model), "--workers", "0"], "an input"),
        (["predict", str(model), str(tgt), "--out", str(tmp_path / "p.csv"), "--plot", str(model)], "an input"),
        (["evaluate", str(model), str(tgt), "--json", str(model), "--workers", "0"], "an input"),
        (["evaluate", str(model), str(tgt), "--json", str(wav), "--workers", "0"], "an input"),
        (["evaluate", str(model), str(manifest), "--plot", str(manifest), "--workers", "0"], "an input"),
        (["export", str(model), "--out", str(model)], "an input"),
        (["manifest", str(tgt), "--pattern", "{label}_{index}.wav", "--out", str(tgt / "x.wav")], "inside an input"),
        (["adapt", str(model), str(tgt), "--out", str(project / "run")], "holds"),
        (["adapt", str(model), str(tgt), "--out", str(project / "prep")], "already holds a prepared folder"),
        (["adapt", str(model), str(tgt), "--out", str(project / "other_run")], "already holds a training run"),
        (["train", str(project / "prep"), "--out", str(project / "prep"), *_sets(TINY_RUN)], "is an input"),
        (["train", str(project / "prep"), "--out", str(project), *_sets(TINY_RUN)], "holds an input"),
        (["prepare", "--source", str(project / "src"), "--target", str(tgt), "--out", str(project / "run")], "holds"),
    ]
    for args, words in cases:
        _one_line_refusal(runner.invoke(app, args), words)
    assert {**_digest(project), **_digest(manifest)} == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_pipe_or_a_symbolic_link_as_output_is_refused_not_replaced(project, tmp_path):
    model, tgt = project / "run" / "model.pt", project / "tgt"
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "mine.csv").write_text("my own table\n")
    os.symlink(tmp_path / "mine.csv", tmp_path / "link.csv")
    for out, words in ((tmp_path / "fifo", "not a regular file"), (tmp_path / "link.csv", "symbolic link")):
        res = runner.invoke(app, ["predict", str(model), str(tgt), "--out", str(out), "--workers", "0"])
        _one_line_refusal(res, words)
    assert Path(tmp_path / "link.csv").is_symlink() and (tmp_path / "mine.csv").read_text() == "my own table\n"
    assert not (tmp_path / "fifo").is_file()  # still the pipe


# --- 3. workers are bounded by the machine ---


def _peak_children(proc: subprocess.Popen) -> int:
    """The most processes below ``proc`` at once, sampled until it exits."""
    peak = 0
    while proc.poll() is None:
        peak = max(peak, len(descendants(proc.pid)))
        time.sleep(0.05)
    return peak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts processes in /proc")
def test_workers_are_capped_at_the_cores_and_absurd_counts_refused(project, tmp_path):
    from audio_dann.runtime import cpu_cores

    folder = tmp_path / "many"
    for k in range(40):
        write(folder / f"f{k}.wav", tone(300 + 10 * k, 0.5, 16000, seed=k), 16000)
    cmd = [sys.executable, "-m", "audio_dann.cli", "predict", str(project / "run" / "model.pt"), str(folder)]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "p.csv"), "--workers", "64", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = _peak_children(proc)
    out, err = proc.communicate()
    assert proc.returncode == 0 and "UserWarning" not in err, err
    assert peak <= cpu_cores(), f"{peak} worker processes on {cpu_cores()} cores"
    res = runner.invoke(
        app,
        [
            "predict",
            str(project / "run" / "model.pt"),
            str(folder),
            "--out",
            str(tmp_path / "q.csv"),
            "--workers",
            "10000",
        ],
    )
    _one_line_refusal(res, "--workers 10000")
    assert not (tmp_path / "q.csv").exists()


# --- 5. sizes bounded by memory ---


def test_a_window_too_large_for_the_machine_is_refused_in_one_line(project, tmp_path):
    for seconds in ("3600", "100000"):
        res = runner.invoke(
            app,
            [
                "predict",
                str(project / "run" / "model.pt"),
                str(project / "tgt"),
                "--out",
                str(tmp_path / "p.csv"),
                "--window-seconds",
                seconds,
                "--workers",
                "2",
            ],
        )
        _one_line_refusal(res, "--window-seconds x --batch-size x --workers", "GiB")


# --- 6. Audacity label files ---


def test_audacity_never_overwrites_a_users_label_file_and_keeps_names_unique(project, tmp_path):
    folder = tmp_path / "rec"
    write(folder / "rec.wav", tone(300, 1.0, 16000), 16000)
    write(folder / "rec.flac", tone(2000, 1.0, 16000), 16000)
    (folder / "rec.txt").write_text("0\t1\tmy own label\n")  # a label track the user made in Audacity
    (folder / "rec.flac.txt").write_text("0\t1\tmine too\n")
    args = ["predict", str(project / "run" / "model.pt"), str(folder), "--out", str(folder)]
    args += ["--format", "audacity", "--workers", "0"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (folder / "rec.txt").read_text() == "0\t1\tmy own label\n"
    assert (folder / "rec.flac.txt").read_text() == "0\t1\tmine too\n" and "rec.flac.txt" in res.output
    assert (folder / "rec.wav.txt").read_text().count("\t") >= 2  # ours, named after the whole file name
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and (folder / "rec.flac.txt").read_text() == "0\t1\tmine too\n"


# --- 8. one line, not a traceback ---


def test_unwritable_places_binary_configs_and_divergence_are_one_line_errors(project, tmp_path):
    model, tgt = str(project / "run" / "model.pt"), str(project / "tgt")
    if Path("/proc").is_dir():
        res = runner.invoke(app, ["predict", model, tgt, "--out", "/proc/audio-dann-test.csv", "--workers", "0"])
        _one_line_refusal(res, "/proc/audio-dann-test.csv")
        assert ".lock" not in res.output  # the output is named, not the internal lock file
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    res = runner.invoke(
        app, ["train", str(project / "prep"), "--out", str(tmp_path / "r"), "--config", str(tmp_path / "bin.yaml")]
    )
    _one_line_refusal(res, "bin.yaml", "cannot be read")
    res = runner.invoke(
        app,
        [
            "train",
            str(project / "prep"),
            "--out",
            str(tmp_path / "r2"),
            *_sets([*TINY_RUN, "train.lr=100000", "train.method=source-only"]),
        ],
    )
    _one_line_refusal(res, "diverged", "lower train.lr")


# --- low ---


def test_summaries_are_valid_json_and_the_cli_has_version_and_short_help(project, tmp_path):
    import json

    cfg = apply_overrides(CFG, ["data.val_fraction=0"])
    prepare(project / "src", [project / "tgt"], tmp_path / "prep", config=cfg)
    train(tmp_path / "prep", tmp_path / "run", config=cfg, method="source-only", device="cpu", report=False)
    text = (tmp_path / "run" / "summary.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))
    from audio_dann import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    assert runner.invoke(app, ["-h"]).exit_code == 0 and "Usage" in runner.invoke(app, ["predict", "-h"]).output
    assert json.loads(text)["clips"]["target_train"] == 0  # pure source-only: no target clip used


def test_jsonl_by_name_with_numbers_a_folder_name_refused_and_unreadable_files_named(project, tmp_path):
    import json

    folder = tmp_path / "rec"
    write(folder / "a.wav", tone(300, 1.0, 16000), 16000)
    (folder / "broken.wav").write_bytes(b"not audio at all")
    model = str(project / "run" / "model.pt")
    res = runner.invoke(app, ["predict", model, str(folder), "--out", str(tmp_path / "p.jsonl"), "--workers", "0"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]  # JSON lines, not CSV
    ok = next(r for r in rows if r["status"] == "ok")
    assert isinstance(ok["confidence"], float) and 0 <= ok["confidence"] <= 1
    assert "broken.wav" in " ".join(res.output.split())  # named on the console, whatever the format
    raven = runner.invoke(
        app, ["predict", model, str(folder), "--out", str(tmp_path / "r.txt"), "--format", "raven", "--workers", "0"]
    )
    assert raven.exit_code == 0 and "broken.wav" in " ".join(raven.output.split())
    _one_line_refusal(
        runner.invoke(app, ["predict", model, str(folder), "--out", str(tmp_path / "newdir") + "/"]), "names a folder"
    )
    assert not (tmp_path / "newdir").exists()


def test_adapt_names_skipped_files_and_auto_counts_the_target_clips_its_stage_used(project, tmp_path):
    import json

    tgt = tmp_path / "tgt"
    for k in range(4):
        write(tgt / f"t{k}.wav", tone(400 + 100 * k, 0.6, 16000, seed=k), 16000)
    (tgt / "broken.wav").write_bytes(b"RIFF nonsense")
    res = runner.invoke(
        app,
        [
            "adapt",
            str(project / "run" / "model.pt"),
            str(tgt),
            "--out",
            str(tmp_path / "a"),
            "--method",
            "adabn",
            "--workers",
            "0",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0 and "broken.wav" in " ".join(res.output.split()), res.output
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["skipped"][0]["file"].endswith("broken.wav")
    auto = train(
        project / "prep",
        tmp_path / "auto",
        config=apply_overrides(CFG, ["train.self_training_epochs=1"]),
        device="cpu",
        report=False,
    )
    assert auto["self_training"]["clips"] > 0 and auto["clips"]["target_train"] == auto["self_training"]["pool_clips"]


def test_select_refuses_runs_of_different_tasks(project, tmp_path):
    other_prep = tmp_path / "prep"
    prepare(project / "src", [class_folders(tmp_path / "t2", per_class=2, shift=0.7)], other_prep, config=CFG)
    train(other_prep, tmp_path / "run", config=CFG, method="source-only", device="cpu", report=False)
    _one_line_refusal(
        runner.invoke(app, ["select", str(project / "run"), str(tmp_path / "run")]), "different prepared folders"
    )
    assert runner.invoke(app, ["select", str(project / "run")]).exit_code == 0


def test_resuming_a_run_saved_before_the_plan_accepts_the_method_it_was_begun_with():
    from dataclasses import replace

    from audio_dann.training.resume import _check_resume_settings

    # runs saved before the plan hold `auto` resolved: source-only with the latent-bn stage
    saved = replace(Config(), train=replace(Config().train, method="source-only", self_training="latent-bn"))
    _check_resume_settings(Path("run"), {"train.method": "auto"}, saved)
    _check_resume_settings(Path("run"), {"train.method": "auto", "train.self_training": "auto"}, saved)
    for other in ({"train.method": "dann"}, {"train.self_training": "none"}):
        with pytest.raises(RunError, match="differ from them"):
            _check_resume_settings(Path("run"), other, saved)
