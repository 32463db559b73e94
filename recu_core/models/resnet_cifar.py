"""CIFAR ResNets of the ReCU code: ResNet-20, ResNet-18, and a Bi-Real ResNet-18 variant.

All three: full-precision 3x3 stem and classifier, BatchNorm1d before the classifier,
parameter-free downsample (AvgPool2d + zero channels), every conv kaiming-normal.

    resnet20         ``cifar/models_cifar/resnet.py`` ``resnet20_1w1a``: Bi-Real blocks,
                     Hardtanh after the stem. The paper's 87.5% (CIFAR-10).
    resnet18         ``cifar/models_cifar/resnet2.py`` ``resnet18_1w1a``: standard blocks
                     (one shortcut each), no Hardtanh after the stem. The paper's 92.8%.
    resnet18_bireal  not an official network: ResNet-18 widths with resnet20's Bi-Real
                     blocks and stem (this project's ``resnet18`` before it followed the
                     official file); same parameter count, a different function.
"""

from __future__ import annotations

from torch import Tensor, nn

from recu_core.activations import ActFactory, hardtanh
from recu_core.models.blocks import BasicBlock, BiRealBlock, ZeroPadShortcut
from recu_core.models.init import init_resnet
from recu_core.models.registry import ConvFactory, register_model


class CifarResNet(nn.Module):
    def __init__(
        self,
        *,
        block: type[BasicBlock | BiRealBlock],
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        stem_act: bool,
        num_classes: int,
        in_channels: int,
        conv_layer: ConvFactory,
        act_layer: ActFactory = hardtanh,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.Hardtanh() if stem_act else nn.Identity(),
        )
        blocks: list[nn.Module] = []
        in_planes = widths[0]
        for stage, (planes, depth) in enumerate(zip(widths, depths, strict=True)):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                shortcut = (
                    ZeroPadShortcut(in_planes, planes, stride)
                    if stride > 1 or in_planes != planes
                    else nn.Identity()
                )
                blocks.append(block(conv_layer, in_planes, planes, stride, shortcut, act_layer))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head_bn = nn.BatchNorm1d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        init_resnet(self)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, classes)
        return self.fc(self.head_bn(self.pool(self.blocks(self.stem(x)))))


_RESNET18 = {"widths": (64, 128, 256, 512), "depths": (2, 2, 2, 2)}


@register_model
def resnet20(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    conv_layer: ConvFactory,
    act_layer: ActFactory = hardtanh,
) -> nn.Module:
    """ResNet-20 (He et al., 2016, CIFAR variant): widths 16/32/64, 3 Bi-Real blocks each."""
    return CifarResNet(
        block=BiRealBlock,
        widths=(16, 32, 64),
        depths=(3, 3, 3),
        stem_act=True,
        num_classes=num_classes,
        in_channels=in_channels,
        conv_layer=conv_layer,
        act_layer=act_layer,
    )


@register_model
def resnet18(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    conv_layer: ConvFactory,
    act_layer: ActFactory = hardtanh,
) -> nn.Module:
    """ResNet-18 for CIFAR (official ``resnet18_1w1a``): standard blocks, 64/128/256/512."""
    return CifarResNet(
        block=BasicBlock,
        **_RESNET18,
        stem_act=False,
        num_classes=num_classes,
        in_channels=in_channels,
        conv_layer=conv_layer,
        act_layer=act_layer,
    )


@register_model
def resnet18_bireal(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    conv_layer: ConvFactory,
    act_layer: ActFactory = hardtanh,
) -> nn.Module:
    """ResNet-18 widths with Bi-Real blocks and a Hardtanh stem (not an official network)."""
    return CifarResNet(
        block=BiRealBlock,
        **_RESNET18,
        stem_act=True,
        num_classes=num_classes,
        in_channels=in_channels,
        conv_layer=conv_layer,
        act_layer=act_layer,
    )
