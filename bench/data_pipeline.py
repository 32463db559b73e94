"""Data pipeline: training steps fed by the device loader on real CIFAR-10 (random crop
+ flip on the device) over the same steps fed from pre-made tensors. Goal: >= 0.95.

Also prints the loader alone (augmented images/s) and the decode-once cost: the first
load decodes the JPEGs, later loads read the cached uint8 tensor.

    make data && .venv/bin/python -m bench.data_pipeline [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import torch.nn.functional as F

from bench.common import environment, interleaved, median, timed
from recu_core.config import DatasetConfig
from recu_core.data import DeviceLoader, load_dataset
from recu_core.layers import set_tau
from recu_core.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="cifar10-jpeg")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    cfg = DatasetConfig(name="imagefolder", root=args.root)
    start = time.perf_counter()
    dataset = load_dataset(cfg)
    first_load = time.perf_counter() - start
    start = time.perf_counter()
    dataset = load_dataset(cfg)
    cached_load = time.perf_counter() - start

    loader = DeviceLoader(
        dataset.train_images,
        dataset.train_labels,
        batch_size=args.batch,
        mean=dataset.mean,
        std=dataset.std,
        train=True,
        crop_padding=4,
        flip=True,
        seed=0,
    )
    plain = DeviceLoader(
        dataset.train_images,
        dataset.train_labels,
        batch_size=args.batch,
        mean=dataset.mean,
        std=dataset.std,
        train=False,
    )
    premade = list(itertools.islice(plain.epoch(0), args.steps))

    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    set_tau(model, 0.9)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    epochs = itertools.count()

    def from_loader() -> float:
        batches = loader.epoch(next(epochs))
        elapsed = timed(lambda: [step(x, y) for x, y in itertools.islice(batches, args.steps)])
        return args.batch * args.steps / elapsed

    def from_premade() -> float:
        return args.batch * args.steps / timed(lambda: [step(x, y) for x, y in premade])

    def loader_only() -> float:
        n = len(loader)
        return n * args.batch / timed(lambda: [None for _ in loader.epoch(next(epochs))])

    from_premade()  # warm-up
    results = interleaved({"loader": from_loader, "premade": from_premade}, args.rounds)
    aug = median([loader_only() for _ in range(2)])
    a, b = median(results["loader"]), median(results["premade"])
    print(f"# data pipeline  ({environment()})")
    shape = tuple(dataset.train_images.shape[1:])
    print(f"dataset: {len(dataset.train_images)} train images {shape}")
    print(f"first load (decode or read cache) {first_load:.1f} s, cached {cached_load:.2f} s")
    print(f"augmenting loader alone: {aug:,.0f} img/s (a full 50k epoch in {50_000 / aug:.2f} s)")
    for label, name, value in (("fed by loader", "loader", a), ("on premade", "premade", b)):
        rounds = [round(v, 1) for v in results[name]]
        print(f"train steps {label:14s} {value:8.1f} img/s  rounds {rounds}")
    print(f"ratio loader / premade: {a / b:.3f}; goal >= 0.95")


if __name__ == "__main__":
    main()
