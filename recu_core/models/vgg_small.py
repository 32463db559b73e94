"""VGG-small (Zhang et al., LQ-Nets 2018) as binarised in the ReCU code.

Full-precision 3x3 stem to 128 channels, five binary 3x3 convs (128, 256, 256, 512, 512)
with max-pooling after the 2nd, 4th and 6th conv, BatchNorm + Hardtanh after each (or
the ``act_layer`` injected: ReActNet's RPReLU), and a
full-precision classifier on the flattened (512, H/8, W/8) map. Follows
``cifar/models_cifar/vgg.py`` (``vgg_small_1w1a``), its initialisation included.
"""

from __future__ import annotations

from torch import Tensor, nn

from recu_core.activations import ActFactory, hardtanh
from recu_core.models.init import init_vgg
from recu_core.models.registry import ConvFactory, register_model


class VGGSmall(nn.Module):
    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int,
        conv_layer: ConvFactory,
        act_layer: ActFactory = hardtanh,
    ) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"vgg_small needs images of at least 8x8, got {image_size}")
        plan = [(128, True), (256, False), (256, True), (512, False), (512, True)]
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 128, 3, 1, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.Hardtanh(),
        ]
        in_planes = 128
        for planes, pool in plan:
            layers.append(conv_layer(in_planes, planes, 3, 1, 1, bias=False))
            if pool:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.BatchNorm2d(planes), act_layer(planes)]
            in_planes = planes
        self.features = nn.Sequential(*layers)
        side = image_size // 8
        self.fc = nn.Linear(512 * side * side, num_classes)
        init_vgg(self)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, classes)
        return self.fc(self.features(x).flatten(1))


@register_model
def vgg_small(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    conv_layer: ConvFactory,
    act_layer: ActFactory = hardtanh,
) -> nn.Module:
    """VGG-small: 1 full-precision + 5 binary convs + full-precision classifier."""
    return VGGSmall(
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        conv_layer=conv_layer,
        act_layer=act_layer,
    )
