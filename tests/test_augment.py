"""The training augmentations: identity in eval mode, what each one does to a clip, repeatable."""

import torch

from audio_dann.config import ModelConfig
from audio_dann.nn.augment import FreqMixStyle, SpecWarp, build_augment, warp_grid
from audio_dann.nn.dann import build_dann


def _sample(x: torch.Tensor, f: float, t: float) -> torch.Tensor:
    grid = warp_grid(torch.full((len(x),), f), torch.full((len(x),), t), x.shape[1], x.shape[2])
    return torch.nn.functional.grid_sample(x.unsqueeze(1), grid, align_corners=True, padding_mode="border").squeeze(1)


def test_warp_of_one_is_the_identity_and_a_factor_moves_bands_up():
    x = torch.randn(3, 16, 40, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_sample(x, 1.0, 1.0), x, atol=1e-5, rtol=1e-5)  # float rounding of the grid
    ramp = torch.arange(16.0)[None, :, None].expand(1, 16, 40).contiguous()  # band f holds the value f
    up = _sample(ramp, 2.0, 1.0)  # output band f reads input band f / 2: a formant at 4 moves to 8
    torch.testing.assert_close(up[0, :, 0], torch.arange(16.0) / 2, atol=1e-4, rtol=0)
    down = _sample(ramp, 0.5, 1.0)  # reads band 2f, clamped at the top band
    torch.testing.assert_close(down[0, :, 0], torch.clamp(torch.arange(16.0) * 2, max=15), atol=1e-4, rtol=0)


def test_time_warp_keeps_the_centre_frame_and_stretches_around_it():
    ramp = torch.arange(41.0)[None, None, :].expand(1, 8, 41).contiguous()  # frame t holds t; centre 20
    slow = _sample(ramp, 1.0, 2.0)
    assert abs(float(slow[0, 0, 20]) - 20) < 1e-4
    torch.testing.assert_close(slow[0, 0, 20:31], 20 + torch.arange(11.0) / 2, atol=1e-4, rtol=0)


def test_spec_warp_draws_per_clip_factors_in_training_only():
    aug = SpecWarp(freq=0.2, time=0.2)
    x = torch.randn(4, 16, 50)
    aug.eval()
    assert torch.equal(aug(x), x)
    aug.train()
    torch.manual_seed(0)
    y = aug(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    diffs = [float((y[i] - x[i]).abs().mean()) for i in range(4)]
    assert len(set(round(d, 6) for d in diffs)) == 4  # each clip its own factors
    torch.manual_seed(0)
    assert torch.equal(aug(x), y)  # the torch stream decides: seeded runs repeat


def test_freq_mixstyle_mixes_band_statistics_between_clips():
    aug = FreqMixStyle(p=1.0, alpha=0.3)
    torch.manual_seed(1)
    x = torch.randn(6, 8, 200) * torch.rand(6, 8, 1) * 3 + torch.randn(6, 8, 1) * 2
    aug.eval()
    assert torch.equal(aug(x), x)
    aug.train()
    y = aug(x)
    mu_x, mu_y = x.mean(2), y.mean(2)
    # every output band mean is a convex mix of two clips' means: inside the batch's range, and moved
    assert (mu_y >= mu_x.min(0).values - 1e-4).all() and (mu_y <= mu_x.max(0).values + 1e-4).all()
    assert not torch.allclose(mu_y, mu_x, atol=1e-3)
    # the shape within each band is kept: the same standardised clip
    z = lambda v: (v - v.mean(2, keepdim=True)) / v.std(2, keepdim=True)  # noqa: E731
    torch.testing.assert_close(z(y), z(x), atol=1e-3, rtol=1e-3)
    same = x[:1].expand(4, -1, -1).contiguous()  # clips with one style stay as they are
    torch.testing.assert_close(aug(same), same, atol=1e-4, rtol=1e-4)


def test_configured_augmentations_are_built_and_hold_no_weights():
    plain = build_dann(ModelConfig(), n_classes=3, n_mels=32)
    rich = build_dann(ModelConfig(freq_warp=0.1, time_warp=0.1, mixstyle_p=0.5, freq_masks=1), n_classes=3, n_mels=32)
    assert isinstance(plain.augment, torch.nn.Identity)
    assert len(rich.augment) == 3
    assert list(rich.state_dict()) == list(plain.state_dict())
    rich.eval()
    x = torch.randn(2, 32, 101)
    plain.load_state_dict(rich.state_dict())
    plain.eval()
    torch.testing.assert_close(rich(x)[0], plain(x)[0])
    assert isinstance(build_augment(ModelConfig(freq_warp=0.1)), SpecWarp)


def test_spec_warp_itself_samples_with_the_drawn_factors(monkeypatch):
    ramp = torch.arange(16.0)[None, :, None].expand(2, 16, 30).contiguous()
    aug = SpecWarp(freq=0.25, time=0.0).train()
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.full(a[0] if isinstance(a[0], tuple) else (a[0],), 0.5))
    torch.testing.assert_close(aug(ramp), ramp, atol=1e-4, rtol=1e-5)  # a draw of 0.5 is a factor of 1
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones(a[0] if isinstance(a[0], tuple) else (a[0],)))
    up = aug(ramp)  # factor 1.25: band f reads band f / 1.25
    torch.testing.assert_close(up[0, :, 5], torch.arange(16.0) / 1.25, atol=1e-4, rtol=1e-5)
