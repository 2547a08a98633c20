"""Source-free adaptation, the label-free estimates, the guard, latent domains and self-training in train."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_files import TINY_RUN, class_folders

from audio_dann.adaptation import methods
from audio_dann.adaptation.conditions import discover_domains
from audio_dann.adaptation.estimators import (
    agreement,
    bound_warning,
    calibrate,
    combined_estimate,
    estimate,
    floor_applies,
    prior_bound,
)
from audio_dann.adaptation.methods import adabn
from audio_dann.api import adapt, prepare, train
from audio_dann.config import Config, apply_overrides
from audio_dann.errors import ConfigError, RunError
from audio_dann.nn.classifier import load_checkpoint, load_model
from audio_dann.training.plan import TARGET_SOUND

CFG = apply_overrides(Config(), TINY_RUN)  # one network per run here; the ensemble's own tests set it


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    src = class_folders(root / "src", per_class=6)
    tgt = class_folders(root / "tgt", per_class=5, shift=1.3)
    prepare(src, [tgt], root / "prep", config=CFG)
    runs = {}
    for seed in (0, 1):
        runs[seed] = root / f"run{seed}"
        train(root / "prep", runs[seed], config=CFG, method="source-only", seed=seed, device="cpu", report=False)
    return root, tgt, runs


def test_adabn_sets_running_statistics_to_the_target_average():
    torch.manual_seed(0)
    from audio_dann.config import ModelConfig
    from audio_dann.nn.dann import build_dann

    net = build_dann(ModelConfig(channels=(4, 8), embedding_dim=8), 3, 0, n_mels=8)
    x = torch.randn(40, 8, 12) * 2 + 1
    adabn(net, x, torch.device("cpu"), batch_size=8)  # five equal batches
    bn = net.extractor.features[1]
    with torch.no_grad():
        h = net.extractor.features[0](net.input_norm(x).unsqueeze(1))
    torch.testing.assert_close(bn.running_mean, h.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not net.training and bn.momentum == 0.1  # momentum restored
    from_array = copy.deepcopy(net)  # a memmapped store (numpy slices) gives the same statistics
    adabn(from_array, np.asarray(x.numpy(), dtype=np.float16), torch.device("cpu"), batch_size=8)
    torch.testing.assert_close(from_array.extractor.features[1].running_mean, bn.running_mean, rtol=1e-2, atol=1e-3)


def test_adabn_takes_a_trailing_batch_of_one_clip():
    torch.manual_seed(0)
    from audio_dann.config import ModelConfig
    from audio_dann.nn.dann import build_dann

    net = build_dann(ModelConfig(channels=(4, 8), embedding_dim=8), 3, 0, n_mels=8)
    x = torch.randn(17, 8, 12)
    adabn(net, x, torch.device("cpu"), batch_size=8)  # 8 + 9, not 8 + 8 + 1 (BatchNorm1d cannot take one clip)
    emb = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)][0]
    assert torch.isfinite(emb.running_var).all() and bool((emb.running_var > 0).any())


def _two_conditions(n_files=12, per_file=3, gap=4.0):
    """Clips of ``n_files`` files; the second half of the files recorded on a louder channel."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n_files * per_file, 8, 12, generator=g)
    files = np.repeat(np.arange(n_files), per_file)
    loud = torch.from_numpy(files >= n_files // 2)
    x[loud] += gap * torch.linspace(0, 1, 8)[None, :, None]  # a tilted channel response
    return x, files, loud.numpy()


def test_latent_conditions_and_adabn_per_condition():
    from audio_dann.adaptation.methods import TargetClips, latent_bn_probabilities, latent_conditions
    from audio_dann.config import ModelConfig
    from audio_dann.nn.dann import build_dann
    from audio_dann.nn.outputs import probabilities

    x, files, loud = _two_conditions()
    clips = TargetClips(x.half(), files, [], [])
    conditions = latent_conditions(clips, ks=(2,), seed=0)
    assert len(conditions) == 2 and set(conditions[0]) == {0}
    assert len(set(conditions[1][loud])) == 1 and len(set(conditions[1][~loud])) == 1  # the channels, found
    assert conditions[1][loud][0] != conditions[1][~loud][0]
    torch.manual_seed(0)
    net = build_dann(ModelConfig(channels=(4, 8), embedding_dim=8), 3, 0, n_mels=8)
    before = copy.deepcopy(net.state_dict())
    alone = latent_bn_probabilities(net, x, [conditions[1]])
    for part in (loud, ~loud):  # each condition normalised with its own statistics, as if it were alone
        own = copy.deepcopy(net)
        adabn(own, x[torch.from_numpy(part)], torch.device("cpu"))
        torch.testing.assert_close(
            alone[torch.from_numpy(part)],
            torch.from_numpy(probabilities(own, x[torch.from_numpy(part)])),
            rtol=1e-4,
            atol=1e-5,
        )
    pooled = copy.deepcopy(net)
    adabn(pooled, x, torch.device("cpu"))
    torch.testing.assert_close(
        latent_bn_probabilities(net, x, conditions),
        (torch.from_numpy(probabilities(pooled, x)) + alone) / 2,
        rtol=1e-4,
        atol=1e-5,
    )
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the network is untouched


def test_atc_and_doc_recover_the_accuracy_of_an_unshifted_set():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 2
    labels = np.where(rng.random(4000) < 0.7, logits.argmax(1), rng.integers(0, 5, 4000))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cal = calibrate(probs[:2000], labels[:2000])
    acc = float((probs[2000:].argmax(1) == labels[2000:]).mean())
    est = estimate(probs[2000:], cal)
    assert abs(est["atc-ne"] - acc) < 0.03 and abs(est["doc"] - acc) < 0.03 and estimate(probs, None) == {}
    assert agreement(probs, probs) == 1.0 and agreement(probs, probs[:, ::-1]) < 0.5


def test_the_prior_bound_catches_a_collapsed_model_and_never_undercuts_a_matching_prior():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 200)  # balanced, as the calibration clips
    logits = rng.normal(size=(1000, 5))
    logits[np.arange(1000), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cal = calibrate(probs, labels)
    assert cal["class_prior"] == pytest.approx([0.2] * 5)
    for keep in (1.0, 0.6, 0.2):  # any model on a target with the source's class frequencies
        mixed = np.where(rng.random(1000)[:, None] < keep, probs, rng.random((1000, 5)))
        acc = float((mixed.argmax(1) == labels).mean())
        assert prior_bound(mixed, cal) >= acc - 1e-9
    collapsed = np.tile([0.05, 0.05, 0.8, 0.05, 0.05], (1000, 1))  # confident, one class for everything
    est = estimate(collapsed, cal)
    assert est["prior-bound"] == pytest.approx(0.2) and est["atc-mc"] > 0.9  # ATC believes it, the bound does not
    assert "0.200" in bound_warning(est["atc-mc"], est["prior-bound"]) and bound_warning(0.25, 0.2) is None
    assert prior_bound(collapsed, None) is None and prior_bound(collapsed[:, :4], cal) is None
    assert "prior-bound" not in estimate(collapsed, {k: v for k, v in cal.items() if k != "class_prior"})


def test_the_estimate_is_the_lowest_figure_and_says_which_set_it():
    figures = {"atc-ne": 0.9, "atc-mc": 0.95, "doc": 0.9, "prior-bound": 0.2}
    collapsed = combined_estimate(figures, agreement_value=1.0)  # confident, and its sibling seed agrees everywhere
    assert (
        collapsed["value"] == 0.2
        and collapsed["limited_by"] == "prior-bound"
        and "--label-shift" in collapsed["warning"]
    )
    assert collapsed["combines"] == ["agreement", "atc-ne", "prior-bound"] and collapsed["prior_bound"] == 0.2
    skewed = combined_estimate(figures, agreement_value=1.0, label_shift=True)  # the user says the target is skewed
    assert skewed["value"] == 0.9 and skewed["limited_by"] == "atc-ne" and "warning" not in skewed
    shared = combined_estimate({"atc-ne": 0.99, "prior-bound": 0.95}, agreement_value=0.7)  # a self-trained model
    assert shared["value"] == 0.7 and shared["limited_by"] == "agreement" and "warning" not in shared
    assert (
        combined_estimate({}, None) == {} and combined_estimate({}, 0.6)["value"] == 0.6
    )  # no calibration: agreement alone
    balanced = combined_estimate({"atc-ne": 0.95, "prior-bound": 0.93}, agreement_value=0.7)
    from audio_dann.adaptation.adapt import _estimate_record  # adapt warns on the estimate of the model it keeps

    est = {"before": collapsed, "after": balanced}
    assert "warning" in _estimate_record(est, "original", None) and "warning" not in _estimate_record(
        est, "adapted", None
    )
    assert _estimate_record(est, "adapted", None)["limited_by"] == {"before": "prior-bound", "after": "agreement"}


def test_trained_bundles_carry_a_calibration_and_train_reports_an_estimate(trained):
    root, _, runs = trained
    model = load_model(runs[0] / "model.pt")
    assert set(model.calibration) >= {"source_accuracy", "atc_ne_threshold"}
    est = json.loads((runs[0] / "summary.json").read_text())["estimated_target_accuracy"]
    assert 0.0 <= est["value"] <= 1.0 and "no target label" in est["on"]
    assert 0.0 <= est["prior_bound"] <= 1.0 and sum(model.calibration["class_prior"]) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["adabn", "shot-file", "latent-bn"])
