"""The domain-adversarial loss: the domain head's loss and accuracy, one logit or K."""

from __future__ import annotations

import pytest
import torch

from audio_dann.training.adversarial import domain_correct, domain_loss


def test_k_way_domain_loss_and_accuracy():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    domains = torch.tensor([0, 1, 2, 2])
    assert domain_correct(logits, domains) == 3
    assert float(domain_loss(logits, domains)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, domains))
    )
    one = torch.tensor([[3.0], [-3.0], [2.0]])  # one logit: source (0) vs any target (>0)
    assert domain_correct(one, torch.tensor([1, 0, 2])) == 3
    assert float(domain_loss(one, torch.tensor([1, 0, 2]))) == pytest.approx(
        float(torch.nn.functional.binary_cross_entropy_with_logits(one.squeeze(1), torch.tensor([1.0, 0.0, 1.0])))
    )


def test_k_way_domain_head_learns_three_domains_when_nothing_is_reversed():
    from audio_dann.config import ModelConfig, TrainConfig
    from audio_dann.nn.dann import build_dann
    from audio_dann.training.loop import TrainData, fit

    g = torch.Generator().manual_seed(1)
    xs = torch.randn(60, 8, 12, generator=g)
    dom = torch.tensor([1, 2] * 30)
    xt = torch.randn(60, 8, 12, generator=g) + torch.where(dom == 1, 3.0, -3.0)[:, None, None]
    torch.manual_seed(0)
    model = build_dann(
        ModelConfig(channels=(4, 8), embedding_dim=16, domain_hidden=16, domain_dropout=0.0, input_norm="global"),
        3,
        3,
        n_mels=8,
    )
    state = fit(
        model,
        TrainData(xs, torch.arange(60) % 3, xt, dom),
        TrainConfig(method="dann", steps=80, batch_size=16, eval_every=20, lr=0.1, lambda_max=0.0, entropy_weight=0.0),
    )
    accs = [h["domain_acc"] for h in state.history]  # running accuracy over each 20 steps; chance is 1/3 to 1/2
    assert accs[-1] > 0.75 and accs[-1] > accs[0] + 0.15, accs
