"""Sign quantizers with selectable straight-through estimators (STE).

Every quantizer has the same forward, a strictly binary sign

    q(x) = +1 if x >= 0 else -1          (sign(0) = +1, so outputs are 1-bit)

and differs only in the gradient it passes back, dL/dx = dL/dq * g(x):

    identity      g(x) = 1                           (Bengio et al., 2013)
    clipped       g(x) = 1[|x| <= 1]                 (Hardtanh STE; Hubara et al., 2016)
    approx_sign   g(x) = max(2 - 2|x|, 0)            (ApproxSign; Bi-Real Net, Liu et al.,
                                                      2018; ReCU's activation quantizer)
    relu          g(x) = 1[x > 0]                    (ReLU STE; Yin et al., ICLR 2019)
    clipped_relu  g(x) = 1[0 < x < 1]                (clipped-ReLU STE; Yin et al., ICLR 2019)

Yin et al. analyse the binary activation 1[x > 0]; sign(x) = 2 * 1[x > 0] - 1, so their
ReLU / clipped-ReLU proxies are used here as the derivative shapes, without the constant 2.

Pattern (after larq): a pure function per estimator, one autograd.Function that applies
it, and string names resolved by one ``get_ste``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

GradFn = Callable[[Tensor], Tensor]


def binary_sign(x: Tensor) -> Tensor:
    """sign(x) with sign(0) = +1: exactly two output values."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def identity_grad(x: Tensor) -> Tensor:
    """g(x) = 1."""
    return torch.ones_like(x)


def clipped_grad(x: Tensor) -> Tensor:
    """g(x) = 1[|x| <= 1], the derivative of Hardtanh."""
    return (x.abs() <= 1).to(x.dtype)


def approx_sign_grad(x: Tensor) -> Tensor:
    """g(x) = max(2 - 2|x|, 0), the derivative of the piecewise-quadratic ApproxSign."""
    return (2 - 2 * x.abs()).clamp_min(0)


def relu_grad(x: Tensor) -> Tensor:
    """g(x) = 1[x > 0], the derivative of ReLU."""
    return (x > 0).to(x.dtype)


def clipped_relu_grad(x: Tensor) -> Tensor:
    """g(x) = 1[0 < x < 1], the derivative of min(max(x, 0), 1)."""
    return ((x > 0) & (x < 1)).to(x.dtype)


STE_GRADIENTS: dict[str, GradFn] = {
    "identity": identity_grad,
    "clipped": clipped_grad,
    "approx_sign": approx_sign_grad,
    "relu": relu_grad,
    "clipped_relu": clipped_relu_grad,
}


class _SignIdentity(torch.autograd.Function):
    """sign forward, gradient passed through unchanged (nothing saved for backward)."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return binary_sign(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


def _masked_sign(grad_fn: GradFn) -> type[torch.autograd.Function]:
    class _Sign(torch.autograd.Function):
        @staticmethod
        def forward(x: Tensor) -> Tensor:
            return binary_sign(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx: Any, grad: Tensor) -> Tensor:
            (x,) = ctx.saved_tensors
            return grad * grad_fn(x)

    _Sign.__name__ = f"_Sign_{grad_fn.__name__}"
    return _Sign


Quantizer = Callable[[Tensor], Tensor]


def _quantizer(function: type[torch.autograd.Function]) -> Quantizer:
    def quantize(x: Tensor) -> Tensor:
        return function.apply(x)

    return quantize


_QUANTIZERS: dict[str, Quantizer] = {
    name: _quantizer(_SignIdentity if name == "identity" else _masked_sign(fn))
    for name, fn in STE_GRADIENTS.items()
}


def get_ste(name: str) -> Quantizer:
    """The sign quantizer whose backward is the estimator called ``name``."""
    try:
        return _QUANTIZERS[name]
    except KeyError:
        raise ValueError(
            f"unknown straight-through estimator {name!r}; allowed: {', '.join(STE_GRADIENTS)}"
        ) from None