def test_adapt_writes_a_bundle_that_records_the_adaptation(trained, tmp_path, method):
    root, tgt, runs = trained
    epochs = []
    s = adapt(
        runs[0] / "model.pt",
        tgt,
        tmp_path / "a",
        method=method,
        config=methods.AdaptConfig(epochs=2, batch_size=8),
        guard=False,
        workers=0,
        device="cpu",
        on_epoch=lambda done, total: epochs.append((done, total)),
    )
    assert epochs == ([] if method == "adabn" else [(1, 2), (2, 2)])  # the progress of the trained methods
    model = load_model(tmp_path / "a" / "model.pt")
    assert model.adaptation[-1]["method"] == method and s["clips"] == 10 and s["kept"] == "adapted"
    assert s["estimated_accuracy"]["before"] is not None
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["kept"] == "adapted"
    assert set(s["estimated_accuracy"]["prior_bound"]) == {"before", "after"}
    floor = s["all_estimates"]["after"].get("agreement-adabn")  # self-trained: its agreement with AdaBN
    assert (floor is None) == (method == "adabn") and (floor is None or 0.0 <= floor <= 1.0)
    assert s["adapted_before"] == []  # a pure source-only bundle
    original = load_model(runs[0] / "model.pt")
    assert (model.before_self_training is None) == (method == "adabn")  # the network self-training started from
    if model.before_self_training is not None:
        torch.testing.assert_close(model.before_self_training, original.dann.state_dict())
        again = adapt(tmp_path / "a" / "model.pt", tgt, tmp_path / "b", method="adabn", guard=False, workers=0)
        assert again["all_estimates"]["before"]["agreement-adabn"] == pytest.approx(floor)  # read from the bundle
        assert load_model(tmp_path / "b" / "model.pt").before_self_training is None  # AdaBN came last: no floor
    changed = [k for k, v in original.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert any("running_mean" in k for k in changed)


def _wiping(real):
    """An adaptation that runs ``real``'s AdaBN, then wipes the label head: every clip goes to class 0,
    with near-uniform probabilities."""

    def wiping(dann, clips, method, cfg, device, **_):
        net, info = real(dann, clips, "adabn", cfg, device)
        with torch.no_grad():
            net.label_head.fc.weight.zero_()
            net.label_head.fc.bias.zero_()
            net.label_head.fc.bias[0] = 0.01
        return net, info

    return wiping


def _flipping(real):
    """An adaptation that runs ``real``'s AdaBN, then negates the label head: every confident prediction
    turns into another class, on the source as on the target."""

    def flipping(dann, clips, method, cfg, device, **_):
        net, info = real(dann, clips, "adabn", cfg, device)
        with torch.no_grad():
            net.label_head.fc.weight.neg_()
            net.label_head.fc.bias.neg_()
        return net, info

    return flipping


def test_the_guard_keeps_the_original_when_adaptation_is_expected_to_hurt(trained, tmp_path, monkeypatch):
    root, tgt, runs = trained
    import audio_dann.adaptation.adapt as adapt_module

    monkeypatch.setattr(adapt_module, "adapt_network", _wiping(methods.adapt_network))
    s = adapt(
        runs[0] / "model.pt",
        tgt,
        tmp_path / "g",
        method="adabn",
        reference=runs[1] / "model.pt",
        workers=0,
        device="cpu",
    )
    e, figures = s["estimated_accuracy"], s["all_estimates"]
    assert figures["after"]["agreement"] == 1.0  # the reference, wiped alike, agrees everywhere: agreement alone
    assert figures["after"]["prior-bound"] <= 0.5 + 1e-9  # one class of two for every clip
    assert figures["after"]["atc-ne"] < e["before"]  # and not one confident enough
    assert e["estimator"] == "combined" and e["after"] < e["before"] and s["kept"] == "original"
    assert e["limited_by"]["after"] != "agreement"
    kept, original = load_model(tmp_path / "g" / "model.pt"), load_model(runs[0] / "model.pt")
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in kept.state_dict().items())
    assert kept.adaptation[-1]["kept"] == "original"


