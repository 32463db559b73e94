"""Binarisation overhead: ReCU ResNet-20 train-step images/s over the same network
with plain convs, CIFAR shapes (3x32x32), batch 128, CPU. Goal: ratio >= 0.95.

    .venv/bin/python -m bench.binarize_overhead [--steps 8] [--rounds 5]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from bench.common import environment, interleaved, median, timed
from recu_core.layers import set_tau
from recu_core.models import create_model


def step_runner(binary: bool, batch: int, steps: int):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3, image_size=32, binary=binary)
    if binary:
        set_tau(model, 0.9)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))

    def steps_fn() -> None:
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    steps_fn()  # warm-up
    return lambda: batch * steps / timed(steps_fn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    runs = {
        "recu": step_runner(True, args.batch, args.steps),
        "plain": step_runner(False, args.batch, args.steps),
    }
    results = interleaved(runs, args.rounds)
    recu, plain = median(results["recu"]), median(results["plain"])
    print(f"# binarisation overhead  ({environment()})")
    print(f"ReCU ResNet-20 train step   {recu:8.1f} img/s   rounds {results['recu']}")
    print(f"plain ResNet-20 train step  {plain:8.1f} img/s   rounds {results['plain']}")
    ratios = [r / p for r, p in zip(results["recu"], results["plain"], strict=True)]
    print(
        f"ratio ReCU / plain: {recu / plain:.3f} (median of medians); per round "
        f"{[round(r, 3) for r in ratios]}; goal >= 0.95"
    )


if __name__ == "__main__":
    main()
