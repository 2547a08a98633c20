import pytest
import torch

from audio_dann.config import ModelConfig
from audio_dann.nn.augment import SpecAugment
from audio_dann.nn.backbones import BACKBONES, build_backbone
from audio_dann.nn.dann import build_dann
from audio_dann.nn.norm import InputNorm


def test_default_cnn_size_and_shapes():
    model = build_dann(ModelConfig(), n_classes=10, n_domains=4, n_mels=40)
    n_extractor = sum(p.numel() for p in model.extractor.parameters())
    assert 100_000 <= n_extractor <= 300_000
    logits, z = model(torch.randn(5, 40, 101))
    assert logits.shape == (5, 10) and model.domain_head(z).shape == (5, 4) and z.shape == (5, 128)
    two = build_dann(ModelConfig(), 10, 2, n_mels=40)
    assert two.domain_head(two(torch.randn(2, 40, 101))[1]).shape == (2, 1)


def test_source_only_models_have_no_domain_head():
    model = build_dann(ModelConfig(), n_classes=3, n_domains=0, n_mels=40)
    assert model.domain_head is None
    assert not any(k.startswith("domain_head.") for k in model.state_dict())
    logits, _ = model(torch.randn(2, 40, 101))
    assert logits.shape == (2, 3)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_registered_backbone_maps_its_input_to_its_embedding(name):
    x = torch.randn(3, 2) if name == "mlp" else torch.randn(3, 16, 40)
    net = build_backbone(name, channels=(4, 8), embedding_dim=12, dropout=0.0, in_features=2).eval()
    assert net(x).shape == (3, 12) and net.embedding_dim == 12


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="unknown backbone 'resnet9000'.*cnn"):
        build_backbone("resnet9000")


def test_clip_mean_norm_cancels_gain_and_fixed_eq():
    norm = InputNorm(8, "clip_mean").eval()
    x = torch.randn(2, 8, 30)
    eq = torch.linspace(-3, 3, 8)[None, :, None]  # a fixed microphone response, in the log domain
    torch.testing.assert_close(norm(x), norm(x + 2.5 + eq))
    glob = InputNorm(8, "global").eval()
    assert not torch.allclose(glob(x), glob(x + 2.5))


def test_spec_augment_only_in_training_and_per_example():
    aug = SpecAugment(freq_masks=2, freq_mask_width=5, time_masks=2, time_mask_width=8)
    x = torch.randn(4, 16, 60) + 3
    aug.train()
    torch.manual_seed(0)
    y = aug(x)
    zeros = (y == 0).float().mean(dim=(1, 2))
    assert (zeros > 0).all() and len(set(zeros.tolist())) > 1
    aug.eval()
    assert torch.equal(aug(x), x)
    assert list(aug.state_dict()) == []  # no state: bundles with and without it hold the same weights


def test_inference_copy_computes_the_same_function_and_leaves_the_model_alone():
    from audio_dann.nn.fold import PairMax2d, for_inference

    torch.manual_seed(0)
    model = build_dann(ModelConfig(), n_classes=5, n_domains=2, n_mels=40)
    for m in model.modules():  # non-trivial running statistics, so folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2), m.bias.data.uniform_(-1, 1)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = for_inference(model)
    kinds = [type(m).__name__ for m in fast.modules()]
    assert "BatchNorm2d" not in kinds and "MaxPool2d" not in kinds and "PairMax2d" in kinds
    x = torch.randn(6, 40, 77)  # odd frame count: pooling drops the last column like MaxPool2d
    with torch.no_grad():
        torch.testing.assert_close(fast(x)[0], model(x)[0], rtol=1e-4, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "BatchNorm2d" in [type(m).__name__ for m in model.modules()]
    y = torch.randn(3, 8, 13, 25).contiguous(memory_format=torch.channels_last)
    assert torch.equal(PairMax2d()(y), torch.nn.MaxPool2d(2)(y))


def test_cdan_head_conditions_on_detached_class_probabilities_and_the_loss_reverses_the_gradient():
    from audio_dann.nn.heads import DomainHead
    from audio_dann.training.adversarial import DomainAdversarialLoss

    model = build_dann(ModelConfig(domain_condition="cdan", domain_dropout=0.0), n_classes=10, n_domains=4, n_mels=40)
    assert model.domain_head.net[0].in_features == 128 * 10 and not model.domain_head.randomised
    x = torch.randn(5, 40, 101)
    logits, z = model(x)
    loss = DomainAdversarialLoss(model.domain_head)(z, torch.tensor([0, 1, 2, 3, 1]), 0.5, logits)
    assert 0 <= DomainAdversarialLoss(model.domain_head).correct <= 5
    loss.backward()
    assert model.label_head.fc.weight.grad is None  # the probabilities are detached: no domain gradient there
    head = DomainHead(6, 2, hidden=8, dropout=0.0, condition_classes=3)
    zz = torch.randn(4, 6, requires_grad=True)
    p = torch.softmax(torch.randn(4, 3), 1)
    out = head(zz, p)
    assert not torch.allclose(out, head(zz, p.flip(0)))  # the class probabilities change the output
    logit_p = torch.log(p)  # the loss takes logits; their softmax is p
    domains = torch.tensor([0, 1, 0, 1])
    g_rev = torch.autograd.grad(DomainAdversarialLoss(head)(zz, domains, 1.0, logit_p), zz)[0]
    from audio_dann.training.adversarial import domain_loss

    g_fwd = torch.autograd.grad(domain_loss(head(zz, torch.softmax(logit_p, 1)), domains), zz)[0]
    torch.testing.assert_close(g_rev, -g_fwd)
    with pytest.raises(ValueError, match="class probabilities"):
        head(zz)


def test_cdan_head_uses_the_randomised_map_for_many_classes():
    from audio_dann.nn.heads import DomainHead

    head = DomainHead(128, 2, hidden=16, condition_classes=40)  # 5120 > 4096
    assert head.randomised and head.net[0].in_features == DomainHead.MULTILINEAR_MAX
    assert head(torch.randn(3, 128), torch.softmax(torch.randn(3, 40), 1)).shape == (3, 1)
    again = DomainHead(128, 2, hidden=16, condition_classes=40)
    torch.testing.assert_close(head.r_z, again.r_z)  # fixed, so a bundle rebuilt from its config matches
