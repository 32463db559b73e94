"""Binarisation overhead: ReCU ResNet-20 train-step images/s over the same network
with plain convs, CIFAR shapes (3x32x32), batch 128, CPU. Goal: ratio >= 0.95.

Variants, interleaved step by step: the library's ReCU layers with the activation backward
fused by torch.compile (the trainer's default, ``kernels="compiled"``), the same with the
hand-written eager backward (``kernels="eager"``), the activation path left to autograd
(scale, then sign: the straightforward implementation), plain convs, and a floor: bare
sign of weights and activations with none of ReCU's maths, the cost any binary network
pays in eager PyTorch on float tensors.

    .venv/bin/python -m bench.binarize_overhead [--batch 128] [--rounds 30]
"""

from __future__ import annotations

import argparse
import types

import torch
import torch.nn.functional as F

from bench.common import environment, interleaved, median, timed
from recu_core.config import BinaryOptions
from recu_core.layers import (
    BinaryConv2d,
    binary_layers,
    scale_per_sample,
    set_tau,
    use_compiled_kernels,
)
from recu_core.models import create_model
from recu_core.quantizers import get_ste


def _autograd_binary_input(self: BinaryConv2d, a: torch.Tensor) -> torch.Tensor:
    """The straightforward activation path: autograd through scale, then sign."""
    if self.training and self.options.scale_activations:
        a = scale_per_sample(a)
    return get_ste(self.options.activation_ste)(a)


SIGN_ONLY = BinaryOptions(
    clamp=False,
    standardize=False,
    activation_ste="identity",
    alpha="none",
    scale_activations=False,
)


def step_runner(
    binary: bool,
    batch: int,
    *,
    autograd_scaling: bool = False,
    compile_model: bool = False,
    compiled_kernels: bool = False,
    options: BinaryOptions | None = None,
):
    """A callable that runs one SGD train step and returns its images/s."""
    torch.manual_seed(0)
    model = create_model(
        "resnet20", num_classes=10, in_channels=3, image_size=32, binary=binary, options=options
    )
    if binary:
        set_tau(model, 0.9)
    if compiled_kernels:
        use_compiled_kernels(model)
    if autograd_scaling:
        for _, layer in binary_layers(model):
            layer.binary_input = types.MethodType(_autograd_binary_input, layer)  # type: ignore[method-assign]
    model.train()
    forward = torch.compile(model) if compile_model else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()  # warm-up: allocator, oneDNN primitive caches
    return lambda: batch / timed(step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=30, help="steps per variant")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile both models (inductor)"
    )
    args = parser.parse_args()
    runs = {
        "ReCU, eager backward": step_runner(True, args.batch, compile_model=args.compile),
        "plain convs": step_runner(False, args.batch, compile_model=args.compile),
    }
    if not args.compile:
        runs["ReCU, compiled backward (default)"] = step_runner(
            True, args.batch, compiled_kernels=True
        )
        runs["ReCU (autograd activation path)"] = step_runner(
            True, args.batch, autograd_scaling=True
        )
        runs["sign only (floor: no ReCU maths)"] = step_runner(True, args.batch, options=SIGN_ONLY)
    results = interleaved(runs, args.rounds)
    plain = results["plain convs"]
    mode = "torch.compile (inductor)" if args.compile else "eager"
    print(f"# binarisation overhead, {mode}, batch {args.batch}, {args.rounds} steps each")
    print(f"# {environment()}")
    for name, values in results.items():
        print(
            f"{name:34s} median {median(values):7.1f} img/s  (min {min(values):.1f}, "
            f"max {max(values):.1f})  ratio to plain {median(values) / median(plain):.3f}"
        )
    print("goal: ReCU / plain >= 0.95")


if __name__ == "__main__":
    main()
