"""The critic behind the label-free estimate and its lower bound (audio_dann.adaptation.critic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audio_dann.adaptation.critic import (
    SAMPLE_CLIPS,
    critic_estimate,
    disagreement_loss,
    discrepancy_estimate,
    keep_source_sample,
)
from audio_dann.adaptation.estimators import agreement_floor, combined_estimate, label_free_estimate


def _head(dim: int = 32) -> nn.Linear:
    """Two classes told apart by the sign of the first coordinate."""
    head = nn.Linear(dim, 2)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, 0], head.weight[1, 0] = -1.0, 1.0
        head.bias.zero_()
    return head


def _clusters(rng, n, centre_gap, spread=0.1, dim=32):
    """Embeddings: class 0 around -gap, class 1 around +gap on the first coordinate, the others noise
    of standard deviation ``spread``; and the labels."""
    y = rng.integers(0, 2, n)
    z = rng.normal(0, spread, (n, dim)).astype(np.float32)
    z[:, 0] = (2 * y - 1) * centre_gap + rng.normal(0, 0.3, n)
    return z, y


def test_disagreement_loss_is_small_where_the_critic_disagrees():
    pred = torch.tensor([0, 0])
    agrees, disagrees = torch.tensor([[3.0, -3.0], [3.0, -3.0]]), torch.tensor([[-3.0, 3.0], [-3.0, 3.0]])
    assert disagreement_loss(disagrees, pred) < 0.01 < 5.0 < disagreement_loss(agrees, pred)


def test_the_critic_finds_a_target_that_strays_where_the_source_never_went():
    rng = np.random.default_rng(0)
    zs, ys = _clusters(rng, 400, 2.0)
    same, _ = _clusters(rng, 400, 2.0)  # the target as the source: nothing to find
    stray, _ = _clusters(rng, 400, 0.2, spread=1.0)  # crowding the boundary, spread where the source is flat
    calm = discrepancy_estimate(_head(), zs, ys, same, penalty=0.1)
    shifted = discrepancy_estimate(_head(), zs, ys, stray, penalty=0.1)
    assert calm["source_accuracy"] > 0.99 and abs(calm["discrepancy"]) < 0.05 and calm["estimate"] > 0.95
    assert shifted["discrepancy"] > 0.15 and shifted["estimate"] < calm["estimate"] - 0.15
    assert 0.0 <= shifted["critic_agreement"] <= 1.0 and shifted["penalty"] == 0.1


def test_files_keep_their_clips_in_one_half():
    rng = np.random.default_rng(1)
    zs, ys = _clusters(rng, 200, 2.0)
    zt, _ = _clusters(rng, 200, 2.0)
    one_file = discrepancy_estimate(_head(), zs, ys, zt, penalty=0.1, files_target=np.zeros(200, dtype=int))
    assert 0.0 <= one_file["estimate"] <= 1.0  # one target file: fitted and measured on all, no error


def test_keep_source_sample_caps_and_numbers_files():
    x = torch.randn(SAMPLE_CLIPS + 40, 3, 5)
    y = np.arange(len(x)) % 3
    files = np.repeat([f"f{i}" for i in range(len(x) // 4)], 4)
    s = keep_source_sample(x, y, files)
    assert s["x"].dtype == torch.float16 and len(s["x"]) == SAMPLE_CLIPS == len(s["y"]) == len(s["files"])
    assert s["files"].max() < len(x) // 4 and keep_source_sample(x[:0], y[:0]) is None
    again = keep_source_sample(x, y, files)
    assert torch.equal(again["x"], s["x"])  # seeded: train's stage and bundle hold the same clips


class _Net(nn.Module):
    """A DANN-shaped toy: a batch norm then the label head, embeddings = normalised inputs."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(32, affine=False)
        self.label_head = nn.Module()
        self.label_head.fc = _head()

    def forward(self, x):
        z = self.bn(x.float().flatten(1))
        return self.label_head.fc(z), z


def test_critic_estimate_judges_the_source_with_its_own_statistics():
    rng = np.random.default_rng(2)
    zs, ys = _clusters(rng, 300, 1.0, spread=1.0)
    net = _Net()
    net.eval()
    net.bn.running_mean.fill_(5.0)  # statistics of another domain: the source pushed onto class 0
    sample = keep_source_sample(torch.from_numpy(zs), ys)
    est = critic_estimate(net, sample, torch.from_numpy(zs))  # the target is the source, normalised as stored
    assert 0.0 <= est["lower_bound"] <= est["value"] <= 1.0
    assert est["critics"]["point"]["source_accuracy"] > 0.95  # own statistics: the source is read as it should be
    assert net.bn.running_mean[0] == 5.0  # the network is not changed
    assert critic_estimate(net, None, torch.from_numpy(zs)) == {}
    with torch.no_grad():  # a caller's no_grad does not stop the critic from training
        assert critic_estimate(net, sample, torch.from_numpy(zs))["value"] == est["value"]  # and it is deterministic
    assert keep_source_sample(torch.from_numpy(zs[:1]), ys[:1]) is None  # batch-norm statistics need two clips
    assert "caution" not in est  # 300 source and 300 target files
    few = critic_estimate(net, keep_source_sample(torch.from_numpy(zs[:20]), ys[:20]), torch.from_numpy(zs))
    assert "20 labelled source files" in few["caution"]


