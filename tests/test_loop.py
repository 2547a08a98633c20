import copy

import numpy as np
import pytest
import torch
from conftest import make_moons

from audio_dann.config import ModelConfig, TrainConfig
from audio_dann.nn.dann import build_dann
from audio_dann.nn.outputs import predict_logits
from audio_dann.runtime import seed_everything
from audio_dann.training.batches import batch_indices
from audio_dann.training.loop import TrainData, TrainState, fit

MOONS_MODEL = ModelConfig(backbone="mlp", embedding_dim=15, domain_hidden=15, domain_layers=0, domain_dropout=0.0)


def _moons_run(method: str, seed: int) -> float:
    xs, ys = make_moons(150, 0.05, seed)
    xt, yt = make_moons(150, 0.05, seed + 100, angle_deg=35)
    seed_everything(seed)
    model = build_dann(MOONS_MODEL, 2, 2, in_features=2)
    cfg = TrainConfig(
        method=method,
        steps=3000,
        batch_size=32,
        lr=0.3,
        lr_alpha=0.0,
        weight_decay=0.0,
        lambda_max=2.0,
        entropy_weight=0.0,
        eval_every=10**6,
        seed=seed,
    )
    data = TrainData(torch.tensor(xs), torch.tensor(ys), torch.tensor(xt), torch.ones(len(xt), dtype=torch.long))
    fit(model, data, cfg)
    return float((predict_logits(model, torch.tensor(xt)).argmax(1).numpy() == yt).mean())


def test_two_moons_dann_adapts_where_source_only_fails():
    """Section 5.1 of arXiv 1505.07818: rotated moons, one hidden layer of 15 units."""
    seeds = range(4)
    dann = np.array([_moons_run("dann", s) for s in seeds])
    source_only = np.array([_moons_run("source-only", s) for s in seeds])
    # 0.92 on seeds 0-3 (0.94 on 0-7) with the derive_seed batch streams; 0.95+ with the earlier streams
    assert dann.mean() >= 0.9, (dann, source_only)
    assert source_only.mean() <= 0.85, (dann, source_only)
    assert (dann - source_only).min() >= 0.1, (dann, source_only)


def _tiny_data(seed=0, n=48, mels=8, frames=12, k=3):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, mels, frames, generator=g)
    ys = torch.arange(n) % k
    xs += ys[:, None, None].float()
    xt = torch.randn(n, mels, frames, generator=g) * 1.5 + 0.7
    return TrainData(xs, ys, xt, torch.ones(n, dtype=torch.long))


TINY_MODEL = ModelConfig(channels=(4, 8), embedding_dim=16, domain_hidden=16, dropout=0.1)


def _tiny_model(seed=0, n_domains=2):
    torch.manual_seed(seed)
    return build_dann(TINY_MODEL, 3, n_domains, n_mels=8)


def test_adversarial_gradient_reaches_the_extractor():
    data = _tiny_data()
    ref = _tiny_model()
    after = {}
    for weight in (0.0, 1.0):
        model = copy.deepcopy(ref)
        cfg = TrainConfig(method="dann", steps=1, batch_size=16, domain_weight=weight, entropy_weight=0.0, eval_every=1)
        fit(model, data, cfg)
        after[weight] = {k: v.clone() for k, v in model.extractor.state_dict().items()}
    # At step 0 lambda_p = 0: the reversed gradient is zero, so the extractor is identical.
    conv = "features.0.weight"
    assert torch.equal(after[0.0][conv], after[1.0][conv])
    # From a later step (lambda > 0) the domain term changes the extractor's update.
    results = {}
    for weight in (0.0, 1.0):
        model = copy.deepcopy(ref)
        cfg = TrainConfig(
            method="dann",
            steps=2,
            batch_size=16,
            domain_weight=weight,
            entropy_weight=0.0,
            eval_every=1,
            optimizer="sgd",
            momentum=0.0,
        )
        fit(model, data, cfg, state=TrainState(step=1))
        results[weight] = model
    delta = (results[1.0].extractor.features[0].weight - results[0.0].extractor.features[0].weight).abs().max()
    assert delta > 1e-6
    # ... and the domain head itself learned in the adversarial run only.
    assert not torch.equal(results[1.0].domain_head.net[0].weight, ref.domain_head.net[0].weight)
    assert torch.equal(results[0.0].domain_head.net[0].weight, ref.domain_head.net[0].weight)


