"""Residual blocks of the official ReCU networks, and their shortcuts.

Two blocks, one per official file:

    BiRealBlock (a shortcut around every 3x3 conv; ResNet-20 in ``cifar/models_cifar/resnet.py``
    and both ImageNet ResNets in ``imagenet/models_imagenet/resnet.py``; Liu et al., 2018):
        h   = hardtanh(BN(conv1(x)) + shortcut(x))
        out = hardtanh(BN(conv2(h)) + h)

    BasicBlock (the standard block, one shortcut per block; ResNet-18 in
    ``cifar/models_cifar/resnet2.py``, ``resnet18_1w1a``; He et al., 2016):
        h   = hardtanh(BN(conv1(x)))
        out = hardtanh(BN(conv2(h)) + shortcut(x))

The nonlinearity is the injected ``act_layer`` (one module per conv, ``act1`` and ``act2``):
Hardtanh by default, parameter-free, so the state_dict keys are those of the official
networks; ReActNet's RPReLU with ``BinaryOptions.activation="rprelu"``, in the same place
(after the BatchNorm and the residual add, as ReActNet places it).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from recu_core.activations import ActFactory, hardtanh
from recu_core.models.registry import ConvFactory


class ZeroPadShortcut(nn.Module):
    """Parameter-free downsample for CIFAR ResNets: AvgPool2d(stride) + zero channel padding."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        # ceil_mode matches the stride-s 3x3 conv's output size on odd feature maps.
        self.pool = (
            nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)
            if stride > 1
            else nn.Identity()
        )
        self.extra = planes - in_planes

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C + extra, H/s, W/s)
        x = self.pool(x)
        lo = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.extra - lo)) if self.extra else x


def conv_bn_shortcut(in_planes: int, planes: int, stride: int) -> nn.Module:
    """ImageNet ResNet downsample: full-precision 1x1 conv with stride, then BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
    )


class ResidualBlock(nn.Module):
    """conv1/bn1/conv2/bn2 (binary or not), the block's shortcut, and the nonlinearity
    after each conv (act1, act2); forward in subclasses."""

    def __init__(
        self,
        conv: ConvFactory,
        in_planes: int,
        planes: int,
        stride: int,
        shortcut: nn.Module,
        act: ActFactory = hardtanh,
    ) -> None:
        super().__init__()
        self.conv1 = conv(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = shortcut
        self.act1 = act(planes)
        self.act2 = act(planes)


class BiRealBlock(ResidualBlock):
    """Two 3x3 convs, each wrapped by its own real-valued shortcut."""

    def forward(self, x: Tensor) -> Tensor:  # (B, in, H, W) -> (B, planes, H/s, W/s)
        h = self.act1(self.bn1(self.conv1(x)) + self.shortcut(x))
        return self.act2(self.bn2(self.conv2(h)) + h)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs under one shortcut (the standard ResNet block with Hardtanh)."""

    def forward(self, x: Tensor) -> Tensor:  # (B, in, H, W) -> (B, planes, H/s, W/s)
        h = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(h)) + self.shortcut(x))