def test_the_estimate_takes_the_critic_without_a_reference_and_bounds_with_it():
    probs = np.tile([[0.9, 0.1], [0.2, 0.8]], (50, 1))
    cal = {"atc_ne_threshold": -1.0, "atc_mc_threshold": 0.5, "source_accuracy": 0.9, "source_mean_confidence": 0.9}
    cal["class_prior"] = [0.5, 0.5]
    critic = {"value": 0.7, "lower_bound": 0.55}
    e = label_free_estimate(probs, cal, critic=critic)
    assert e["value"] == 0.7 and e["limited_by"] == "critic" and e["lower_bound"] == 0.55
    assert e["combines"] == ["critic", "prior-bound"] and e["lower_bound_by"] == "critic"
    with_ref = label_free_estimate(probs, cal, [probs], critic=critic)  # a reference: agreement, ATC-NE, bound
    assert with_ref["limited_by"] != "critic" and with_ref["lower_bound"] == min(with_ref["value"], 0.55)
    old = combined_estimate({"atc-ne": 0.8, "prior-bound": 0.9})  # a bundle without source clips
    assert old["value"] == old["lower_bound"] == 0.8 and old["combines"] == ["atc-ne", "prior-bound"]
    collapsed = np.tile([[0.9, 0.1]], (100, 1))  # every clip on one class: the prior bound caps it at 0.5
    low = label_free_estimate(collapsed, cal, critic={"value": 0.95, "lower_bound": 0.6})
    assert low["value"] == pytest.approx(0.5) and low["limited_by"] == "prior-bound"
    assert low["lower_bound"] == pytest.approx(0.5) and low["lower_bound_by"] == "prior-bound"


def test_the_scale_free_critic_reads_the_same_in_any_units_of_the_embeddings():
    """Embeddings scaled by 10 and the head scaled back by 10 make the same model: with ``scale_free`` the
    critic's figures are the same, without it they are not (the penalty is then in the embeddings' units)."""
    rng = np.random.default_rng(2)
    zs, ys = _clusters(rng, 300, 2.0)
    zt, _ = _clusters(rng, 300, 0.4, spread=1.0)
    small = _head()
    with torch.no_grad():
        small.weight.div_(10.0)
    figures = {
        free: [
            discrepancy_estimate(head, z, ys, t, penalty=0.1, scale_free=free)["estimate"]
            for head, z, t in ((_head(), zs, zt), (small, 10 * zs, 10 * zt))
        ]
        for free in (True, False)
    }
    assert abs(figures[True][0] - figures[True][1]) < 0.02
    assert abs(figures[False][0] - figures[False][1]) > 0.05


def test_a_self_trained_models_estimate_is_raised_to_its_agreement_floor_and_no_further():
    probs = np.tile([[0.9, 0.1], [0.2, 0.8]], (50, 1))
    cal = {"atc_ne_threshold": -1.0, "atc_mc_threshold": 0.5, "source_accuracy": 0.9, "source_mean_confidence": 0.9}
    cal["class_prior"] = [0.5, 0.5]
    critic = {"value": 0.45, "lower_bound": 0.3}
    raised = label_free_estimate(probs, cal, critic=critic, floor=0.93)
    assert raised["value"] == pytest.approx(0.93) and raised["raised_by"].startswith("agreement")
    assert raised["limited_by"] == "agreement-adabn" and raised["combines"] == ["agreement-adabn", "prior-bound"]
    assert raised["lower_bound"] == pytest.approx(0.3) and raised["all"]["agreement-adabn"] == pytest.approx(0.93)
    below = label_free_estimate(probs, cal, critic=critic, floor=0.4)  # under the critic: nothing changes
    assert below["value"] == pytest.approx(0.45) and "raised_by" not in below
    skewed = np.tile([[0.9, 0.1]] * 4 + [[0.2, 0.8]], (20, 1))  # shares 0.8 / 0.2 against 0.5 / 0.5
    shifted = label_free_estimate(skewed, cal, critic=critic, floor=0.99)  # a sign of label shift: no floor
    assert shifted["value"] == pytest.approx(0.45) and "raised_by" not in shifted
    near = np.tile([[0.9, 0.1]] * 11 + [[0.2, 0.8]] * 9, (5, 1))  # shares 0.55 / 0.45: the prior bound caps it
    capped = label_free_estimate(near, cal, critic=critic, floor=0.99)
    assert capped["value"] == pytest.approx(0.95) and capped["limited_by"] == "prior-bound"
    told = label_free_estimate(probs, cal, critic=critic, floor=0.93, label_shift=True)  # --label-shift: no floor
    assert told["value"] == pytest.approx(0.45) and "raised_by" not in told
    with_ref = label_free_estimate(probs, cal, [probs], critic=critic, floor=0.99)  # a reference: no floor
    assert "raised_by" not in with_ref and with_ref["limited_by"] != "critic"
    assert agreement_floor(probs, probs[::-1]) == pytest.approx(0.0)  # every clip of the pair swapped


def test_the_floor_holds_only_for_self_training_from_a_network_that_never_saw_the_target():
    from types import SimpleNamespace

    from audio_dann.adaptation.floor import floor_holds
    from audio_dann.config import Config, apply_overrides

    model = lambda method, adaptation=(): SimpleNamespace(  # noqa: E731
        config=apply_overrides(Config(), [f"train.method={method}"]), adaptation=list(adaptation)
    )
    assert floor_holds(model("source-only"), "latent-bn") and floor_holds(model("auto"), "shot-file")
    assert not floor_holds(model("source-only"), "adabn")  # AdaBN agrees with its own copy
    assert not floor_holds(model("dann"), "shot-file")  # an adapted network: the stage changes few predictions
    assert not floor_holds(model("auto", [{"method": "latent-bn", "kept": "adapted"}]), "latent-bn")  # adapted before
    assert floor_holds(model("auto", [{"method": "latent-bn", "kept": "original"}]), "latent-bn")  # undone: as new
