"""Named recipes: the official ReCU training runs, as partial TrainConfig specs.

``TrainConfig(recipe="cifar10_resnet20")`` starts from the preset and lets every field
given explicitly override it (nested sections field by field). Each preset reproduces
the official command line of the ReCU code (``cifar/run.sh``, ``imagenet/run.sh``) and
names the published top-1 it targets (1-bit weights and activations).

    CIFAR-10   600 epochs, batch 256, SGD momentum 0.9, lr 0.1, the official 5-epoch
               warm-up then cosine (per epoch), weight decay 5e-4 on every parameter,
               tau 0.85 -> 0.99 (exponential), random crop (pad 4) + flip.
    ImageNet   200 epochs, batch 512, lr 0.1, the same warm-up and cosine, weight decay
               1e-4 on the conv and fc parameters only (the models' official groups),
               tau 0.85 -> 0.99, random-resized crop (scale 0.08-1.25, the official
               torchvision path) + flip at 224, resize 256 + centre crop for evaluation.

Importing this module does not import torch (the service validates specs with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

RecipeName = Literal[
    "cifar10_resnet20",
    "cifar10_resnet18",
    "cifar10_vgg_small",
    "imagenet_resnet18",
    "imagenet_resnet34",
]


@dataclass(frozen=True)
class Recipe:
    """A preset: the spec it sets, the official command it follows, what it should reach."""

    spec: dict[str, Any]
    official: str
    published_top1: float


_TAU = {"kind": "exponential", "tau_s": 0.85, "tau_e": 0.99}


def _cifar(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "dataset": {"name": "cifar10", "crop_padding": 4, "flip": True},
        "epochs": 600,
        "batch_size": 256,
        "optimizer": {
            "name": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "warmup_epochs": 5.0,
            "lr_schedule": "epoch",
        },
        "tau": _TAU,
    }


def _imagenet(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "dataset": {
            "name": "imagefolder",
            "root": "imagenet",
            "image_size": 224,
            "loader": "streaming",
            "crop_scale": (0.08, 1.25),
            "flip": True,
        },
        "epochs": 200,
        "batch_size": 512,
        "optimizer": {
            "name": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "warmup_epochs": 5.0,
            "lr_schedule": "epoch",
        },
        "tau": _TAU,
    }


_CIFAR_RUN = "cifar/run.sh with --model {}"
_IMAGENET_RUN = "imagenet/run.sh with --model {}"
RECIPES: dict[str, Recipe] = {
    "cifar10_resnet20": Recipe(_cifar("resnet20"), _CIFAR_RUN.format("resnet20_1w1a"), 87.5),
    "cifar10_resnet18": Recipe(_cifar("resnet18"), _CIFAR_RUN.format("resnet18_1w1a"), 92.8),
    "cifar10_vgg_small": Recipe(_cifar("vgg_small"), _CIFAR_RUN.format("vgg_small_1w1a"), 92.2),
    "imagenet_resnet18": Recipe(
        _imagenet("resnet18_imagenet"), _IMAGENET_RUN.format("resnet18_1w1a"), 61.0
    ),
    "imagenet_resnet34": Recipe(
        _imagenet("resnet34_imagenet"), _IMAGENET_RUN.format("resnet34_1w1a"), 65.1
    ),
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it; nested dicts are merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
