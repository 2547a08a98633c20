import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from audio_files import class_folders, tone, write
from typer.testing import CliRunner

from audio_dann.cli import app

runner = CliRunner()
TINY = ["--set", "features.n_mels=16", "--set", "data.workers=0"]
TRAIN = [
    "--set",
    "train.steps=8",
    "--set",
    "train.eval_every=4",
    "--set",
    "train.batch_size=8",
    "--set",
    "model.channels=[4,8]",
    "--set",
    "model.embedding_dim=16",
    "--set",
    "train.rv_steps=3",
    "--set",
    "train.latent_ensemble=[]",
    "--method",
    "dann",
    "--device",
    "cpu",
]  # one DANN network (test_adapt
# covers the ensemble and auto)


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _fails(args, match):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert match in result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    src = class_folders(root / "src", per_class=6)
    tgt = class_folders(root / "tgt", per_class=4, shift=1.2)
    test = class_folders(root / "tgt_test", per_class=2, shift=1.2)
    out = root / "prepared"
    res = _ok(["prepare", "--source", src, "--target", tgt, "--target-eval", test, "--out", out, *TINY])
    assert "files read" in res.output
    return root


def test_train_evaluate_predict(prepared, tmp_path):
    run = tmp_path / "run"
    res = _ok(["train", prepared / "prepared", "--out", run, *TRAIN])
    assert "report only" in res.output
    for name in ("model.pt", "last.pt", "config.yaml", "metrics.jsonl", "summary.json", "curves.png"):
        assert (run / name).is_file(), name
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [4, 8]
    for key in ("class_loss", "domain_loss", "lambda", "lr", "source_val_acc", "domain_acc"):
        assert key in lines[-1], key
    assert "target_test_acc" in lines[-1]["report_only"] and "never used" in lines[-1]["report_only"]["note"]
    assert torch.load(run / "model.pt", weights_only=True)["summary"]["method"] == "dann"

    report = tmp_path / "eval.json"
    _ok(["evaluate", run / "model.pt", prepared / "tgt_test", "--json", report, "--plot", tmp_path / "cm.png"])
    data = json.loads(report.read_text())
    assert {"accuracy", "macro_f1", "n", "per_class", "confusion", "classes"} <= set(data)
    assert data["n"] == 4 and data["classes"] == ["high", "low"] and (tmp_path / "cm.png").is_file()

    wavs = tmp_path / "wavs"
    write(wavs / "a.wav", tone(300, 0.5, 16000), 16000)
    write(wavs / "sub" / "long.wav", tone(2000, 3.2, 22050, channels=2), 22050)
    (wavs / "broken.wav").write_text("nope")
    out = tmp_path / "pred.csv"
    res = _ok(["predict", run / "model.pt", wavs, "--out", out, "--workers", "0"])
    assert "1 unreadable" in res.output
    rows = list(csv.DictReader(open(out)))
    assert [r["path"].split("/")[-1] for r in rows] == ["a.wav", "broken.wav", "long.wav"]
    assert list(rows[0]) == ["path", "label", "confidence", "p_high", "p_low", "status"]
    assert rows[1]["status"].startswith("error:") and rows[0]["status"] == rows[2]["status"] == "ok"
    assert abs(float(rows[2]["p_high"]) + float(rows[2]["p_low"]) - 1) < 1e-4
    _ok(
        [
            "predict",
            run / "model.pt",
            wavs,
            "--out",
            tmp_path / "w.jsonl",
            "--format",
            "jsonl",
            "--per-window",
            "--workers",
            "0",
        ]
    )
    per_window = [json.loads(x) for x in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert sum(1 for r in per_window if r["path"].endswith("long.wav")) == 6  # 3.2 s: windows at 0,.5,..,2,2.2


def test_resume_continues_a_killed_run(prepared, tmp_path, monkeypatch):
    full = tmp_path / "full"
    _ok(["train", prepared / "prepared", "--out", full, *TRAIN])
    killed = tmp_path / "killed"
    import audio_dann.training.loop as loop

    real_fit = loop.fit

    def dying_fit(*args, progress_cb=None, **kwargs):
        def cb(step, total, m):
            if step == 6:
                raise KeyboardInterrupt

        return real_fit(*args, progress_cb=cb, **kwargs)

    monkeypatch.setattr("audio_dann.training.run.fit", dying_fit)
    res = runner.invoke(app, [str(a) for a in ["train", prepared / "prepared", "--out", killed, *TRAIN]])
    assert res.exit_code == 130 and "--resume" in res.output
    monkeypatch.setattr("audio_dann.training.run.fit", real_fit)
    _fails(["train", prepared / "prepared", "--out", killed, *TRAIN], "--resume")
    # a changed setting is refused, not silently ignored (the saved configuration is what resumes)
    _fails(
        ["train", prepared / "prepared", "--out", killed, "--resume", *TRAIN, "--set", "train.steps=9"],
        "train.steps (saved 8, asked 9)",
    )
    _fails(
        ["train", prepared / "prepared", "--out", killed, "--resume", *TRAIN, "--set", "train.steps=1500"],
        "train.steps (saved 8, asked 1500)",
    )  # back to the default: still a change, named
    _ok(["train", prepared / "prepared", "--out", killed, "--resume", *TRAIN])
    a = torch.load(full / "last.pt", weights_only=True)["model_state"]
    b = torch.load(killed / "last.pt", weights_only=True)["model_state"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert (killed / "metrics.jsonl").read_text() == (full / "metrics.jsonl").read_text()


def test_report_and_select(prepared, tmp_path):
    runs = []
    for k, lam in enumerate(("0.1", "1.0")):
        run = tmp_path / f"run{k}"
        _ok(["train", prepared / "prepared", "--out", run, *TRAIN, "--set", f"train.lambda_max={lam}"])
        runs.append(run)
    text = (runs[0] / "report.md").read_text()
    for part in ("curves.png", "embeddings_pca.png", "proxy A-distance", "report only", "| step |"):
        assert part in text, part
    for png in ("curves.png", "embeddings_pca.png", "confusion_target_test.png"):
        assert (runs[0] / png).stat().st_size > 1000
    (runs[0] / "report.md").unlink()
    _ok(["report", runs[0], "--no-tsne"])
    assert (runs[0] / "report.md").is_file()
    last = json.loads((runs[0] / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"source_val_acc", "dev_risk", "snd", "rv_risk", "proxy_a_distance"} <= set(last["selection"])
    res = _ok(["select", *runs, "--criterion", "snd", "--json", tmp_path / "sel.json"])
    assert "report only" in res.output
    ranked = json.loads((tmp_path / "sel.json").read_text())
    assert len(ranked["runs"]) == 2 and "spearman" in ranked
    snds = [r["snd"] for r in ranked["runs"]]
    assert snds == sorted(snds, reverse=True)
    _ok(["train", prepared / "prepared", "--out", tmp_path / "by_dev", *TRAIN, "--set", "train.select=dev"])
    assert json.loads((tmp_path / "by_dev" / "summary.json").read_text())["selected"]["criterion"] == "dev"


def test_train_on_several_prepared_shards(tmp_path):
    """A corpus prepared as two shards trains as one: clips and domains add up, stats are pooled."""
    import numpy as np

    from audio_dann.data.store import open_prepared, open_prepared_many

    shards = []
    for k, shift in enumerate((1.0, 1.05)):
        src = class_folders(tmp_path / f"src{k}", per_class=4, shift=shift)
        tgt = class_folders(tmp_path / f"dev{k}", per_class=3, shift=1.3)
        _ok(["prepare", "--source", src, "--target", tgt, "--out", tmp_path / f"p{k}", *TINY])
        shards.append(tmp_path / f"p{k}")
    both = open_prepared_many(shards)
    one = [open_prepared(s) for s in shards]
    assert len(both.features) == sum(len(p.features) for p in one)
    assert both.domains == ["source", "dev0", "dev1"]
    np.testing.assert_array_equal(
        both.features[[0, len(one[0].features)]], np.stack([one[0].features[0], one[1].features[0]])
    )
    run = tmp_path / "run"
    _ok(["train", *shards, "--out", run, *TRAIN])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["clips"]["source_train"] == sum(len(p.rows("train", source=True)) for p in one)
    assert len(summary["prepared"]) == 2
    assert torch.load(run / "model.pt", weights_only=True)["domains"] == ["source", "dev0", "dev1"]
    # the same shard twice (here once through a relative spelling) would count its clips twice
    twice = shards[0].parent / "." / shards[0].name
    _fails(["train", shards[0], twice, "--out", tmp_path / "run2", *TRAIN], "given twice")


def test_errors_are_one_line_exit_2(prepared, tmp_path):
    _fails(["evaluate", tmp_path / "nope.pt", prepared / "tgt_test"], "model file not found")
    (tmp_path / "foreign.pt").write_text("hello")
    _fails(
        ["predict", tmp_path / "foreign.pt", prepared / "tgt_test", "--out", tmp_path / "p.csv"],
        "not an audio-dann model bundle",
    )
    (tmp_path / "half").mkdir()
    _fails(["train", tmp_path / "half", "--out", tmp_path / "r"], "incomplete")
    _fails(["train", prepared / "prepared", "--out", tmp_path / "r", "--set", "train.stepz=1"], "train.stepz")
    if not torch.cuda.is_available():
        _fails(["train", prepared / "prepared", "--out", tmp_path / "r", "--device", "cuda"], "no CUDA device")
    _fails(
        ["prepare", "--source", tmp_path / "none", "--target", prepared / "tgt", "--out", tmp_path / "o"],
        "no such file",
    )


def test_demo_quick(tmp_path):
    res = _ok(["demo", "--quick", "--out", tmp_path / "demo", "--device", "cpu"])
    assert "DANN" in res.output
    results = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    from audio_dann.api import evaluate

    for key, run in (("source_only", "source-only"), ("dann", "dann"), ("auto", "auto")):  # the table is evaluate's
        field = evaluate(
            tmp_path / "demo" / "runs" / run / "model.pt", tmp_path / "demo" / "data" / "field_test.csv", workers=0
        )
        assert results[key]["target_accuracy"] == pytest.approx(field["accuracy"]) and field["n"] == 20
    assert results["gain"] == pytest.approx(
        results["dann"]["target_accuracy"] - results["source_only"]["target_accuracy"]
    )
    assert results["gain_auto"] == pytest.approx(
        results["auto"]["target_accuracy"] - results["source_only"]["target_accuracy"]
    )
    auto = json.loads((tmp_path / "demo" / "runs" / "auto" / "summary.json").read_text())
    assert auto["self_training"]["method"] == "latent-bn"


@pytest.mark.parametrize("workers,in_workers", [(0, True), (2, True), (2, False)])
def test_predict_equals_the_plain_model(tmp_path, workers, in_workers):
    """Whatever the workers, chunking and batching (network in the workers as on CPU, or in the main
    process as on a GPU), a file's window probabilities are softmax(model(window))."""
    from audio_dann.config import Config
    from audio_dann.data.audio import load_mono, slice_windows
    from audio_dann.infer.engine import iter_predictions
    from audio_dann.nn.classifier import build_classifier

    torch.manual_seed(0)
    model = build_classifier(Config(), ["a", "b", "c"], ["source", "target"]).eval()
    paths = [write(tmp_path / f"{k:02d}.wav", tone(200 + 150 * k, 0.4 + 0.7 * k, 16000), 16000) for k in range(5)]
    (tmp_path / "bad.wav").write_text("not audio")
    paths.insert(2, tmp_path / "bad.wav")
    results = list(
        iter_predictions(model, [str(p) for p in paths], batch_size=4, workers=workers, network_in_workers=in_workers)
    )
    assert [r.path for r in results] == [str(p) for p in paths] and results[2].error
    for p, r in zip(paths, results):
        if r.error:
            continue
        windows, _ = slice_windows(load_mono(p, 16000), 16000, 8000)
        with torch.no_grad():
            ref = torch.softmax(model(torch.from_numpy(windows)), 1).numpy()
        np.testing.assert_allclose(r.probs, ref, atol=1e-5)


def test_predict_bf16_autocast_is_close_to_float32(tmp_path):
    from audio_dann.config import Config
    from audio_dann.infer.engine import iter_predictions
    from audio_dann.nn.classifier import build_classifier

    torch.manual_seed(1)
    model = build_classifier(Config(), ["a", "b"], ["source", "target"]).eval()
    paths = [str(write(tmp_path / f"{k}.wav", tone(300 * (k + 1), 1.5, 16000), 16000)) for k in range(3)]
    full = [r.probs for r in iter_predictions(model, paths, workers=0)]
    half = [r.probs for r in iter_predictions(model, paths, workers=0, amp="bf16")]
    for a, b in zip(full, half):
        np.testing.assert_allclose(a, b, atol=0.02)
    with pytest.raises(ValueError, match="--amp"):
        list(iter_predictions(model, paths, amp="fp8"))


@pytest.mark.parametrize(
    "argv, says",
    [
        (["train", "--bogus"], "No such option: --bogus"),
        (["predict"], "Missing argument 'model'"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
    ],
)
def test_parser_errors_are_one_line_exit_2(monkeypatch, capsys, argv, says):
    from audio_dann.cli import main

    monkeypatch.setattr("sys.argv", ["audio-dann", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert says in err and err.startswith("error:") and len(err.splitlines()) == 1 and "╭" not in err


def test_the_entry_point_exits_0_on_help(monkeypatch, capsys):
    from audio_dann.cli import main

    monkeypatch.setattr("sys.argv", ["audio-dann", "evaluate", "--help"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0 and "evaluate" in capsys.readouterr().out


def test_the_cli_imports_nothing_heavy_until_a_command_runs():
    heavy = "('torch', 'numpy', 'matplotlib', 'sklearn', 'scipy')"
    code = f"import sys, audio_dann, audio_dann.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
