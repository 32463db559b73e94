"""ImageNet ResNets (ResNet-18, ResNet-34) with Bi-Real shortcuts.

Full-precision 7x7 stride-2 stem, max-pool and classifier; binary Bi-Real blocks; the
downsample is a full-precision 1x1 stride-2 conv with BatchNorm, as in the ReCU code.
"""

from __future__ import annotations

from torch import Tensor, nn

from recu_core.models.blocks import BiRealBlock, conv_bn_shortcut
from recu_core.models.registry import ConvFactory, register_model


class ImageNetResNet(nn.Module):
    def __init__(
        self,
        *,
        depths: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        conv_layer: ConvFactory,
    ) -> None:
        super().__init__()
        widths = (64, 128, 256, 512)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.Hardtanh(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks: list[nn.Module] = []
        in_planes = 64
        for stage, (planes, depth) in enumerate(zip(widths, depths, strict=True)):
            for i in range(depth):
                stride = 2 if stage > 0 and i == 0 else 1
                shortcut = (
                    conv_bn_shortcut(in_planes, planes, stride)
                    if stride > 1 or in_planes != planes
                    else nn.Identity()
                )
                blocks.append(BiRealBlock(conv_layer, in_planes, planes, stride, shortcut))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, classes)
        return self.fc(self.pool(self.blocks(self.stem(x))))


@register_model
def resnet18_imagenet(
    *, num_classes: int, in_channels: int, image_size: int, conv_layer: ConvFactory
) -> nn.Module:
    """ResNet-18 for ImageNet-sized inputs: stages of 2/2/2/2 blocks."""
    return ImageNetResNet(
        depths=(2, 2, 2, 2),
        num_classes=num_classes,
        in_channels=in_channels,
        conv_layer=conv_layer,
    )


@register_model
def resnet34_imagenet(
    *, num_classes: int, in_channels: int, image_size: int, conv_layer: ConvFactory
) -> nn.Module:
    """ResNet-34 for ImageNet-sized inputs: stages of 3/4/6/3 blocks."""
    return ImageNetResNet(
        depths=(3, 4, 6, 3),
        num_classes=num_classes,
        in_channels=in_channels,
        conv_layer=conv_layer,
    )
