"""Activation sign estimators whose gradient changes with training progress.

Both have the strictly binary forward of ``quantizers.binary_sign`` (so a trained model
exports exactly like any other) and differ in the gradient dL/dx = dL/dq * g(x; p), whose
parameters p are set once per epoch (``layers.set_epoch_progress``, schedules in
``recu_core.schedules``):

    reste  ReSTE, the rectified straight-through estimator (Wu et al., "Estimator Meets
           Equilibrium Perspective: A Rectified Straight Through Estimator for Binary
           Neural Networks Training", ICCV 2023; public code DravenALG/ReSTE). The
           forward is approximated by the power function sign(x) |x|^(1/o), whose
           derivative is used where it is finite, clipped outside [-c, c] and replaced by
           its secant slope near 0:

               g(x; o) = (1/o) |x|^((1 - o)/o)    d < |x| <= c
                       = d^(1/o) / d              |x| <= d
                       = 0                        |x| > c           (d = 0.1, c = 1.5)

           o = 1 is the clipped identity STE; larger o approaches sign's own derivative.

    ede    IR-Net's Error Decay Estimator (Qin et al., "Forward and Backward Information
           Retention for Accurate Binary Neural Networks", CVPR 2020; htqin/IR-Net):
           the derivative of k tanh(t x),

               g(x; t, k) = k t (1 - tanh(t x)^2),   k = max(1/t, 1)

           t grows from small (g close to 1: identity) to large (g close to sign's spike).

Gradients are computed with ``torch.where`` on device tensors: no host synchronisation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from recu_core.quantizers import binary_sign

RESTE_CLIP = 1.5  # c: ReSTE's threshold t (its code's default)
RESTE_INTERVAL = 0.1  # d: ReSTE's interval around 0 where the power law is replaced
SCHEDULED_STES = ("reste", "ede")


def reste_grad(x: Tensor, o: Tensor) -> Tensor:
    """g(x; o) of ReSTE (module docstring); ``o`` a 0-d tensor >= 1."""
    magnitude = x.abs()
    power = magnitude.clamp_min(RESTE_INTERVAL).pow((1 - o) / o) / o
    near_zero = torch.exp(math.log(RESTE_INTERVAL) / o) / RESTE_INTERVAL  # d^(1/o) / d
    inside = torch.where(magnitude <= RESTE_INTERVAL, near_zero.to(x.dtype), power)
    return torch.where(magnitude <= RESTE_CLIP, inside, torch.zeros_like(x))


def ede_grad(x: Tensor, t: Tensor, k: Tensor) -> Tensor:
    """g(x; t, k) = k t (1 - tanh(t x)^2), the derivative of k tanh(t x)."""
    return k * t * (1 - torch.tanh(t * x).square())


def _grad(name: str, x: Tensor, params: Tensor) -> Tensor:
    if name == "reste":
        return reste_grad(x, params[0])
    return ede_grad(x, params[0], params[1])


class _ScheduledSign(torch.autograd.Function):
    """sign(x) forward; backward dL/dq * g(x; params) of the named estimator."""

    @staticmethod
    def forward(x: Tensor, params: Tensor, name: str) -> Tensor:
        return binary_sign(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, str], output: Tensor) -> None:
        x, params, name = inputs
        ctx.save_for_backward(x, params)
        ctx.name = name

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        x, params = ctx.saved_tensors
        return grad * _grad(ctx.name, x, params).to(grad.dtype), None, None


def scheduled_sign(name: str, x: Tensor, params: Tensor) -> Tensor:
    """sign(x) with the gradient of estimator ``name`` ('reste': params = (o, -);
    'ede': params = (t, k)), ``params`` a device tensor set per epoch."""
    if name not in SCHEDULED_STES:
        raise ValueError(f"unknown scheduled estimator {name!r}; allowed: {SCHEDULED_STES}")
    return _ScheduledSign.apply(x, params, name)
