"""ImageNet ResNets (ResNet-18, ResNet-34) of ``imagenet/models_imagenet/resnet.py``.

Full-precision 7x7 stride-2 stem (conv, BN, Hardtanh), max-pool, Bi-Real binary blocks,
a full-precision 1x1 stride-2 conv + BN downsample, global average pool, BatchNorm1d,
full-precision classifier. Initialised as the official code: every conv kaiming-normal,
every BatchNorm2d gamma 1e-8 and beta 0 (so each block starts close to its shortcut).

Weight decay, as the official ImageNet optimiser: only parameters whose official names
contain ``conv`` or ``fc`` (the stem conv, the binary convs with their alpha, the
classifier); BatchNorm and the downsample convs are exempt (``no_weight_decay``).
"""

from __future__ import annotations

from torch import Tensor, nn

from recu_core.activations import ActFactory, hardtanh
from recu_core.models.blocks import BiRealBlock, conv_bn_shortcut
from recu_core.models.init import IMAGENET_BN_GAMMA, init_resnet
from recu_core.models.registry import ConvFactory, register_model


class ImageNetResNet(nn.Module):
    def __init__(
        self,
        *,
        depths: tuple[int, ...],
        num_classes: int,
        in_channels: int,
        conv_layer: ConvFactory,
        act_layer: ActFactory = hardtanh,
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
                blocks.append(
                    BiRealBlock(conv_layer, in_planes, planes, stride, shortcut, act_layer)
                )
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head_bn = nn.BatchNorm1d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        init_resnet(self, bn2d_gamma=IMAGENET_BN_GAMMA)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, classes)
        return self.fc(self.head_bn(self.pool(self.blocks(self.stem(x)))))

    def no_weight_decay(self) -> set[str]:
        """Parameters the official optimiser does not decay: BatchNorm and the downsample."""
        exempt = set()
        for name, module in self.named_modules():
            if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d) or name.endswith("shortcut.0"):
                exempt |= {f"{name}.{p}" for p, _ in module.named_parameters(recurse=False)}
        return exempt


@register_model
def resnet18_imagenet(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    conv_layer: ConvFactory,
    act_layer: ActFactory = hardtanh,
) -> nn.Module:
    """ResNet-18 for ImageNet (official ``resnet18_1w1a``): stages of 2/2/2/2 blocks."""
    return ImageNetResNet(
        depths=(2, 2, 2, 2),
        num_classes=num_classes,
        in_channels=in_channels,
        conv_layer=conv_layer,
        act_layer=act_layer,
    )


@register_model
def resnet34_imagenet(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    conv_layer: ConvFactory,
    act_layer: ActFactory = hardtanh,
) -> nn.Module:
    """ResNet-34 for ImageNet (official ``resnet34_1w1a``): stages of 3/4/6/3 blocks."""
    return ImageNetResNet(
        depths=(3, 4, 6, 3),
        num_classes=num_classes,
        in_channels=in_channels,
        conv_layer=conv_layer,
        act_layer=act_layer,
    )
