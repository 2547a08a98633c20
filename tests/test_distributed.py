"""torchrun on CPU (gloo): DDP training equals one process with the same global batch; sharded predict equals
one process."""

import os
import subprocess
import sys

import pytest
import torch
from audio_files import class_folders, tone, write
from typer.testing import CliRunner

from audio_dann.cli import app

pytestmark = pytest.mark.slow

# Dropout off: two ranks of 4+4 clips see exactly the batches one process of 8+8 sees (by
# construction, loaders.batch_indices) and DDP averages their gradients. They are not bit-equal on
# CPU because batch norm normalises each rank's 8 clips with their own statistics (SyncBatchNorm,
# `train.sync_bn`, needs CUDA), so the test bounds the difference instead: losses along the way and
# the final weights must stay close, far closer than two runs with different seeds.
EXACT = [
    "--set",
    "features.n_mels=16",
    "--set",
    "train.steps=6",
    "--set",
    "train.eval_every=3",
    "--set",
    "train.batch_size=8",
    "--set",
    "model.channels=[4,8]",
    "--set",
    "model.embedding_dim=16",
    "--set",
    "model.dropout=0.0",
    "--set",
    "model.domain_dropout=0.0",
    "--device",
    "cpu",
    "--quiet",
]
DANN = [*EXACT, "--method", "dann"]  # the adversarial loop under DDP; the default (auto) is checked below


def _torchrun(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "audio_dann.cli",
        *[str(a) for a in args],
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    class_folders(root / "src", per_class=8)
    class_folders(root / "tgt", per_class=6, shift=1.2)
    res = CliRunner().invoke(
        app,
        [
            "prepare",
            "--source",
            str(root / "src"),
            "--target",
            str(root / "tgt"),
            "--out",
            str(root / "prep"),
            "--set",
            "features.n_mels=16",
            "--workers",
            "0",
        ],
    )
    assert res.exit_code == 0, res.output
    return root


def test_ddp_training_matches_single_process(data, tmp_path):
    single = tmp_path / "single"
    res = CliRunner().invoke(app, ["train", str(data / "prep"), "--out", str(single), *DANN])
    assert res.exit_code == 0, res.output
    ddp = tmp_path / "ddp"
    _torchrun(["train", data / "prep", "--out", ddp, *DANN], tmp_path)
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    assert len((ddp / "metrics.jsonl").read_text().splitlines()) == 2  # rank 0 alone logged
    assert not [p for p in ddp.iterdir() if p.name.startswith(".")]
    summary = __import__("json").loads((ddp / "summary.json").read_text())
    assert summary["world_size"] == 2
    other_seed = tmp_path / "other_seed"
    assert (
        CliRunner().invoke(app, ["train", str(data / "prep"), "--out", str(other_seed), "--seed", "5", *DANN]).exit_code
        == 0
    )

    def weights(run):
        state = torch.load(run / "last.pt", weights_only=True)["model_state"]
        return torch.cat([v.flatten() for k, v in state.items() if k.endswith("weight") and "dann" in k])

    def losses(run):
        return [
            m["class_loss"] for m in map(__import__("json").loads, (run / "metrics.jsonl").read_text().splitlines())
        ]

    w_single, w_ddp, w_other = weights(single), weights(ddp), weights(other_seed)
    assert (w_ddp - w_single).norm() < 0.05 * (w_other - w_single).norm()  # measured: 0.0055
    for a, b in zip(losses(single), losses(ddp)):
        assert abs(a - b) < 0.1 * max(a, 0.1)
    # --resume works the same under torchrun (here on a finished run: nothing left to do, outputs kept)
    _torchrun(["train", data / "prep", "--out", ddp, "--resume", *DANN], tmp_path)
    # the default: source-only on both ranks, then the latent-bn stage on rank 0 alone
    _torchrun(
        ["train", data / "prep", "--out", tmp_path / "auto", "--set", "train.self_training_epochs=1", *EXACT], tmp_path
    )
    auto = __import__("json").loads((tmp_path / "auto" / "summary.json").read_text())
    assert auto["world_size"] == 2 and auto["method"] == "source-only"
    assert auto["self_training"]["method"] == "latent-bn"


def test_sharded_predict_equals_one_process(data, tmp_path):
    run = tmp_path / "run"
    assert CliRunner().invoke(app, ["train", str(data / "prep"), "--out", str(run), *EXACT]).exit_code == 0
    wavs = tmp_path / "wavs"
    for k in range(7):
        write(wavs / f"f{k}.wav", tone(300 + 200 * k, 0.4 + 0.5 * k, 16000), 16000)
    (wavs / "bad.wav").write_text("broken")
    one = tmp_path / "one.csv"
    assert (
        CliRunner()
        .invoke(
            app, ["predict", str(run / "model.pt"), str(wavs), "--out", str(one), "--workers", "0", "--device", "cpu"]
        )
        .exit_code
        == 0
    )
    two = tmp_path / "two.csv"
    _torchrun(
        ["predict", run / "model.pt", wavs, "--out", two, "--workers", "0", "--device", "cpu", "--quiet"], tmp_path
    )
    assert two.read_text() == one.read_text()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]
