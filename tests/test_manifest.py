import csv
import subprocess
import sys
from pathlib import Path

import pytest
from audio_files import tone, write

from audio_dann.data.manifest import build_manifest, compile_pattern, parse_condition
from audio_dann.errors import ManifestError


def _files(root):
    for label in ("0", "1"):
        for speaker in ("ann", "bob", "cy"):
            for index in range(7):
                write(root / f"{label}_{speaker}_{index}.wav", tone(300, 0.05, 8000), 8000)
    (root / "README.wav.txt").write_text("x")
    write(root / "odd-name.wav", tone(300, 0.05, 8000), 8000)
    return root


def test_pattern_filters_domain_and_val_split(tmp_path):
    root = _files(tmp_path / "d")
    rows, unmatched = build_manifest(
        root, "{label}_{speaker}_{index}.wav", ["speaker in ann,bob", "index>=2"], domain="speaker", val_where="index<4"
    )
    assert unmatched == 1  # odd-name.wav
    assert len(rows) == 2 * 2 * 5
    assert {r["domain"] for r in rows} == {"ann", "bob"}
    assert {(r["index"], r["split"]) for r in rows if r["index"] in ("2", "3")} == {("2", "val"), ("3", "val")}
    assert {r["split"] for r in rows if int(r["index"]) >= 4} == {"train"}
    assert list(rows[0]) == ["path", "label", "domain", "split", "speaker", "index"]
    assert all(Path(r["path"]).is_file() for r in rows)


def test_numeric_conditions_compare_as_numbers():
    _, fields = compile_pattern("{label}_{index}.wav")
    assert parse_condition("index>=10", fields)({"label": "a", "index": "9"}) is False
    assert parse_condition("index>=10", fields)({"label": "a", "index": "10"}) is True
    assert parse_condition("label not in a,b", fields)({"label": "c", "index": "1"}) is True
    assert parse_condition("label==a", fields)({"label": "a", "index": "1"}) is True


@pytest.mark.parametrize("bad,match", [("speakr in a", "unknown field"), ("index ~ 3", "expected")])
def test_bad_conditions(bad, match):
    with pytest.raises(ManifestError, match=match):
        parse_condition(bad, ["label", "speaker", "index"])


def test_manifest_feeds_prepare_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from audio_dann.cli import app

    root = _files(tmp_path / "d")
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "manifest",
            str(root),
            "--pattern",
            "{label}_{speaker}_{index}.wav",
            "--domain",
            "speaker",
            "--where",
            "speaker in ann,bob",
            "--out",
            str(tmp_path / "m.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert len(rows) == 28
    res = runner.invoke(
        app,
        [
            "manifest",
            str(root),
            "--pattern",
            "{label}_{speaker}_{index}.wav",
            "--where",
            "speaker in zed",
            "--out",
            str(tmp_path / "none.csv"),
        ],
    )
    assert res.exit_code == 2 and "no file matched" in res.output


@pytest.mark.slow
def test_fsdd_recipe_end_to_end_on_a_subset(fsdd_dir, tmp_path):
    """Real data: manifests from file names, prepare, three methods, evaluation; tiny budget."""
    script = Path(__file__).resolve().parents[1] / "recipes" / "fsdd_speakers" / "run_recipe.py"
    res = subprocess.run(
        [
            sys.executable,
            str(script),
            "--fsdd",
            str(fsdd_dir),
            "--work",
            str(tmp_path),
            "--subset",
            "7",
            "--tasks",
            "A",
            "--seeds",
            "0",
            "--set",
            "train.steps=10",
            "--set",
            "train.eval_every=5",
            "--set",
            "train.batch_size=16",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| A | dann |" in res.stdout
    import json

    results = json.loads((tmp_path / "results_default_A.json").read_text())["results"]
    assert {r["method"] for r in results} == {"source-only", "dann", "oracle"}
    # accuracies are counts over the 150 test clips (what evaluate measured, not a placeholder)
    assert all(r["test_n"] == 150 and abs(r["test_acc"] * 150 - round(r["test_acc"] * 150)) < 1e-9 for r in results)
