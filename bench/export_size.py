"""Bit-packed export: file size against the float weights.

Models at CIFAR-10 shape (3x32x32, 10 classes): the float model as safetensors (float32
weights and buffers), the ``.bnn`` export, and the binary layers alone (their float32
latent weights against their packed bits + per-channel scale and bias). Sizes do not
depend on the weights' values. Speed and memory: ``bench/engine_speed.py``.

    .venv/bin/python -m bench.export_size [--models resnet20 resnet18 vgg_small]
"""

from __future__ import annotations

import argparse

import torch
from safetensors.torch import save as save_safetensors

from bench.common import environment
from recu_core.config import TrainConfig
from recu_core.export.bnn_file import export_model, load_packed_model
from recu_core.layers import binary_layers
from recu_core.models import create_model

SHAPE = {"num_classes": 10, "in_channels": 3, "image_size": 32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet18", "vgg_small"])
    args = parser.parse_args()
    print(f"# {environment()}")
    print(
        "| model | float model MB | .bnn MB | whole model smaller | binary layers float MB | "
        "binary layers packed MB | binary layers smaller |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        config = TrainConfig(model=name)
        model = create_model(name, **SHAPE, binary=True, options=config.binary_options).eval()
        float_bytes = len(
            save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()})
        )
        data = export_model(model, config, SHAPE)
        packed = load_packed_model(data, engine="reference")
        binary_float = sum(layer.weight.numel() * 4 for _, layer in binary_layers(model))
        binary_packed = sum(
            m.bits.numel() * 4 + m.scale.numel() * 8 + m.bias.numel() * 8
            for m in packed.modules()
            if hasattr(m, "bits")
        )
        print(
            f"| {name} | {float_bytes / 1e6:.2f} | {len(data) / 1e6:.3f} | "
            f"{float_bytes / len(data):.1f}x | {binary_float / 1e6:.2f} | "
            f"{binary_packed / 1e6:.3f} | {binary_float / binary_packed:.1f}x |"
        )


if __name__ == "__main__":
    main()