def _auto_target_sound() -> list[str]:
    """The settings that make ``--method source-only`` train the network ``auto`` trains."""
    background, channel, reverb = TARGET_SOUND["auto"]
    return [f"train.target_background={background}", f"train.target_channel={channel}", f"train.target_reverb={reverb}"]


def test_train_undoes_a_self_training_stage_its_estimate_says_hurt(trained, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import audio_dann.adaptation.stage as run_module
    from audio_dann.cli import app

    root, _, _ = trained
    monkeypatch.setattr(run_module, "adapt_network", _flipping(run_module.adapt_network))
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(root / "prep"),
            "--out",
            str(tmp_path / "g"),
            "--device",
            "cpu",
            "--seed",
            "3",
            *sum((["--set", o] for o in _cli_overrides()), []),
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "g" / "summary.json").read_text())
    guard = s["self_training"]["guard"]
    assert s["self_training"]["kept"] == "original" and guard["after"] < guard["before"] - guard["margin"]
    floor, prior = guard["agreement_with_adabn"], guard["prior_bound"]["after"]
    assert not floor_applies(prior) or guard["after"] >= min(floor, prior) - 1e-9  # the floor, where it applies
    assert "stage was undone" in " ".join(res.output.split())
    assert "was **undone** by its guard" in (tmp_path / "g" / "report.md").read_text()
    plain = train(
        root / "prep",
        tmp_path / "p",
        config=apply_overrides(CFG, ["train.self_training=none", *_auto_target_sound()]),
        method="source-only",
        seed=3,
        device="cpu",
        report=False,
    )  # the same network, no stage
    assert "self_training" not in plain
    guarded, pure = load_model(tmp_path / "g" / "model.pt"), load_model(tmp_path / "p" / "model.pt")
    assert all(torch.equal(v, pure.dann.state_dict()[k]) for k, v in guarded.dann.state_dict().items())
    off = train(
        root / "prep",
        tmp_path / "o",
        config=apply_overrides(CFG, ["train.self_training_guard=false"]),
        seed=3,
        device="cpu",
        report=False,
    )
    assert off["self_training"]["kept"] == "adapted" and "guard" not in off["self_training"]


def _twin(model: Path, out: Path) -> Path:
    """A model that predicts as ``model`` does on every clip but is not a copy of its weights."""
    twin = load_model(model)
    bn = next(m for m in twin.dann.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean += 1e-7
    twin.save(out)
    return out


def _cli_overrides() -> list[str]:
    """CFG's settings as --set values, for the CLI."""
    return list(TINY_RUN)


def test_latent_domains_are_found_in_clear_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 6
    x = np.concatenate([c + rng.normal(size=(40, 6)) for c in centres])
    labels, info = discover_domains(x, seed=0)
    assert info["k"] == 3
    truth = np.repeat([0, 1, 2], 40)
    assert all(len(set(labels[truth == t])) == 1 for t in range(3)) and len(set(labels)) == 3


def test_train_with_latent_domains_and_a_self_training_stage(trained, tmp_path):
    root, _, _ = trained
    cfg = apply_overrides(CFG, ["train.latent_domains=2", "train.self_training=adabn"])
    s = train(root / "prep", tmp_path / "r", config=cfg, method="dann", device="cpu", report=False)
    assert s["latent_domains"]["k"] == 2 and s["self_training"]["method"] == "adabn"
    model = load_model(tmp_path / "r" / "model.pt")
    assert len(model.domains) == 3 and model.dann.domain_head.net[-1].out_features == 3
    assert model.adaptation[-1]["stage"] == "train.self_training"


def test_pseudo_labels_under_the_threshold_are_left_out():
    from audio_dann.adaptation.methods.shot import _file_neighbour_labels

    p = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])
    z = torch.eye(4)  # every window its own neighbour only (k=0)
    files = np.arange(4)  # one window per file
    assert _file_neighbour_labels(z, p, files, 0).tolist() == [0, 0, 1, 1]
    assert _file_neighbour_labels(z, p, files, 0, threshold=0.7).tolist() == [0, -1, 1, 1]
    assert _file_neighbour_labels(z, p, files, 0, threshold=0.99).tolist() == [-1, -1, -1, -1]


def test_teacher_pseudo_labels_are_per_file_and_thresholded():
    from audio_dann.adaptation.methods import AdaptConfig, TargetClips
    from audio_dann.adaptation.methods.shot import ShotFile

    teacher = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.45, 0.55], [0.5, 0.5]])
    clips = TargetClips(torch.zeros(5, 4, 4), np.array([0, 0, 1, 1, 2]), [], [])  # file 0 averages to [0.6, 0.4]

    def labels(threshold):
        method = ShotFile(AdaptConfig(threshold=threshold), torch.device("cpu"), teacher)
        method.begin(None, clips)
        return method.pseudo_labels(None, clips).tolist()

    assert labels(0.0) == [0, 0, 1, 1, 0]
    assert labels(0.65) == [-1, -1, 1, 1, -1]


