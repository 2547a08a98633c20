import csv
import importlib
import json

import numpy as np
import pytest
import torch
from audio_files import class_folders, tone, write

from audio_dann.config import Config, apply_overrides
from audio_dann.data.prepare import prepare
from audio_dann.data.store import open_prepared
from audio_dann.errors import PrepareError, ScanError, StoreError

CFG = apply_overrides(Config(), ["features.n_mels=16", "data.workers=0", "data.batch_size=4"])


def _messy_source(root):
    """Two classes of every format the issue lists, plus broken files."""
    sr = 16000
    write(root / "low" / "plain.wav", tone(300, 0.5, sr), sr)
    write(root / "low" / "deep" / "stereo44k.wav", tone(310, 0.6, 44100, channels=2), 44100)
    write(root / "low" / "pcm24.wav", tone(320, 0.5, 22050), 22050, "PCM_24")
    write(root / "low" / "short.wav", tone(330, 0.2, sr), sr)
    write(root / "high" / "float.wav", tone(2000, 0.5, sr), sr, "FLOAT")
    write(root / "high" / "clip.flac", tone(2100, 0.5, 48000), 48000)
    write(root / "high" / "long.wav", tone(2200, 30.0, 8000), 8000)
    write(root / "high" / "also.wav", tone(2300, 0.7, sr), sr)
    (root / "high" / "text.wav").write_text("this is not audio")
    (root / "high" / "empty.wav").write_bytes(b"")
    write(root / "low" / "corrupt.wav", tone(300, 0.5, sr), sr)
    data = (root / "low" / "corrupt.wav").read_bytes()
    (root / "low" / "corrupt.wav").write_bytes(data[:20] + b"\x00garbage" * 4)
    nan = tone(300, 0.3, sr)
    nan[:] = np.nan
    write(root / "low" / "nan.wav", nan, sr, "FLOAT")
    return root


def test_prepare_messy_inputs_follows_the_contract(tmp_path):
    src = _messy_source(tmp_path / "src")
    tgt = class_folders(tmp_path / "tgt", per_class=3, shift=1.2)  # subfolder names must be ignored
    out = tmp_path / "prepared"
    summary = prepare(src, [tgt], out, config=CFG)
    for name in (
        "config.yaml",
        "index.csv",
        "features.npy",
        "stats.json",
        "classes.json",
        "skipped.csv",
        "domains.json",
        "prepared.json",
    ):
        assert (out / name).is_file(), name
    assert not (out / "progress.json").exists()
    skipped = {r["file"].split("/")[-1]: r["reason"] for r in csv.DictReader(open(out / "skipped.csv"))}
    assert set(skipped) == {"text.wav", "empty.wav", "corrupt.wav", "nan.wav"}
    assert "NaN" in skipped["nan.wav"]
    assert summary.files_skipped == 4 and summary.files_read == 8 + 6

    prep = open_prepared(out)
    assert prep.classes == ["high", "low"]
    assert prep.domains == ["source", "tgt"]
    assert prep.features.dtype == np.float16
    assert prep.features.shape == (summary.clips_written, 16, CFG.features.n_frames)
    assert np.isfinite(np.asarray(prep.features, dtype=np.float32)).all()
    rows = prep.index
    assert list(rows[0]) == ["clip_id", "file", "offset", "domain", "label", "split"]
    long_rows = [r for r in rows if r["file"].endswith("long.wav")]
    assert len(long_rows) == 59  # 30 s, 1 s windows every 0.5 s
    # the stored clips are the frontend on each window (cut a batch of 4 at a time in the worker)
    from audio_dann.data.audio import load_mono, slice_windows
    from audio_dann.nn.frontend import LogMel

    windows, _ = slice_windows(load_mono(long_rows[0]["file"], 16000), 16000, 8000)
    ref = LogMel.from_config(CFG.features)(torch.from_numpy(windows)).half().numpy()
    got = np.asarray(prep.features[[int(r["clip_id"]) for r in long_rows]], dtype=np.float32)
    np.testing.assert_allclose(got, ref.astype(np.float32), rtol=2e-3, atol=2e-3)  # float16 storage
    assert float(long_rows[-1]["offset"]) == pytest.approx(29.0)
    assert len([r for r in rows if r["file"].endswith("short.wav")]) == 1  # padded, not dropped
    # a file's windows never straddle splits; target clips are unlabelled training clips
    assert len({r["split"] for r in long_rows}) == 1
    assert {r["split"] for r in rows if r["domain"] == "tgt"} == {"train"}
    assert {r["label"] for r in rows if r["domain"] == "tgt"} == {""}
    assert {r["split"] for r in rows if r["domain"] == "source"} == {"train", "val"}
    stats = json.loads((out / "stats.json").read_text())
    assert len(stats["mean"]) == len(stats["std"]) == 16 and min(stats["std"]) > 0
    # streamed from the workers' sums = computed directly over every frame of the training clips
    feats = np.load(out / "features.npy").astype(np.float64)
    train = feats[[int(r["clip_id"]) for r in rows if r["split"] == "train"]]
    np.testing.assert_allclose(stats["mean"], train.mean(axis=(0, 2)), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats["std"], train.std(axis=(0, 2)), rtol=1e-6, atol=1e-9)

    again = prepare(src, [tgt], out, config=CFG)
    assert again.already_complete and again.clips_written == summary.clips_written


def test_split_is_stratified_and_deterministic(tmp_path):
    src = class_folders(tmp_path / "src", classes=("low", "mid", "high"), per_class=10)
    tgt = class_folders(tmp_path / "tgt", per_class=2)
    cfg = apply_overrides(CFG, ["data.val_fraction=0.2", "data.seed=4"])
    a = open_prepared(prepare(src, [tgt], tmp_path / "a", config=cfg).out)
    b = open_prepared(prepare(src, [tgt], tmp_path / "b", config=cfg).out)
    val = [(r["file"], r["label"]) for r in a.index if r["split"] == "val"]
    assert val == [(r["file"], r["label"]) for r in b.index if r["split"] == "val"]
    assert sorted(lbl for _, lbl in val) == ["high", "high", "low", "low", "mid", "mid"]


