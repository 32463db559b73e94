"""Trained networks on the fast 1-bit engine agree with the float model on the whole
CIFAR-10 test split (10,000 images), in float32.

Each model is trained briefly on real CIFAR-10 (a subset of the train split, so that it
has learned something and its activations are not random), exported to ``.bnn`` and run
on the fast engine; the float model runs in eval mode. Printed: both accuracies, the
top-1 agreement over all 10,000 images, a control (on how many images the same float
model, evaluated channels-last, an equally valid float32 order of oneDNN's sums, differs
from itself), and on the first 256 images the largest logit difference between the fast
and reference engines (their integer sums are equal; the float layers between them run
channels-last on the fast engine, which can round the last bit differently). Under the
row, each image where the fast engine and the float model differ: the float model's
top-2 margin and the class of the float64 evaluation of the same binary network.

    make data && .venv/bin/python -m bench.engine_agreement [--models resnet18 vgg_small]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from bench.common import environment
from recu_core.config import DatasetConfig, OptimizerConfig, TrainConfig
from recu_core.data import load_dataset
from recu_core.export.bnn_file import export_model, load_packed_model
from recu_core.train import train


def _normalised(dataset, start: int, stop: int) -> torch.Tensor:
    x = dataset.test_images[start:stop].float() / 255.0
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std).view(1, -1, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def _predictions(model: torch.nn.Module, dataset, batch: int = 500) -> torch.Tensor:
    count = len(dataset.test_labels)
    return torch.cat(
        [model(_normalised(dataset, i, i + batch)).argmax(1) for i in range(0, count, batch)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="cifar10-jpeg", help="Under RECU_DATA_DIR.")
    parser.add_argument("--models", nargs="+", default=["resnet18", "vgg_small"])
    parser.add_argument("--num-train", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    data_cfg = DatasetConfig(name="imagefolder", root=args.root, num_train=args.num_train)
    dataset = load_dataset(data_cfg)
    labels = dataset.test_labels
    print(f"# {environment()}")
    print(
        f"trained {args.epochs} epoch(s) on {len(dataset.train_images)} CIFAR-10 train "
        f"images; evaluated on all {len(labels)} test images, float32"
    )
    print(
        "| model | float top-1 | fast-engine top-1 | top-1 agreement | images that differ | "
        "images where the float model channels-last differs from itself | "
        "max |fast - reference| logit (256 images) | train s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    shape = {"num_classes": 10, "in_channels": 3, "image_size": 32}
    for name in args.models:
        config = TrainConfig(
            model=name,
            dataset=data_cfg,
            epochs=args.epochs,
            batch_size=128,
            optimizer=OptimizerConfig(lr=0.1),
        )
        started = time.perf_counter()
        model = train(config, dataset=dataset).model.cpu().eval()
        seconds = time.perf_counter() - started
        data = export_model(model, config, shape)
        fast = load_packed_model(data, engine="fast")
        reference = load_packed_model(data, engine="reference")
        want, got = _predictions(model, dataset), _predictions(fast, dataset)
        # the control: the same float model in another valid float32 evaluation order
        # (channels-last: oneDNN accumulates in another order), against itself
        other = copy.deepcopy(model).to(memory_format=torch.channels_last)
        control = int((_predictions(other, dataset) != want).sum())
        with torch.no_grad():
            x = _normalised(dataset, 0, 256)
            gap = float((fast(x) - reference(x)).abs().max())
        differ = int((want != got).sum())
        print(
            f"| {name} | {(want == labels).float().mean():.4f} | "
            f"{(got == labels).float().mean():.4f} | {1 - differ / len(labels):.2%} | "
            f"{differ} | {control} | {gap:.1e} | {seconds:.0f} |",
            flush=True,
        )
        for line in _explain(name, model, data, dataset, (want != got).nonzero()):
            print(line, flush=True)


@torch.no_grad()
def _explain(name: str, model, data: bytes, dataset, where: torch.Tensor) -> list[str]:
    """For each image where the engines' top-1 differ: the float model's top-2 margin and
    what the float64 evaluation of the same binary network says (the fast engine in
    float64: exact integer sums, affine steps without float32 rounding)."""
    exact = load_packed_model(data, engine="fast").double()
    lines = []
    for i in where.flatten().tolist():
        x = _normalised(dataset, i, i + 1)
        logits = model(x)[0]
        top = logits.topk(2)
        truth = int(exact(x.double())[0].argmax())
        lines.append(
            f"- {name}, test image {i}: the float model says {int(top.indices[0])} by a "
            f"margin of {float(top.values[0] - top.values[1]):.2e} over "
            f"{int(top.indices[1])}; the float64 evaluation says {truth}"
        )
    return lines


if __name__ == "__main__":
    main()
