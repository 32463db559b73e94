"""ReCU binary layers against independent references."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recu_core.config import BinaryOptions
from recu_core.layers import (
    BinaryConv2d,
    BinaryLinear,
    laplace_quantile,
    set_tau,
    standardize_filters,
)


@pytest.mark.parametrize("tau", [0.51, 0.85, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("b", [0.3, 1.0, 2.0])
def test_laplace_quantile_matches_numpy_inverse_cdf(tau, b):
    # Inverse CDF of Laplace(0, b) for p > 0.5: x = -b * ln(2 * (1 - p)), computed in NumPy.
    expected = -b * np.log(2.0 * (1.0 - tau))
    got = laplace_quantile(
        torch.tensor(b, dtype=torch.float64), torch.tensor(tau, dtype=torch.float64)
    )
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tau", [0.8, 0.9, 0.97])
def test_clamped_fraction_on_laplace_weights_is_two_times_one_minus_tau(tau):
    torch.manual_seed(0)
    layer = BinaryConv2d(64, 128, 3)
    laplace = torch.distributions.Laplace(0.0, 0.05)
    with torch.no_grad():
        layer.weight.copy_(laplace.sample(layer.weight.shape))
    set_tau(layer, tau)
    w1 = layer.latent_weight()
    fraction = (w1.abs() > layer.clamp_bound(w1)).double().mean().item()
    n = w1.numel()
    sigma = math.sqrt(2 * (1 - tau) * (1 - 2 * (1 - tau)) / n)
    # Sampling error plus the error of estimating b per layer: well inside 5 sigma + 0.5%.
    assert fraction == pytest.approx(2 * (1 - tau), abs=5 * sigma + 0.005)


def test_standardize_gives_zero_mean_and_std_two_sqrt_two_per_filter():
    w = torch.randn(8, 4, 3, 3, dtype=torch.float64) * 0.1 + 0.3
    w1 = standardize_filters(w, eps=0.0)
    assert torch.allclose(w1.mean(dim=(1, 2, 3)), torch.zeros(8, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(
        w1.std(dim=(1, 2, 3)), torch.full((8,), 2 * math.sqrt(2), dtype=torch.float64)
    )


def _numpy_reference_weight(w: np.ndarray, tau: float) -> np.ndarray:
    w0 = w - w.mean(axis=(1, 2, 3), keepdims=True)
    w1 = w0 / (np.sqrt(w0.var(axis=(1, 2, 3), ddof=1, keepdims=True) + 1e-5) / (2 * np.sqrt(2)))
    q = -np.abs(w1).mean() * np.log(2 - 2 * tau)
    return np.where(np.clip(w1, -q, q) >= 0, 1.0, -1.0)


def test_conv_forward_matches_numpy_reference():
    torch.manual_seed(1)
    layer = BinaryConv2d(5, 7, 3, padding=1).double()
    set_tau(layer, 0.9)
    x = torch.randn(4, 5, 6, 6, dtype=torch.float64)
    wb = torch.from_numpy(_numpy_reference_weight(layer.weight.detach().numpy(), 0.9))
    xb = torch.where(x >= 0, 1.0, -1.0).double()
    expected = F.conv2d(xb, wb, padding=1) * layer.alpha.detach()
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)
    layer.eval()
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)


def _approx_sign_proxy(x):
    # Bi-Real's ApproxSign: piecewise quadratic whose derivative is max(2 - 2|x|, 0).
    return torch.where(
        x < -1, -1.0, torch.where(x < 0, 2 * x + x * x, torch.where(x < 1, 2 * x - x * x, 1.0))
    )


def test_conv_gradients_match_detach_trick_reference():
    torch.manual_seed(2)
    layer = BinaryConv2d(6, 8, 3, padding=1).double()
    set_tau(layer, 0.88)
    x = torch.randn(3, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 8, 5, 5, dtype=torch.float64)
    (layer(x) * upstream).sum().backward()

    w = layer.weight.detach().clone().requires_grad_(True)
    alpha = layer.alpha.detach().clone().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    w1 = standardize_filters(w)
    q = (-w1.abs().mean() * math.log(2 - 2 * 0.88)).detach()
    w2 = torch.clamp(w1, -q, q)
    wb = w2 + (torch.where(w2 >= 0, 1.0, -1.0) - w2).detach()
    a0 = x_ref / torch.sqrt(x_ref.var(dim=(1, 2, 3), keepdim=True) + 1e-5)
    proxy = _approx_sign_proxy(a0)
    ab = proxy + (torch.where(a0 >= 0, 1.0, -1.0) - proxy).detach()
    (F.conv2d(ab, wb, padding=1) * alpha * upstream).sum().backward()

    torch.testing.assert_close(layer.weight.grad, w.grad)
    torch.testing.assert_close(layer.alpha.grad, alpha.grad)
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_clamp_zeroes_gradient_beyond_q_and_off_switch_removes_it():
    # Without standardisation w1 is the weight itself, so the clamp's effect on the
    # weight gradient is visible directly: zero beyond Q with the clamp, not without.
    torch.manual_seed(3)
    on = BinaryConv2d(4, 4, 3, options=BinaryOptions(standardize=False))
    off = BinaryConv2d(4, 4, 3, options=BinaryOptions(standardize=False, clamp=False))
    off.load_state_dict(on.state_dict())
    set_tau(on, 0.6)  # a tight clamp
    set_tau(off, 0.6)
    x = torch.randn(2, 4, 5, 5)
    y_on, y_off = on(x), off(x)
    torch.testing.assert_close(y_on, y_off)  # the clamp never changes a sign
    upstream = torch.randn_like(y_on)
    (y_on * upstream).sum().backward()
    (y_off * upstream).sum().backward()
    beyond = on.weight.abs() > on.clamp_bound(on.latent_weight())
    assert beyond.any()
    assert (on.weight.grad[beyond] == 0).all()
    assert (off.weight.grad[beyond] != 0).all()
    torch.testing.assert_close(on.weight.grad[~beyond], off.weight.grad[~beyond])


def test_standardize_off_uses_raw_weights():
    layer = BinaryConv2d(2, 3, 1, options=BinaryOptions(standardize=False, clamp=False))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.2, -0.1, 0.3, 0.4, -0.5, -0.6]).view(3, 2, 1, 1))
    assert torch.equal(layer.latent_weight(), layer.weight)
    assert layer.binary_weight().flatten().tolist() == [1.0, -1.0, 1.0, 1.0, -1.0, -1.0]


def test_alpha_none_has_no_parameter():
    layer = BinaryConv2d(2, 3, 3, options=BinaryOptions(alpha="none"))
    assert layer.alpha is None
    assert "alpha" not in dict(layer.named_parameters())
    out = layer(torch.randn(1, 2, 5, 5))
    assert set(out.unique().tolist()) <= set(range(-18, 19))  # integer sums of +-1 products


def test_activation_ste_choice_changes_only_the_gradient():
    torch.manual_seed(4)
    a = BinaryLinear(16, 4)
    b = BinaryLinear(16, 4, options=BinaryOptions(activation_ste="identity"))
    b.load_state_dict(a.state_dict())
    x1 = (torch.randn(8, 16) * 3).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = a(x1), b(x2)
    torch.testing.assert_close(y1, y2)
    y1.sum().backward()
    y2.sum().backward()
    assert not torch.allclose(x1.grad, x2.grad)


def test_tau_is_a_state_dict_buffer_and_set_tau_validates():
    layer = BinaryConv2d(2, 2, 3)
    set_tau(layer, 0.93)
    assert layer.state_dict()["tau"].item() == pytest.approx(0.93)
    with pytest.raises(ValueError, match=r"tau must lie in \(0.5, 1\)"):
        set_tau(layer, 1.0)


def test_binary_layer_compiles_fullgraph_with_inductor():
    torch.manual_seed(5)
    layer = BinaryConv2d(4, 8, 3, padding=1)
    set_tau(layer, 0.9)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True)
    eager_out = layer(x)
    eager_out.sum().backward()
    eager_grad = layer.weight.grad.clone()
    layer.weight.grad = None
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager_out)
    torch.testing.assert_close(layer.weight.grad, eager_grad, rtol=1e-4, atol=1e-4)