def test_manifests_domains_and_target_eval(tmp_path):
    class_folders(tmp_path / "audio" / "a", per_class=4)
    class_folders(tmp_path / "audio" / "b", per_class=4, shift=1.3)
    with open(tmp_path / "src.csv", "w") as f:
        f.write("path,label\n" + "".join(f"audio/a/{c}/{c}_{k}.wav,{c}\n" for c in ("low", "high") for k in range(4)))
    with open(tmp_path / "tgt.csv", "w") as f:
        f.write(
            "path,label,domain\n"
            + "".join(f"audio/b/{c}/{c}_{k}.wav,,dev{k % 2}\n" for c in ("low", "high") for k in range(3))
        )
    with open(tmp_path / "test.csv", "w") as f:
        f.write("path,label,domain\naudio/b/low/low_3.wav,low,dev1\naudio/b/high/high_3.wav,high,dev9\n")
    prep = open_prepared(
        prepare(
            tmp_path / "src.csv", [tmp_path / "tgt.csv"], tmp_path / "p", target_eval=tmp_path / "test.csv", config=CFG
        ).out
    )
    assert prep.domains == ["source", "dev0", "dev1"]
    test = [r for r in prep.index if r["split"] == "test"]
    assert {(r["label"], r["domain"]) for r in test} == {("low", "dev1"), ("high", "dev9")}
    assert set(prep.domain_ids(prep.rows("train", source=False)).tolist()) == {1, 2}


def test_interrupted_prepare_resumes_to_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setattr(
        importlib.import_module("audio_dann.data.store_writer"), "_SAVE_EVERY_SECONDS", 0.0
    )  # save after every file
    src = class_folders(tmp_path / "src", per_class=8)
    tgt = class_folders(tmp_path / "tgt", per_class=6, shift=1.1)
    ref = open_prepared(prepare(src, [tgt], tmp_path / "ref", config=CFG).out)

    class Stop(Exception):
        pass

    def stop_at(done, total, clips, seconds):
        if done == 17:
            raise Stop

    out = tmp_path / "p"
    with pytest.raises(Stop):
        prepare(src, [tgt], out, config=CFG, progress=stop_at)
    with pytest.raises(StoreError, match="incomplete"):
        open_prepared(out)
    state = json.loads((out / "progress.json").read_text())
    assert 0 < state["files_done"] < 28
    summary = prepare(src, [tgt], out, config=CFG)
    assert summary.resumed_from_file == state["files_done"]
    got = open_prepared(out)
    assert got.index == [{**r, "file": r["file"]} for r in ref.index]
    assert np.array_equal(np.asarray(got.features), np.asarray(ref.features))
    assert (out / "stats.json").read_text() == (tmp_path / "ref" / "stats.json").read_text()


def test_clear_errors(tmp_path):
    src = class_folders(tmp_path / "src", per_class=2)
    tgt = class_folders(tmp_path / "tgt", per_class=2)
    with pytest.raises(ScanError, match="no such file"):
        prepare(tmp_path / "missing", [tgt], tmp_path / "o1", config=CFG)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ScanError, match="no audio files"):
        prepare(src, [tmp_path / "emptydir"], tmp_path / "o2", config=CFG)
    (src / "ghost").mkdir()
    with pytest.raises(ScanError, match="ghost"):
        prepare(src, [tgt], tmp_path / "o3", config=CFG)
    (src / "ghost").rmdir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    with pytest.raises(PrepareError, match="holds other files"):
        prepare(src, [tgt], foreign, config=CFG)
    bad = tmp_path / "bad"
    for c in ("a", "b"):
        (bad / c).mkdir(parents=True)
        (bad / c / "x.wav").write_text("not audio")
    with pytest.raises(PrepareError, match="no usable"):
        prepare(bad, [tgt], tmp_path / "o4", config=CFG)


def test_file_chunks_cover_every_file_once_within_limits():
    from audio_dann.data.workers import file_chunks

    sizes = [100, 100, 5000, 100, 100, 100, 100, 100, 0, 100]
    chunks = file_chunks(sizes, start=1, max_files=3, max_bytes=1000)
    assert chunks == [(1, 2), (2, 3), (3, 6), (6, 9), (9, 10)]
    assert [i for lo, hi in chunks for i in range(lo, hi)] == list(range(1, 10))
    assert file_chunks(sizes, start=10) == [] and file_chunks([], 0) == []
    assert file_chunks([7] * 40) == [(0, 16), (16, 32), (32, 40)]


def test_a_changed_input_file_changes_the_fingerprint_and_is_prepared_again(tmp_path):
    cfg = apply_overrides(Config(), ["features.n_mels=16", "data.workers=0"])
    src = class_folders(tmp_path / "src", per_class=3)
    tgt = class_folders(tmp_path / "tgt", per_class=2, shift=1.2)
    first = prepare(src, tgt, tmp_path / "p", config=cfg)  # one target given as a plain path, not a list
    assert first.clips_written > 0 and open_prepared(tmp_path / "p").domains == ["source", "tgt"]
    assert prepare(src, [tgt], tmp_path / "p", config=cfg).already_complete
    write(tgt / "low" / "low_0.wav", tone(300, 2.0, 16000), 16000)  # longer: more clips
    again = prepare(src, [tgt], tmp_path / "p", config=cfg)
    assert not again.already_complete and again.clips_written > first.clips_written
