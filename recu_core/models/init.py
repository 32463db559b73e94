"""Weight initialisation of the official ReCU code, one function per official file.

The binary convs standardise their latent weight in every forward, so the function of a
fresh network does not depend on the conv scale; training does: SGD's step and weight
decay act on the latent weight, so its scale sets the effective learning rate of the
binary convs. PyTorch's default conv initialisation (kaiming-uniform with a = sqrt(5),
std = 1 / sqrt(3 fan_in)) starts them at about 0.4x the official scale.

    ResNets (CIFAR and ImageNet):  every conv ~ N(0, 2 / fan_in)   (kaiming_normal_)
    VGG-small:                     every conv ~ N(0, 2 / (k*k*out)) (fan_out), BN gamma 1,
                                   beta 0, the classifier ~ N(0, 0.01^2) with zero bias
    ImageNet ResNets additionally: every BatchNorm2d gamma = 1e-8, beta = 0
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_BN_GAMMA = 1e-8


@torch.no_grad()
def init_resnet(model: nn.Module, *, bn2d_gamma: float | None = None) -> None:
    """kaiming_normal_ (fan_in, gain sqrt(2)) on every conv; BatchNorm2d gamma if given."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d) and bn2d_gamma is not None:
            m.weight.fill_(bn2d_gamma)
            m.bias.zero_()


@torch.no_grad()
def init_vgg(model: nn.Module) -> None:
    """N(0, 2 / (k*k*out)) convs, BN (1, 0), classifier N(0, 0.01^2) with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()
        elif isinstance(m, nn.Linear):
            m.weight.normal_(0.0, 0.01)
            if m.bias is not None:
                m.bias.zero_()