def test_distilling_towards_a_teacher_follows_the_teacher_not_the_model(trained):
    from audio_dann.adaptation.methods import AdaptConfig, TargetClips, adapt_network
    from audio_dann.nn.outputs import probabilities

    model = load_model(trained[2][0] / "model.pt")
    x = torch.randn(48, 16, 101, generator=torch.Generator().manual_seed(0)).half()
    clips = TargetClips(x, np.repeat(np.arange(12), 4), [], [])
    own = probabilities(adapt_network(model.dann, clips, "adabn")[0], x).argmax(1)
    n = len(model.classes)
    wanted = (own + 1) % n  # a teacher that disagrees with the model on every window
    teacher = torch.nn.functional.one_hot(torch.as_tensor(wanted), n).float()
    cfg = AdaptConfig(epochs=15, batch_size=8, pseudo_weight=3.0, lr=0.02)
    net, info = adapt_network(model.dann, clips, "shot-file", cfg, "cpu", teacher=teacher)
    after = probabilities(net, x).argmax(1)
    assert info["pseudo_labels"] == "teacher"
    assert (own == wanted).mean() == 0 and (after == wanted).mean() > 0.6  # from none of the windows to most
    with pytest.raises(ValueError, match="a teacher needs method shot-file"):
        adapt_network(model.dann, clips, "shot", cfg, "cpu", teacher=teacher)


def test_a_latent_ensemble_trains_its_members_and_teaches_the_shipped_model(trained, tmp_path):
    root, _, _ = trained
    from typer.testing import CliRunner

    from audio_dann.cli import app

    sets = [s for s in TINY_RUN if s.startswith(("model.", "train."))]
    sets = [s for s in sets if "latent_ensemble" not in s] + [
        "train.latent_ensemble=[2]",
        "train.self_training_epochs=1",
    ]
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(root / "prep"),
            "--out",
            str(tmp_path / "e"),
            "--device",
            "cpu",
            "--method",
            "dann",
            *[a for kv in sets for a in ("--set", kv)],
        ],
    )
    assert res.exit_code == 0, res.output
    assert "self-trained on the mean predictions of 2 networks" in res.output
    assert "latent_ensemble" in (tmp_path / "e" / "report.md").read_text()
    s = json.loads((tmp_path / "e" / "summary.json").read_text())
    cfg = apply_overrides(CFG, sets)
    member = tmp_path / "e" / "members" / "latent2"
    assert json.loads((member / "summary.json").read_text())["latent_domains"]["k"] == 2
    st = s["self_training"]
    assert st["method"] == "shot-file" and st["pseudo_labels"] == "teacher"  # auto under latent_ensemble
    assert st["ensemble"]["members"] == [".", "members/latent2"] and len(st["ensemble"]["agreement_with_teacher"]) == 2
    assert st["ensemble"]["normalisation"] == "latent-bn"  # the default teacher: AdaBN per latent condition
    assert "report_only" not in st["ensemble"]  # no labelled target test clips in this folder
    assert load_model(tmp_path / "e" / "model.pt").adaptation[-1]["ensemble"]["members"][1] == "members/latent2"
    # a stage after DANN gets no agreement floor (floor_holds): it starts from an adapted network
    assert (
        st["guard"]["agreement_with_adabn"] is None and "agreement-adabn" not in s["estimated_target_accuracy"]["all"]
    )
    assert load_model(tmp_path / "e" / "model.pt").before_self_training is None
    stamp = (member / "model.pt").stat().st_mtime_ns
    again = train(root / "prep", tmp_path / "e", config=cfg, method="dann", device="cpu", report=False, resume=True)
    assert again == s and (member / "model.pt").stat().st_mtime_ns == stamp  # finished: nothing redone

    def kill(step, total, m):  # killed while the member trains, after its first checkpoint
        if m.get("member") == "latent2" and step > 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(root / "prep", tmp_path / "k", config=cfg, method="dann", device="cpu", report=False, progress=kill)
    assert (tmp_path / "k" / "members" / "latent2" / "last.pt").is_file()
    assert not (tmp_path / "k" / "summary.json").exists()
    resumed = train(root / "prep", tmp_path / "k", config=cfg, method="dann", device="cpu", report=False, resume=True)
    assert resumed["self_training"]["ensemble"]["agreement_with_teacher"] == st["ensemble"]["agreement_with_teacher"]
    torch.testing.assert_close(
        load_model(tmp_path / "k" / "model.pt").state_dict(), load_model(tmp_path / "e" / "model.pt").state_dict()
    )  # as if never killed


def test_the_default_is_auto_and_dann_keeps_its_ensemble_of_k_none_2_3_4_and_source_only_stays_pure():
    from audio_dann.training.plan import Plan, make_plan

    plan = lambda *sets, target=True, domains=1: make_plan(apply_overrides(Config(), list(sets)).train, target, domains)  # noqa: E731
    auto_sound = TARGET_SOUND["auto"]
    assert Config().train.method == "auto" and plan() == Plan("auto", "source-only", "latent-bn", (), *auto_sound)
    assert plan("train.method=dann") == Plan("dann", "dann", "shot-file", (2, 3, 4))
    assert plan("train.method=dann", "train.latent_domains=3").ensemble == (2, 4)  # its own K skipped
    assert plan("train.method=dann", "train.latent_ensemble=[]") == Plan("dann", "dann", "adabn")
    assert plan("train.method=dann", domains=2) == Plan("dann", "dann", "adabn")  # named target domains: no ensemble
    assert Config().train.ensemble_teacher == "latent-bn"
    assert plan("train.method=source-only") == Plan("source-only", "source-only", "none")
    assert plan(target=False) == Plan("auto", "source-only", "none")  # no target audio: no stage
    assert plan("train.self_training=tent").stage == "tent"
    assert Plan.from_dict(plan("train.method=dann").to_dict()) == plan("train.method=dann")


