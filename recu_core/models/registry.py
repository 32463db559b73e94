"""Models by name: ``@register_model`` builders and ``create_model`` (after timm).

A builder takes keyword arguments only: ``num_classes``, ``in_channels``, ``image_size``
(from the dataset), ``conv_layer`` (a factory with nn.Conv2d's signature, so the same
architecture builds with ReCU binary convs or plain ones for comparison) and ``act_layer``
(``channels -> module``: the nonlinearity after each binary conv's BatchNorm, Hardtanh or
ReActNet's RPReLU, from ``BinaryOptions.activation``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol

from torch import nn

from recu_core.activations import block_activation
from recu_core.config import MODEL_NAMES, BinaryOptions
from recu_core.layers import BinaryConv2d


class ConvFactory(Protocol):
    def __call__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = ...,
        padding: int = ...,
        *,
        bias: bool = ...,
    ) -> nn.Module: ...


ModelBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(fn: ModelBuilder) -> ModelBuilder:
    """Register ``fn`` under its own name; the name must be one of config.MODEL_NAMES."""
    if fn.__name__ not in MODEL_NAMES:
        raise ValueError(f"{fn.__name__!r} is not listed in recu_core.config.MODEL_NAMES")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    binary: bool = True,
    options: BinaryOptions | None = None,
) -> nn.Module:
    """Build ``name``: ReCU binary inner convs when ``binary``, else full precision.

    First and last layers are full precision in both variants, as in the paper; the
    block nonlinearity follows ``options.activation`` in both.
    """
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(list_models())}") from None
    options = options or BinaryOptions()
    conv: ConvFactory = partial(BinaryConv2d, options=options) if binary else nn.Conv2d
    return builder(
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        conv_layer=conv,
        act_layer=block_activation(options.activation),
    )
