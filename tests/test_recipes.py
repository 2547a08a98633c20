"""Recipes run end to end in a short debug mode (SpeechBrain-style)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from audio_files import tone, write

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--set",
    "train.steps=6",
    "--set",
    "train.eval_every=3",
    "--set",
    "train.batch_size=8",
    "--set",
    "features.n_mels=16",
    "--set",
    "model.channels=[4,8]",
    "--set",
    "model.embedding_dim=16",
    "--set",
    "train.rv_steps=2",
    "--set",
    "data.workers=0",
]


def _fake_dcase(root: Path) -> Path:
    """A miniature of the TAU Urban Acoustic Scenes 2020 Mobile development layout."""
    scenes = {"airport": 400.0, "park": 1500.0}
    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    train = ["filename\tscene_label"]
    evaluate = ["filename\tscene_label"]
    for scene, f0 in scenes.items():
        for seg in range(4):
            for dev, shift in (("a", 1.0), ("b", 1.1), ("s1", 0.9), ("s4", 1.2)):
                name = f"audio/{scene}-lisbon-{seg}-{seg}-{dev}.wav"
                write(root / name, tone(f0 * shift, 2.0, 16000, seed=seg), 16000)
                meta.append(f"{name}\t{scene}\tlisbon-{seg}\t{dev}")
                if seg < 3 and dev != "s4":
                    train.append(f"{name}\t{scene}")
                elif seg == 3:
                    evaluate.append(f"{name}\t{scene}")
    (root / "evaluation_setup").mkdir(parents=True)
    (root / "meta.csv").write_text("\n".join(meta) + "\n")
    (root / "evaluation_setup" / "fold1_train.csv").write_text("\n".join(train) + "\n")
    (root / "evaluation_setup" / "fold1_evaluate.csv").write_text("\n".join(evaluate) + "\n")
    return root


def test_dcase_recipe_on_a_miniature_layout(tmp_path):
    data = _fake_dcase(tmp_path / "TAU-mini")
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / "dcase_devices" / "run_recipe.py"),
            "--dataset",
            str(data),
            "--work",
            str(tmp_path / "work"),
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    devices = json.loads((tmp_path / "work" / "devices.json").read_text())
    assert devices == {"source": "a", "seen": ["b", "s1"], "unseen": ["s4"]}
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    assert {r["method"] for r in results} == {"source-only", "dann"}
    for r in results:
        assert set(r["per_device"]) == {"a", "b", "s1", "s4"}
        assert r["unseen"] == r["per_device"]["s4"]
    assert "| seen | unseen |" in res.stdout
    prep_domains = json.loads((tmp_path / "work" / "prepared" / "domains.json").read_text())
    assert prep_domains == ["source", "b", "s1"]  # one unlabelled target domain per seen device


def test_dcase_recipe_names_a_missing_layout(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / "dcase_devices" / "run_recipe.py"),
            "--dataset",
            str(tmp_path),
            "--work",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0 and "meta.csv: not found" in res.stderr


def test_studio_to_field_recipe_matches_the_demo():
    from audio_dann.config import load_config
    from audio_dann.demo import demo_config

    assert load_config(ROOT / "recipes" / "studio_to_field" / "config.yaml") == demo_config(quick=False)[1]


def test_heart_sound_manifests_keep_each_recording_on_one_side(tmp_path):
    import csv
    import importlib.util

    spec = importlib.util.spec_from_file_location("heart", ROOT / "recipes" / "heart_sounds" / "run_recipe.py")
    heart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heart)
    data = tmp_path / "physionet"
    data.mkdir()
    rows = [(f"{db}{k:04d}", "abnormal" if k % 4 == 0 else "normal", db) for db in "ebf" for k in range(40)]
    (data / "labels.csv").write_text("record,label,database\n" + "".join(f"{r},{lab},{d}\n" for r, lab, d in rows))
    m = heart.manifests(data, "e:b", tmp_path / "work", seed=0)
    read = lambda p: list(csv.DictReader(open(p)))  # noqa: E731
    source, pool, test = read(m["source"]), read(m["pool"]), read(m["test"])
    stem = lambda r: Path(r["path"]).stem  # noqa: E731
    assert {stem(r)[0] for r in source} == {"e"} and {stem(r)[0] for r in pool + test} == {"b"}
    assert not {stem(r) for r in pool} & {stem(r) for r in test} and len(pool) + len(test) == 40
    assert {r["split"] for r in source} == {"train", "val"} and sum(r["split"] == "val" for r in source) == 4
    assert m["pool_abnormal"] == pytest.approx(sum(r["label"] == "abnormal" for r in pool) / len(pool))
    assert read(heart.manifests(data, "e:b", tmp_path / "again", seed=0)["pool"]) == pool  # seeded
    # leave one database out: every other database is the source; the oracle is the labelled pool
    lodo = heart.manifests(data, "rest:b", tmp_path / "lodo", seed=0)
    assert {stem(r)[0] for r in read(lodo["source"])} == {"e", "f"}
    oracle = read(lodo["oracle"])
    assert [stem(r) for r in oracle] == [stem(r) for r in read(lodo["pool"])] and {r["split"] for r in oracle} == {
        "train",
        "val",
    }


def test_heart_sound_table_intervals():
    import importlib.util

    spec = importlib.util.spec_from_file_location("table", ROOT / "recipes" / "heart_sounds" / "table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert table.interval([0.5, 0.6, 0.7]) == "0.600 ± 0.248"  # t(0.975, 2) = 4.303, sd 0.1 / sqrt(3)
    assert table.interval([0.5]) == "0.500"


def test_stage_seeds_table_counts_the_runs_under_adabn(monkeypatch):
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "recipes" / "studio_to_field"))  # it imports target_sound.py beside it
    spec = importlib.util.spec_from_file_location(
        "stage_seeds", ROOT / "recipes" / "studio_to_field" / "stage_seeds.py"
    )
    stage_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage_seeds)
    rows = [
        {"setting": "both", "train_seed": 0, "stage_seed": 0, "adabn": 0.7, "stage": 0.65},
        {"setting": "both", "train_seed": 0, "stage_seed": 1, "adabn": 0.7, "stage": 0.95},
        {"setting": "both", "train_seed": 1, "stage_seed": 0, "adabn": 0.8, "stage": 0.75},
        {"setting": "none", "train_seed": 0, "stage_seed": 0, "adabn": 0.7, "stage": 0.9},
    ]
    lines = stage_seeds.table(rows).splitlines()
    assert lines[2] == "| both | 2 | 3 | 0.733 | 0.783 | 0.650 - 0.950 | 2 |"
    assert lines[3] == "| none | 1 | 1 | 0.700 | 0.900 | 0.900 - 0.900 | 0 |"


def test_the_grader_ships_what_the_guard_keeps_with_the_figures_the_run_reports():
    import importlib.util

    sys.path.insert(0, str(ROOT / "recipes" / "estimates"))
    try:
        spec = importlib.util.spec_from_file_location("grade", ROOT / "recipes" / "estimates" / "grade.py")
        grade = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(grade)
    finally:
        sys.path.remove(str(ROOT / "recipes" / "estimates"))
    row = lambda task, model, truth, est, low, **kw: {  # noqa: E731
        "grid": "fsdd",
        "task": task,
        "model": model,
        "seed": 0,
        "truth": truth,
        "estimate": est,
        "lower bound": low,
        **kw,
    }
    rows = [
        row("A", "source-only", 0.5, 0.5, 0.45),
        row("A", "default", 0.9, 0.6, 0.3, **{"estimate, floored by agreement": 0.85}),  # the floor lets it ship
        row("B", "source-only", 0.5, 0.5, 0.45),
        row("B", "default", 0.4, 0.3, 0.2),  # the guard keeps the source-only model
        row("B", "dann", 0.8, 0.9, 0.87),  # shipped as it is: its lower bound 7 points above the truth
    ]
    ship = {(r["task"], r["shipped as"]): r for r in grade.shipped(rows)}
    assert set(ship) == {("A", "default (stage kept)"), ("B", "default (source-only kept)"), ("B", "dann")}
    assert (
        ship[("A", "default (stage kept)")]["estimate"] == 0.85
        and ship[("B", "default (source-only kept)")]["truth"] == 0.5
    )
    table = grade.must_show(rows).splitlines()
    assert table[2].startswith("| fsdd | 3 | ") and "| 1 | 1 |" in table[2]  # one bound above the truth, by > 5 points
