import math

import pytest
import torch

from audio_dann.nn.grl import grad_reverse
from audio_dann.training.schedules import grl_coeff, lr_factor, progress


@pytest.mark.parametrize("coeff", [0.0, 0.37, 1.0, 6.0])
def test_grl_forward_identity_and_reversed_gradient(coeff):
    torch.manual_seed(0)
    x = torch.randn(5, 7, requires_grad=True)
    y = grad_reverse(x, coeff)
    assert torch.equal(y, x)
    upstream = torch.randn(5, 7)
    y.backward(upstream)
    assert torch.equal(x.grad, -coeff * upstream)


def test_grl_under_autocast_keeps_dtype_and_reverses():
    x = torch.randn(4, 3, requires_grad=True)
    lin = torch.nn.Linear(3, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        y = grad_reverse(h, 2.0)
        assert y.dtype == h.dtype == torch.bfloat16
    y.float().sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lin(x2).float().sum().backward()
    torch.testing.assert_close(x.grad, -2.0 * x2.grad)


def test_grl_coeff_paper_values():
    assert grl_coeff(0.0) == 0.0
    assert grl_coeff(1.0) == pytest.approx(0.9999092, abs=1e-6)
    assert grl_coeff(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)


def test_lr_factor_paper_values():
    assert lr_factor(0.0) == 1.0
    assert lr_factor(1.0) == pytest.approx(11**-0.75)


@pytest.mark.parametrize("p", [-0.01, 1.01, float("nan")])
def test_schedules_reject_progress_outside_unit_interval(p):
    with pytest.raises(ValueError, match="progress"):
        grl_coeff(p)
    with pytest.raises(ValueError, match="progress"):
        lr_factor(p)


def test_progress_clips():
    assert progress(5, 10) == 0.5
    assert progress(20, 10) == 1.0
    assert progress(3, 0) == 1.0
