"""The objectives of learning from unlabelled target clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_dann.adaptation.objectives import diversity, entropy


def test_entropy_is_log_c_for_uniform_and_zero_for_certain_predictions():
    assert float(entropy(torch.zeros(4, 5))) == pytest.approx(np.log(5), abs=1e-6)
    assert float(entropy(torch.tensor([[50.0, 0.0, 0.0]]))) == pytest.approx(0.0, abs=1e-6)


def test_entropy_term_makes_target_predictions_confident():
    from audio_dann.config import ModelConfig, TrainConfig
    from audio_dann.nn.dann import build_dann
    from audio_dann.training.loop import TrainData, fit

    g = torch.Generator().manual_seed(0)
    xs = torch.randn(64, 8, 12, generator=g)
    ys = torch.arange(64) % 3
    xs += ys[:, None, None].float()
    xt = torch.randn(64, 8, 12, generator=g) * 2 + 0.5
    data = TrainData(xs, ys, xt, torch.ones(64, dtype=torch.long))
    ents = {}
    for w in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_dann(ModelConfig(channels=(4, 8), embedding_dim=16, domain_hidden=16), 3, 2, n_mels=8)
        fit(
            model,
            data,
            TrainConfig(method="dann", steps=40, batch_size=16, eval_every=40, domain_weight=0.0, entropy_weight=w),
        )
        with torch.no_grad():
            ents[w] = float(entropy(model.eval()(xt)[0]))
    assert ents[1.0] < 0.5 * ents[0.0], ents


def test_diversity_is_lowest_when_the_batch_spreads_over_the_classes():
    spread = torch.eye(4) * 20  # four confident predictions, one per class
    piled = torch.tensor([[20.0, 0, 0, 0]] * 4)  # four confident predictions of one class
    assert float(diversity(spread)) == pytest.approx(-np.log(4), abs=1e-4)
    assert float(diversity(piled)) == pytest.approx(0.0, abs=1e-4)


def test_diversity_towards_given_shares_is_lowest_when_predictions_are_spread_as_the_classes_are():
    logits = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    equal = torch.tensor([0.5, 0.5])
    # equal shares: SHOT's term plus the constant log C (same gradients)
    assert float(diversity(logits, equal)) == pytest.approx(float(diversity(logits)) + np.log(2), abs=1e-5)
    skewed = torch.tensor([0.8, 0.2])  # e.g. a screening population: one class in five
    as_skewed = torch.log(skewed).repeat(10, 1)  # every prediction 0.8 / 0.2
    as_equal = torch.zeros(10, 2)
    assert float(diversity(as_skewed, skewed)) == pytest.approx(0.0, abs=1e-5)
    assert float(diversity(as_equal, skewed)) > 0.1  # pulled away from equal shares
    assert float(diversity(as_equal)) < float(diversity(as_skewed))  # SHOT's own term prefers equal shares


def test_the_stage_pulls_towards_the_estimated_shares_when_asked(tmp_path):
    from audio_dann.adaptation.methods import AdaptConfig

    with pytest.raises(Exception, match="class_shares"):
        AdaptConfig(class_shares=(-0.1, 1.1))
    from audio_dann.config import Config, apply_overrides

    cfg = apply_overrides(Config(), ["train.diversity_target=estimated"])
    assert cfg.train.diversity_target == "estimated"
    with pytest.raises(Exception, match="diversity_target"):
        apply_overrides(Config(), ["train.diversity_target=sideways"])
