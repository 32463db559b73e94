"""Each straight-through estimator: forward is a strict sign, gradient matches NumPy."""

import warnings

import numpy as np
import pytest
import torch

from recu_core.quantizers import STE_GRADIENTS, binary_sign, get_scaled_ste, get_ste

NUMPY_REFERENCE = {
    "identity": lambda x: np.ones_like(x),
    "clipped": lambda x: (np.abs(x) <= 1).astype(x.dtype),
    "approx_sign": lambda x: np.maximum(2 - 2 * np.abs(x), 0),
    "relu": lambda x: (x > 0).astype(x.dtype),
    "clipped_relu": lambda x: ((x > 0) & (x < 1)).astype(x.dtype),
}


def test_every_registered_estimator_has_a_reference():
    assert set(STE_GRADIENTS) == set(NUMPY_REFERENCE)


@pytest.mark.parametrize("name", sorted(NUMPY_REFERENCE))
def test_forward_is_binary_sign(name):
    x = torch.tensor([-2.0, -0.5, -1e-30, -0.0, 0.0, 1e-30, 0.7, 3.0])
    out = get_ste(name)(x)
    assert out.tolist() == [-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("name", sorted(NUMPY_REFERENCE))
def test_gradient_matches_numpy_reference(name):
    rng = np.random.default_rng(0)
    x_np = np.concatenate([rng.uniform(-2.5, 2.5, 1000), [-1.0, 0.0, 1.0, 0.5, -0.5]])
    upstream = rng.normal(size=x_np.shape)
    x = torch.tensor(x_np, requires_grad=True)
    (get_ste(name)(x) * torch.tensor(upstream)).sum().backward()
    expected = upstream * NUMPY_REFERENCE[name](x_np)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_binary_sign_keeps_dtype_and_two_values():
    x = torch.randn(100, dtype=torch.float64)
    out = binary_sign(x)
    assert out.dtype == torch.float64
    assert set(out.unique().tolist()) <= {-1.0, 1.0}


def test_unknown_estimator_names_allowed_values():
    with pytest.raises(ValueError, match=r"unknown straight-through estimator 'tanh'.*approx_sign"):
        get_ste("tanh")


@pytest.mark.parametrize("name", sorted(NUMPY_REFERENCE))
def test_fused_scaled_sign_matches_autograd_of_scale_then_sign(name):
    torch.manual_seed(0)
    x = (torch.randn(5, 3, 4, 4, dtype=torch.float64) * 2 + 0.3).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    upstream = torch.randn(5, 3, 4, 4, dtype=torch.float64)

    out = get_scaled_ste(name)(x)
    (out * upstream).sum().backward()
    a0 = x_ref / torch.sqrt(x_ref.var(dim=(1, 2, 3), keepdim=True) + 1e-5)
    ref = get_ste(name)(a0)
    (ref * upstream).sum().backward()

    assert torch.equal(out, ref)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


def test_scaled_estimator_validates_name():
    with pytest.raises(ValueError, match="allowed"):
        get_scaled_ste("nope")


@pytest.mark.parametrize("name", ["approx_sign", "clipped_relu"])
def test_compiled_backward_kernel_matches_eager(name):
    torch.manual_seed(1)
    x = (torch.randn(6, 4, 5, 5) * 1.5).requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    upstream = torch.randn(6, 4, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager fails the test
        (get_scaled_ste(name, compiled=True)(x) * upstream).sum().backward()
    (get_scaled_ste(name)(x_ref) * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-6)
