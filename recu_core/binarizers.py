"""Weight binarizers: the real value whose sign a binary layer's weight is.

For the latent weight w1 (the weight after the ``standardize`` and ``clamp`` options):

    recu   v = w1                 wb = sign(v), gradient dwb/dw1 = 1 (identity STE)
    biper  v = sin(f w1)          wb = sign(v), gradient dwb/dw1 = f cos(f w1)
                                  (identity through the sign, exact through the sine)

With ``BinaryOptions.weights = "real"`` the layer uses v itself (stage 1 of a two-stage
recipe: BiPer's stage 1 trains with sin(f w), its stage 2 with sign(sin(f w))).

``biper`` is BiPer (Vargas et al., "BiPer: Binary Neural Networks using a Periodic
Function", CVPR 2024; public code edmav4/BiPer, built on ReCU's code: the same alpha,
activation scaling and activation gradient). Its training loop adds to the loss, in both
stages and per binary layer,

    R(w1) = lambda * mean(sin(f w1)^2)          (their 0.5 - 0.5 cos(2 f w1))

with lambda constant over the run (their ``tau_min = tau_max``): 0.037 in stage 1 and
0.0468 in stage 2 of their CIFAR-10 ResNet-18 scripts, f = 20.
"""

from __future__ import annotations

import torch
from torch import Tensor

WEIGHT_BINARIZERS = ("recu", "biper")


def biper_value(w1: Tensor, frequency: float) -> Tensor:
    """v = sin(f w1): the periodic function whose sign BiPer's binary weight is."""
    return torch.sin(frequency * w1)


def biper_penalty(w1: Tensor, frequency: float) -> Tensor:
    """mean(sin(f w1)^2) over the layer's weights (BiPer's regulariser without lambda)."""
    return torch.sin(frequency * w1).square().mean()