def test_a_latent_ensemble_is_skipped_where_the_target_domains_are_named(trained, tmp_path):
    root, tgt, _ = trained
    other = class_folders(tmp_path / "tgt2", per_class=4, shift=0.8)
    prepare(class_folders(tmp_path / "src", per_class=6), [tgt, other], tmp_path / "prep", config=CFG)
    cfg = apply_overrides(CFG, ["train.latent_ensemble=[2]"])
    s = train(tmp_path / "prep", tmp_path / "e", config=cfg, method="dann", device="cpu", report=False)
    assert not (tmp_path / "e" / "members").exists() and s["self_training"]["method"] == "adabn"


def test_shot_file_with_a_threshold_and_warped_views_trains_and_keeps_the_input(trained):
    from audio_dann.adaptation.methods import AdaptConfig, TargetClips, adapt_network

    model = load_model(trained[2][0] / "model.pt")
    x = torch.randn(40, 16, 101)
    clips = TargetClips(x.half(), np.repeat(np.arange(10), 4), [], [])
    before = {k: v.clone() for k, v in model.dann.state_dict().items()}
    net, info = adapt_network(
        model.dann, clips, "shot-file", AdaptConfig(epochs=2, batch_size=8, threshold=0.5, warp=0.1), "cpu"
    )
    assert info["steps"] == 10 and np.isfinite(info["last_loss"])
    plain, _ = adapt_network(model.dann, clips, "shot-file", AdaptConfig(epochs=2, batch_size=8), "cpu")
    warped, _ = adapt_network(model.dann, clips, "shot-file", AdaptConfig(epochs=2, batch_size=8, warp=0.1), "cpu")
    sure, _ = adapt_network(model.dann, clips, "shot-file", AdaptConfig(epochs=2, batch_size=8, threshold=0.99), "cpu")
    w = lambda m: torch.cat([p.detach().flatten() for p in m.extractor.parameters()])  # noqa: E731
    assert not torch.allclose(w(plain), w(warped)) and not torch.allclose(w(plain), w(sure))  # both settings act
    changed = [k for k, v in net.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any("extractor" in k and "weight" in k for k in changed)
    assert all(torch.equal(v, before[k]) for k, v in model.dann.state_dict().items())  # the original untouched


def test_auto_trains_source_only_then_the_latent_bn_stage(trained, tmp_path):
    from audio_dann.api import estimate

    root, tgt, runs = trained
    # the guard off: this checks the plan and the stage's training (the guard has its own tests); the
    # target's sound off, so that the network before the stage is the pure source-only run's
    # (tests/test_target_sound.py and the guard test train with it)
    cfg = apply_overrides(
        CFG,
        [
            "train.self_training_epochs=2",
            "train.self_training_guard=false",
            "train.target_background=0",
            "train.target_channel=0",
            "train.target_reverb=0",
        ],
    )
    s = train(root / "prep", tmp_path / "auto", config=cfg, seed=0, device="cpu", report=False)  # method: default
    assert s["method"] == "source-only" and s["method_choice"].startswith("method auto")
    assert s["self_training"]["method"] == "latent-bn" and s["self_training"]["clips"] == 10
    assert list(s["self_training"]["settings"]["class_shares"]) == []  # equal shares unless asked
    model = load_model(tmp_path / "auto" / "model.pt")
    assert model.config.train.method == "auto"  # saved as asked; the plan says what it became
    assert s["plan"] == {
        "asked": "auto",
        "training": "source-only",
        "stage": "latent-bn",
        "ensemble": [],
        "background": 0.0,
        "channel": 0.0,
        "reverb": 0.0,
    }
    assert model.adaptation[-1]["stage"] == "train.self_training"
    sample = model.source_sample  # the source validation clips the estimate's critic reads, kept in the bundle
    assert sample["x"].dtype == torch.float16 and len(sample["x"]) == len(sample["y"]) == len(sample["files"]) > 0
    assert s["estimated_target_accuracy"]["lower_bound"] <= s["estimated_target_accuracy"]["value"]
    trained_alike = lambda run: load_checkpoint(run / "last.pt")[0].state_dict()  # noqa: E731  before any stage
    torch.testing.assert_close(trained_alike(tmp_path / "auto"), trained_alike(runs[0]))  # the pure source-only run
    shipped, pure = model.state_dict(), load_model(runs[0] / "model.pt").state_dict()
    assert any(not torch.equal(v, pure[k]) for k, v in shipped.items() if "running_" not in k)  # the stage trained
    # the bundle keeps the network the stage started from (the pure run's), and every later estimate reads it
    torch.testing.assert_close(model.before_self_training, load_model(runs[0] / "model.pt").dann.state_dict())
    floor = s["estimated_target_accuracy"]["all"]["agreement-adabn"]
    later = estimate(tmp_path / "auto" / "model.pt", tgt, workers=0, device="cpu")  # the same clips as train's pool
    assert later["all"]["agreement-adabn"] == pytest.approx(floor) and 0.0 <= floor <= 1.0
    assert later["value"] == pytest.approx(s["estimated_target_accuracy"]["value"])
    assert later["lower_bound"] == pytest.approx(s["estimated_target_accuracy"]["lower_bound"])
    again = train(root / "prep", tmp_path / "auto", config=cfg, method="auto", device="cpu", report=False, resume=True)
    assert again["self_training"] == json.loads(json.dumps(s["self_training"]))  # finished: read back, not rerun
    capped = train(
        root / "prep",
        tmp_path / "cap",
        config=apply_overrides(cfg, ["train.self_training_max_clips=6"]),
        seed=0,
        device="cpu",
        report=False,
    )["self_training"]
    assert capped["clips"] == 6 and capped["pool_clips"] == 10  # the trained stage holds at most max_clips
    with pytest.raises(ConfigError, match="self_training_max_clips"):
        apply_overrides(cfg, ["train.self_training_max_clips=0"])
    alone = train(
        root / "prep",
        tmp_path / "alone",
        config=apply_overrides(cfg, ["train.self_training=none"]),
        device="cpu",
        report=False,
    )  # auto with the stage turned off: pure source-only
    assert alone["method"] == "source-only" and "self_training" not in alone
    assert "no self-training stage" in alone["method_choice"]
    from typer.testing import CliRunner

    from audio_dann.cli import app

    sets = [
        "features.n_mels=16",
        "model.channels=[4,8]",
        "model.embedding_dim=16",
        "train.steps=6",
        "train.eval_every=6",
        "train.batch_size=8",
        "train.rv_steps=0",
        "train.self_training_epochs=1",
    ]
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(root / "prep"),
            "--out",
            str(tmp_path / "cli"),
            "--device",
            "cpu",
            *[a for kv in sets for a in ("--set", kv)],
        ],
    )
    said = " ".join(res.output.split())
    assert res.exit_code == 0 and "method auto: source-only training, then the latent-bn" in said


