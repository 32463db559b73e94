"""ReActNet's learnable activation shifts: RSign's threshold and RPReLU.

Liu et al., "ReActNet: Towards Precise Binary Neural Networks with Generalized
Activation Functions", ECCV 2020 (public code liuzechun/ReActNet, ``LearnableBias`` and
``nn.PReLU`` in ``resnet/*/birealnet.py``).

    RSign   ab = sign(x - b_c)                 b: one learnable threshold per input channel
            dL/db_c = -sum over channel c of dL/d(x - b), the shifted input's gradient
            (through the activation's estimator); initialised b = 0, so a fresh layer
            computes sign(x) exactly. Applied before ReCU's per-sample activation scaling:
            sign((x - b) / s) = sign(x - b), so the eval path (unscaled) is the same
            function, and a packed engine takes the sign bit of x - b (docs/export.md).

    RPReLU  y = PReLU_c(x - gamma_c) + zeta_c, PReLU_c(u) = u if u > 0 else beta_c u
            gamma, zeta: learnable shifts (init 0), beta: learnable slope (init 0.25, as
            nn.PReLU); one of each per channel. The block's nonlinearity after its
            BatchNorm and residual add, where ReActNet places it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def subtract_threshold(x: Tensor, threshold: Tensor) -> Tensor:
    """x - b with b (C,) broadcast over dim 1 of x ((B, C, H, W) or (B, C))."""
    return x - threshold.view((-1,) + (1,) * (x.ndim - 2))


class RPReLU(nn.Module):
    """ReActNet's RPReLU over ``channels`` (dim 1): PReLU(x - gamma) + zeta per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.slope = nn.Parameter(torch.full((channels,), 0.25))
        self.zeta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, ...) -> (B, C, ...)
        shape = (-1,) + (1,) * (x.ndim - 2)
        return F.prelu(x - self.gamma.view(shape), self.slope) + self.zeta.view(shape)

    def extra_repr(self) -> str:
        return str(self.gamma.numel())


def hardtanh(channels: int) -> nn.Module:
    """The official networks' block nonlinearity (parameter-free; ``channels`` unused)."""
    return nn.Hardtanh()


ActFactory = Callable[[int], nn.Module]


def block_activation(name: str) -> ActFactory:
    """The factory ``channels -> module`` of ``BinaryOptions.activation``."""
    if name == "rprelu":
        return RPReLU
    if name == "hardtanh":
        return hardtanh
    raise ValueError(f"unknown block activation {name!r}; allowed: hardtanh, rprelu")
