"""CIFAR ResNets (ResNet-20, ResNet-18) with Bi-Real shortcuts, as in the ReCU code.

Full-precision 3x3 stem and classifier; BatchNorm1d before the classifier; binary
Bi-Real blocks in between; parameter-free downsample (AvgPool2d + zero channels).
"""

from __future__ import annotations

from torch import Tensor, nn

from recu_core.models.blocks import BiRealBlock, ZeroPadShortcut
from recu_core.models.registry import ConvFactory, register_model


class CifarResNet(nn.Module):
    def __init__(
        self,
        *,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        conv_layer: ConvFactory,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.Hardtanh(),
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
                blocks.append(BiRealBlock(conv_layer, in_planes, planes, stride, shortcut))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head_bn = nn.BatchNorm1d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, classes)
        return self.fc(self.head_bn(self.pool(self.blocks(self.stem(x)))))


@register_model
def resnet20(
    *, num_classes: int, in_channels: int, image_size: int, conv_layer: ConvFactory
) -> nn.Module:
    """ResNet-20 (He et al., 2016, CIFAR variant): widths 16/32/64, 3 blocks per stage."""
    return CifarResNet(
        widths=(16, 32, 64),
        depths=(3, 3, 3),
        num_classes=num_classes,
        in_channels=in_channels,
        conv_layer=conv_layer,
    )


@register_model
def resnet18(
    *, num_classes: int, in_channels: int, image_size: int, conv_layer: ConvFactory
) -> nn.Module:
    """ResNet-18 for CIFAR: 3x3 stem, widths 64/128/256/512, 2 blocks per stage."""
    return CifarResNet(
        widths=(64, 128, 256, 512),
        depths=(2, 2, 2, 2),
        num_classes=num_classes,
        in_channels=in_channels,
        conv_layer=conv_layer,
    )