def test_dann_runs_ship_target_statistics_and_source_only_stays_pure(trained, tmp_path):
    root, _, runs = trained
    assert "self_training" not in json.loads((runs[0] / "summary.json").read_text())  # pure source-only
    s = train(root / "prep", tmp_path / "d", config=CFG, method="dann", device="cpu", report=False)
    assert s["self_training"]["method"] == "adabn"  # train.self_training=auto
    model = load_model(tmp_path / "d" / "model.pt")
    assert model.adaptation[-1]["stage"] == "train.self_training"
    bn = next(m for m in model.dann.modules() if isinstance(m, torch.nn.BatchNorm2d))
    fresh = train(
        root / "prep",
        tmp_path / "n",
        config=apply_overrides(CFG, ["train.self_training=none"]),
        method="dann",
        device="cpu",
        report=False,
    )
    assert "self_training" not in fresh
    plain = next(
        m for m in load_model(tmp_path / "n" / "model.pt").dann.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert not torch.allclose(bn.running_mean, plain.running_mean)  # the shipped statistics are the target's
    with pytest.raises(RunError, match="train.method"):  # auto on resume means the saved auto run, not any run
        train(root / "prep", tmp_path / "d", config=CFG, method="auto", device="cpu", report=False, resume=True)


def test_evaluate_with_a_reference_reports_the_agreement_estimate(trained, tmp_path):
    from audio_dann.api import evaluate
    from audio_dann.data.scan import scan_input
    from audio_dann.infer.engine import iter_predictions

    root, tgt, runs = trained
    same = evaluate(
        load_model(runs[0] / "model.pt"),
        tgt,
        workers=0,
        reference=load_model(_twin(runs[0] / "model.pt", tmp_path / "same.pt")),
    )  # objects, not paths
    assert (
        same["estimated_accuracy"]["estimator"] == "combined" and same["estimated_accuracy"]["all"]["agreement"] == 1.0
    )
    other = evaluate(runs[0] / "model.pt", tgt, workers=0, reference=runs[1] / "model.pt")
    paths = [it.path for it in scan_input(tgt, "eval", labelled=True)]
    a, b = ([r.probs for r in iter_predictions(load_model(runs[s] / "model.pt"), paths, workers=0)] for s in (0, 1))
    expected = agreement(np.concatenate(list(a)), np.concatenate(list(b)))
    est = other["estimated_accuracy"]
    assert est["all"]["agreement"] == pytest.approx(expected)
    bound = est["prior_bound"]  # the bound of the model's own predictions
    assert 0.0 <= bound <= 1.0 and est["value"] == pytest.approx(min(expected, est["all"]["atc-ne"], bound))
    assert ("warning" in est) == (
        est["limited_by"] == "prior-bound" and min(expected, est["all"]["atc-ne"]) > bound + 0.1
    )
    free = evaluate(runs[0] / "model.pt", tgt, workers=0, reference=runs[1] / "model.pt", label_shift=True)
    assert free["estimated_accuracy"]["value"] == pytest.approx(min(expected, est["all"]["atc-ne"]))
    assert free["estimated_accuracy"]["label_shift"] and "warning" not in free["estimated_accuracy"]
    twin = _twin(runs[0] / "model.pt", tmp_path / "twin.pt")  # agrees everywhere
    both = evaluate(runs[0] / "model.pt", tgt, workers=0, reference=[twin, runs[1] / "model.pt"])
    assert both["estimated_accuracy"]["all"]["agreement"] == pytest.approx((1.0 + expected) / 2)  # the mean
    assert both["estimated_accuracy"]["reference"] == [str(twin), str(runs[1] / "model.pt")]
    alone = evaluate(runs[0] / "model.pt", tgt, workers=0)["estimated_accuracy"]  # the critic, as `estimate` has it
    from audio_dann.api import estimate

    e = estimate(runs[0] / "model.pt", tgt, workers=0, device="cpu")
    assert alone["all"]["critic"] == pytest.approx(e["all"]["critic"]) and alone["combines"] == e["combines"]
    assert alone["lower_bound"] == pytest.approx(e["lower_bound"]) and alone["lower_bound"] <= alone["value"]


def test_train_with_a_reference_estimates_by_agreement_and_reports_it(trained, tmp_path):
    root, _, runs = trained
    s = train(
        root / "prep",
        tmp_path / "r",
        config=CFG,
        method="source-only",
        seed=2,
        device="cpu",
        reference=runs[0] / "model.pt",
    )
    est = s["estimated_target_accuracy"]
    assert est["estimator"] == "combined" and "atc-ne" in est["all"] and "agreement" in est["all"]
    assert est["value"] == min(est["all"][k] for k in ("agreement", "atc-ne", "prior-bound"))
    assert est["reference"] == str(runs[0] / "model.pt")
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["estimated_target_accuracy"] == est
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Estimated target accuracy" in report and f"{est['value']:.3f}" in report
    assert f"set by {est['limited_by']}" in report and f"Agreement measured against `{runs[0] / 'model.pt'}`" in report
    shifted = train(
        root / "prep",
        tmp_path / "ls",
        config=CFG,
        method="source-only",
        seed=2,
        device="cpu",
        reference=[runs[0] / "model.pt", runs[1] / "model.pt"],
        label_shift=True,
        report=False,
    )
    e = shifted["estimated_target_accuracy"]
    assert e["label_shift"] and "prior-bound" not in e["combines"] and e["prior_bound"] is not None
    assert e["value"] == min(e["all"]["agreement"], e["all"]["atc-ne"]) and len(e["reference"]) == 2
    from audio_dann.errors import OptionError, RunError

    with pytest.raises(OptionError, match="expected the path of a model.pt"):  # an object, through the API
        train(
            root / "prep",
            tmp_path / "r3",
            config=CFG,
            method="source-only",
            device="cpu",
            reference=load_model(runs[0] / "model.pt"),
        )
    other = load_model(runs[0] / "model.pt")
    other.classes = ["x", "y"]
    other.save(tmp_path / "other.pt")
    with pytest.raises(RunError, match="classes"):  # a reference of another task is refused before training
        train(
            root / "prep",
            tmp_path / "r2",
            config=CFG,
            method="source-only",
            device="cpu",
            reference=tmp_path / "other.pt",
        )
    assert not (tmp_path / "r2" / "last.pt").exists()


def test_bad_references_are_refused_before_any_work(trained, tmp_path, monkeypatch):
    import audio_dann.adaptation.adapt as adapt_module
    from audio_dann.api import evaluate
    from audio_dann.errors import BundleError, OptionError, ScanError

    root, tgt, runs = trained
    other = load_model(runs[0] / "model.pt")
    other.classes = ["x", "y"]
    other.save(tmp_path / "other.pt")
    monkeypatch.setattr(adapt_module, "load_target_clips", lambda *a, **k: pytest.fail("decoded the target"))
    for bad, error, match in [
        (tmp_path / "other.pt", BundleError, "classes"),
        ([runs[1] / "model.pt", runs[1] / "model.pt"], OptionError, "given twice"),
        (runs[0] / "model.pt", OptionError, "the model itself"),
        (runs[1], BundleError, "a folder, not a model file; did you mean"),
    ]:
        with pytest.raises(error, match=match):
            adapt(runs[0] / "model.pt", tgt, tmp_path / "a", reference=bad, workers=0, device="cpu")
    assert not (tmp_path / "a" / "model.pt").exists()
    with pytest.raises(ScanError, match="classes"):
        evaluate(runs[0] / "model.pt", tgt, workers=0, reference=tmp_path / "other.pt")
    with pytest.raises(OptionError, match="the model itself"):
        evaluate(runs[0] / "model.pt", tgt, workers=0, reference=[runs[1] / "model.pt", runs[0] / "model.pt"])


def test_adapt_settings_out_of_range_are_refused():
    from audio_dann.adaptation.methods import AdaptConfig
    from audio_dann.errors import OptionError

    for bad in ({"warp": 1.0}, {"threshold": 1.5}, {"epochs": 0}, {"lr": 0.0}):
        with pytest.raises(OptionError, match=next(iter(bad))):
            AdaptConfig(**bad)


def test_the_shipped_test_accuracy_is_that_of_the_saved_model(tmp_path):
    from audio_dann.data.store import open_prepared

    src = class_folders(tmp_path / "src", per_class=6)
    tgt = class_folders(tmp_path / "tgt", per_class=5, shift=1.3)
    prepare(src, [tgt], tmp_path / "prep", target_eval=tgt, config=CFG)
    s = train(tmp_path / "prep", tmp_path / "run", config=CFG, method="dann", device="cpu", report=False)
    prep = open_prepared(tmp_path / "prep")
    rows = prep.rows("test")
    x = torch.from_numpy(np.asarray(prep.features[rows], dtype=np.float32))
    model = load_model(tmp_path / "run" / "model.pt")
    with torch.no_grad():
        pred = model.dann.eval()(x)[0].argmax(1).numpy()
    assert s["report_only"]["target_test_acc_shipped"] == pytest.approx(float((pred == prep.labels(rows)).mean()))


def test_evaluate_refuses_a_reference_of_other_features_before_reading(trained, tmp_path):
    from audio_dann.api import evaluate
    from audio_dann.errors import ScanError

    root, tgt, runs = trained
    other = load_model(runs[1] / "model.pt")
    other.config = apply_overrides(other.config, ["features.hop_seconds=0.25"])
    other.save(tmp_path / "other.pt")
    with pytest.raises(ScanError, match="other windows or features"):
        evaluate(
            runs[0] / "model.pt",
            tgt,
            workers=0,
            reference=tmp_path / "other.pt",
            progress=lambda n, total: pytest.fail("audio was read before the reference was checked"),
        )


def test_a_thresholded_self_training_stage_from_train_and_from_the_cli(trained, tmp_path):
    from typer.testing import CliRunner

    from audio_dann.cli import app

    root, tgt, runs = trained
    cfg = apply_overrides(
        CFG, ["train.self_training=shot-file", "train.self_training_threshold=0.5", "train.self_training_epochs=1"]
    )
    s = train(root / "prep", tmp_path / "r", config=cfg, method="dann", device="cpu", report=False)
    assert s["self_training"]["settings"]["threshold"] == 0.5 and s["self_training"]["method"] == "shot-file"
    _twin(runs[0] / "model.pt", tmp_path / "twin.pt")  # agrees with the model on every window
    res = CliRunner().invoke(
        app,
        [
            "adapt",
            str(runs[0] / "model.pt"),
            str(tgt),
            "--out",
            str(tmp_path / "a"),
            "--threshold",
            "0.9",
            "--epochs",
            "1",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--label-shift",
            "--reference",
            str(tmp_path / "twin.pt"),
            "--reference",
            str(runs[1] / "model.pt"),
        ],
    )
    assert res.exit_code == 0, res.output
    adapted = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert adapted["settings"]["threshold"] == 0.9 and adapted["method"] == "latent-bn"  # the default method
    e = adapted["estimated_accuracy"]  # --label-shift: the prior bound is reported but sets nothing
    assert e["label_shift"] and set(e["limited_by"].values()) <= {"atc-ne", "agreement"}
    assert e["prior_bound"]["before"] is not None and len(e["reference"]) == 2
    assert 0.5 <= adapted["all_estimates"]["before"]["agreement"] <= 1.0  # the mean of 1.0 (its twin) and another
    assert f"(set by {e['limited_by']['before']}, lower bound " in " ".join(res.output.split())
    again = CliRunner().invoke(
        app,
        [
            "adapt",
            str(tmp_path / "r" / "model.pt"),
            str(tgt),
            "--out",
            str(tmp_path / "c"),
            "--method",
            "shot-file",
            "--epochs",
            "1",
            "--workers",
            "0",
            "--device",
            "cpu",
        ],
    )
    assert again.exit_code == 0 and "had already been through shot-file" in " ".join(again.output.split())
    bad = CliRunner().invoke(
        app, ["adapt", str(runs[0] / "model.pt"), str(tgt), "--out", str(tmp_path / "b"), "--threshold", "2"]
    )
    assert bad.exit_code == 2 and "--threshold 2" in bad.output


def test_estimate_reads_no_label_skips_a_corrupt_file_and_takes_the_lowest_figure(trained, tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from audio_dann.api import estimate
    from audio_dann.cli import app
    from audio_dann.errors import BundleError

    root, tgt, runs = trained
    folder = tmp_path / "deployment"
    shutil.copytree(tgt, folder)
    (folder / "high" / "[red]broken.wav").write_bytes(b"RIFF not really a wav file")  # markup-like name
    twin = _twin(runs[0] / "model.pt", tmp_path / "twin.pt")  # agrees on every window
    copy = tmp_path / "copy.pt"
    load_model(runs[0] / "model.pt").save(copy)  # the very weights under another name: refused
    with pytest.raises(BundleError, match="exactly this model's weights"):
        estimate(runs[0] / "model.pt", folder, reference=copy, workers=0, device="cpu")
    e = estimate(runs[0] / "model.pt", folder, reference=twin, workers=0, device="cpu")
    assert e["all"]["agreement"] == 1.0 and e["estimator"] == "combined"
    assert e["value"] == min(e["all"]["atc-ne"], e["all"]["prior-bound"]) and e["limited_by"] != "agreement"
    assert e["files"] == 10 and e["files_skipped"] == 1 and e["skipped"][0]["file"].endswith("[red]broken.wav")
    assert sum(e["predicted_share"].values()) == pytest.approx(1.0) and e["reference"] == str(twin)
    alone = estimate(runs[0] / "model.pt", folder, workers=0, device="cpu")  # no reference: the critic and the bound
    assert alone["combines"] == ["critic", "prior-bound"] and alone["value"] == min(
        alone["all"]["critic"], alone["all"]["prior-bound"]
    )
    assert alone["lower_bound"] == min(alone["value"], alone["all"]["critic-bound"])
    assert e["lower_bound"] == min(e["value"], e["all"]["critic-bound"])  # with a reference: its value, bounded
    res = CliRunner().invoke(
        app,
        [
            "estimate",
            str(runs[0] / "model.pt"),
            str(folder),
            "--reference",
            str(twin),
            "--reference",
            str(runs[1] / "model.pt"),
            "--json",
            str(tmp_path / "e.json"),
            "--workers",
            "0",
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "e.json").read_text())
    assert f"{saved['value']:.3f}" in res.output and "[red]broken.wav:" in " ".join(res.output.split())
    assert saved["value"] <= saved["all"]["agreement"] and len(saved["reference"]) == 2
    for bad, words in [
        (["--json", str(folder / "high" / "e.wav")], "an audio file inside an input folder"),
        (["--json", str(twin)], "that is an input"),
        (["--workers", "-3"], "--workers must be >= 0"),
        ([str(folder)], "given twice"),
        (["--max-clips", "0"], "--max-clips 0"),
    ]:
        refused = CliRunner().invoke(
            app,
            [
                "estimate",
                str(runs[0] / "model.pt"),
                str(folder),
                "--reference",
                str(twin),
                "--device",
                "cpu",
                "--quiet",
                *bad,
            ],
        )
        assert refused.exit_code == 2 and words in " ".join(refused.output.split()), (bad, refused.output)
    assert not (folder / "high" / "e.wav").exists() and load_model(twin).classes  # the inputs are untouched
    bare = load_model(runs[0] / "model.pt")
    bare.calibration = None
    bare.save(tmp_path / "bare.pt")
    import audio_dann.adaptation.estimate as estimate_module

    monkeypatch.setattr(estimate_module, "load_target_clips", lambda *a, **k: pytest.fail("decoded the target"))
    with pytest.raises(BundleError, match="nothing to estimate from"):
        estimate(tmp_path / "bare.pt", folder, workers=0, device="cpu")


def test_target_windows_beyond_the_cap_are_a_uniform_choice_made_in_bounded_memory():
    from audio_dann.adaptation.target import _Held

    rng = np.random.default_rng(0)
    files = [rng.normal(size=(int(rng.integers(1, 9)), 2, 3)).astype(np.float32) for _ in range(300)]
    every = np.concatenate(files)
    held = _Held(10**6, seed=7)
    for f, clips in enumerate(files):
        held.add(clips, f)
    x, f = held.result()  # under the cap: every window, in decoding order
    assert np.array_equal(x, every) and np.array_equal(f, np.repeat(np.arange(300), [len(c) for c in files]))
    held, most = _Held(50, seed=7), 0
    for i, clips in enumerate(files):
        held.add(clips, i)
        most = max(most, held.held)
    x, f = held.result()
    from audio_dann.adaptation.target import choose_windows

    file_of = np.repeat(np.arange(300), [len(c) for c in files])
    assert np.array_equal(x, every[choose_windows(file_of, 50, 7)])  # the one rule, as if all were held
    assert len(np.unique(choose_windows(file_of, 50, 7))) == 50 and len(choose_windows(file_of, 5000, 7)) == len(every)
    assert most <= 2 * 50 + 8 and np.all(np.diff(f) >= 0)  # never more than twice the cap (plus one file)


def test_the_stage_can_pull_towards_the_estimated_class_shares(trained, tmp_path):
    root, _, _ = trained
    cfg = apply_overrides(CFG, ["train.self_training_epochs=1", "train.diversity_target=estimated"])
    s = train(root / "prep", tmp_path / "est", config=cfg, seed=0, device="cpu", report=False)
    shares = s["self_training"]["settings"]["class_shares"]
    assert len(shares) == len(s["classes"]) and sum(shares) == pytest.approx(1.0)
