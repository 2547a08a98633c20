import copy

import numpy as np
import pytest
import torch
from conftest import make_moons

from audio_dann.config import ModelConfig, TrainConfig
from audio_dann.nn.dann import build_dann
from audio_dann.report.ranking import spearman
from audio_dann.runtime import seed_everything
from audio_dann.training.criteria import dev_risk, proxy_a_distance, snd
from audio_dann.training.loop import TrainData, fit
from audio_dann.training.reverse import reverse_validation_risk


def test_proxy_a_distance_identical_near_0_disjoint_near_2():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    assert proxy_a_distance(a, b) < 0.25
    assert proxy_a_distance(a, b + 10.0) > 1.9


def test_snd_prefers_dense_target_neighbourhoods():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(5) * 8
    clustered = centres[torch.arange(300) % 5] + 0.1 * torch.randn(300, 5, generator=g)  # few tight clusters
    scattered = 4 * torch.randn(300, 5, generator=g)  # no structure
    assert snd(clustered) > snd(scattered)


def test_dev_weights_the_validation_loss_towards_the_target():
    """Two models with the same mean source-val loss; one fails exactly where the target lies."""
    g = torch.Generator().manual_seed(0)
    src_train = torch.randn(800, 2, generator=g)
    target = torch.randn(800, 2, generator=g) + torch.tensor([1.5, 0.0])
    val = torch.randn(400, 2, generator=g)
    near_target = val[:, 0] > 0
    good = torch.where(near_target, 0.2, 1.0)  # low loss where the target is
    bad = torch.where(near_target, 1.0, 0.2)  # high loss where the target is
    assert abs(float(good.mean() - bad.mean())) < 0.1
    assert dev_risk(src_train, target, val, good) < dev_risk(src_train, target, val, bad)


def test_reverse_validation_separates_right_from_flipped_pseudo_labels():
    xs, ys = make_moons(150, 0.05, 0)
    xt, _ = make_moons(150, 0.05, 1, angle_deg=10)
    xv, yv = make_moons(50, 0.05, 2)
    seed_everything(0)
    model = build_dann(
        ModelConfig(backbone="mlp", embedding_dim=15, domain_hidden=15, domain_layers=0, domain_dropout=0.0),
        2,
        2,
        in_features=2,
    )
    cfg = TrainConfig(
        method="dann",
        steps=1500,
        batch_size=32,
        lr=0.3,
        lr_alpha=0.0,
        weight_decay=0.0,
        entropy_weight=0.0,
        lambda_max=0.5,
        eval_every=10**6,
    )
    data = TrainData(torch.tensor(xs), torch.tensor(ys), torch.tensor(xt), torch.ones(300, dtype=torch.long))
    fit(model, data, cfg)
    flipped = copy.deepcopy(model)
    with torch.no_grad():
        flipped.label_head.fc.weight.neg_()
        flipped.label_head.fc.bias.neg_()
    args = (torch.tensor(xs), torch.tensor(ys), torch.tensor(xv), yv, torch.tensor(xt), cfg, 100)
    good, bad = reverse_validation_risk(model, *args), reverse_validation_risk(flipped, *args)
    assert good < 0.2 < 0.8 < bad


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