def test_domain_gradient_is_reversed_in_the_extractor():
    """d(domain loss)/d(embedding) through the adversarial loss equals minus lambda times the plain gradient,
    while the head itself gets the plain gradient (it learns to tell the domains apart)."""
    from audio_dann.training.adversarial import DomainAdversarialLoss, domain_loss

    model = _tiny_model()
    model.eval()
    x = torch.randn(6, 8, 12)
    domains = torch.tensor([0, 0, 0, 1, 1, 1])
    z = model.embed(x).detach().requires_grad_(True)
    DomainAdversarialLoss(model.domain_head)(z, domains, 0.5).backward()
    g_rev, head_rev = z.grad.clone(), model.domain_head.net[0].weight.grad.clone()
    z.grad, model.domain_head.net[0].weight.grad = None, None
    domain_loss(model.domain_head(z), domains).backward()
    torch.testing.assert_close(g_rev, -0.5 * z.grad)
    torch.testing.assert_close(head_rev, model.domain_head.net[0].weight.grad)


def test_resume_equals_uninterrupted():
    data = _tiny_data()
    cfg = TrainConfig(method="dann", steps=12, batch_size=16, eval_every=4, seed=3)
    full = _tiny_model()
    fit(full, data, cfg)

    saved = {}

    def on_eval(model, optimizer, state, metrics):
        if state.step == 4:
            saved["model"] = copy.deepcopy(model.state_dict())
            saved["opt"] = copy.deepcopy(optimizer.state_dict())
            saved["state"] = TrainState(state.step, list(state.history), state.best, state.rng.clone())

    class Killed(Exception):
        pass

    def kill(step, total, _):
        if step == 6:
            raise Killed

    first = _tiny_model()
    with pytest.raises(Killed):
        fit(first, data, cfg, on_eval=on_eval, progress_cb=kill)
    torch.manual_seed(12345)  # the global RNG is disturbed in between; resume must not depend on it
    resumed = _tiny_model(seed=99)
    resumed.load_state_dict(saved["model"])
    fit(resumed, data, cfg, state=saved["state"], optimizer_state=saved["opt"])
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_fit_refuses_an_unresolved_auto_method():
    with pytest.raises(ValueError, match="auto"):
        fit(_tiny_model(), _tiny_data(), TrainConfig(method="auto", steps=1, batch_size=8))


def test_k_way_domain_head_and_bf16_autocast_on_cpu():
    data = _tiny_data()
    data.target_domain = torch.tensor([1, 2] * 24)
    model = _tiny_model(n_domains=3)
    assert model.domain_head.net[-1].out_features == 3
    state = fit(model, data, TrainConfig(method="dann", steps=3, batch_size=8, eval_every=3, amp="bf16"))
    assert state.step == 3 and np.isfinite(state.history[-1]["domain_loss"])
    assert "domain_acc" in state.history[-1]  # its values are checked in test_house


def test_batches_are_a_pure_function_of_step_and_shard_exactly():
    n = 10
    one = np.concatenate([batch_indices(n, 4, s, seed=1) for s in range(5)])
    two = np.concatenate([np.concatenate([batch_indices(n, 4, s, 1, r, 2) for r in range(2)]) for s in range(5)])
    assert np.array_equal(one, two)
    # each epoch is a permutation
    assert sorted(one[:10].tolist()) == list(range(10))
    with pytest.raises(ValueError, match="divisible"):
        batch_indices(n, 5, 0, 1, 0, 2)


def test_balanced_class_weights_count_a_rare_class_as_much_as_a_common_one():
    from audio_dann.training.loop import class_weights

    y = torch.tensor([0] * 90 + [1] * 10)
    assert class_weights(y, "none") is None
    w = class_weights(y, "balanced")
    assert w[1] / w[0] == pytest.approx(9.0) and float(w.mean()) == pytest.approx(1.0)
    assert float((w[y]).sum()) == pytest.approx(float(w[y][y == 0].sum()) * 2)  # each class's total weight equal
