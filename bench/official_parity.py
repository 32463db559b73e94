"""recu_core's training against a reference of the official ReCU training, side by side.

    make data && .venv/bin/python -m bench.official_parity [--seeds 0 1 2] [--epochs 10]

Real CIFAR-10 (the shared JPEG archive): the first --num-train training images of a fixed
shuffle, the whole 10,000-image test split. For each seed, both trainings start from the
same weights (recu_core's initialisation, copied into the reference) and see the same
batches (the device loader seeded by the seed: random crop pad 4 + flip), under the
official CIFAR recipe (``cifar10_resnet20`` shortened to --epochs: SGD momentum 0.9,
lr 0.1, the 5-epoch warm-up then cosine, weight decay 5e-4, tau 0.85 -> 0.99):

    recu      recu_core.train.train (the trainer the service runs)
    official  bench/official_reference.py: the official layer, ResNet-20 and epoch loop
              (Q via .item() per layer per step, torch.sign, autograd through the
              activation scaling, PyTorch's CosineAnnealingLR, per-step .item() metrics)

Prints per seed the best and last test accuracy of both and their training images/s,
then mean +- std over seeds and the throughput ratio recu / official. Seeds run one
after the other (recu, then official), so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import functools
import statistics

import torch

from bench.common import environment
from bench.official_reference import REFERENCES, copy_state, official_training
from recu_core.config import TrainConfig
from recu_core.data import ImageDataset, load_dataset, make_loader
from recu_core.train import build_model, train


def _config(args: argparse.Namespace, seed: int) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "recipe": "cifar10_resnet20",
            "dataset": {
                "name": "imagefolder",
                "root": "cifar10-jpeg",
                "num_train": args.num_train,
                "loader": "memory",
            },
            "epochs": args.epochs,
            "seed": seed,
            "device": "cpu",
        }
    )


def _run_seed(args: argparse.Namespace, data: ImageDataset, seed: int) -> dict[str, float]:
    config = _config(args, seed)
    torch.manual_seed(config.seed)  # what train() does before it builds the model
    initial = build_model(config, data)
    reference = REFERENCES["resnet20"]()
    copy_state(initial, reference)

    ours = train(config, dataset=data)
    ours_ips = statistics.median(m["images_per_s"] for m in ours.history)

    train_loader = make_loader(data, "train", batch_size=config.batch_size, seed=seed)
    test_loader = make_loader(data, "test", batch_size=128)
    official = official_training(
        reference,
        train_loader.epoch,
        lambda: test_loader.epoch(0),
        epochs=config.epochs,
        lr=config.optimizer.lr,
        momentum=config.optimizer.momentum,
        weight_decay=config.optimizer.weight_decay,
        tau_min=config.tau.tau_s,
        tau_max=config.tau.tau_e,
    )
    row = {
        "recu_best": ours.final["best_test_acc"],
        "recu_last": ours.final["test_acc"],
        "official_best": official["best_test_acc"][-1],
        "official_last": official["test_acc"][-1],
        "recu_ips": ours_ips,
        "official_ips": statistics.median(official["images_per_s"]),
    }
    lrs_equal = all(
        abs(a - b) < 1e-12
        for a, b in zip((m["lr"] for m in ours.history), official["lr"], strict=True)
    )
    print(
        f"seed {seed}: recu best {row['recu_best']:.4f} last {row['recu_last']:.4f} "
        f"({row['recu_ips']:.0f} img/s) | official best {row['official_best']:.4f} "
        f"last {row['official_last']:.4f} ({row['official_ips']:.0f} img/s) | "
        f"lr schedules equal: {lrs_equal}",
        flush=True,
    )
    return row


def _throughput(args: argparse.Namespace, data: ImageDataset) -> None:
    """Interleaved one-epoch runs of both trainings (same init, same batches); images/s
    over each epoch's wall time, evaluation on the test split included in both."""
    spec = _config(args, 0).model_dump(mode="json")
    config = TrainConfig.model_validate(
        spec | {"epochs": 1, "optimizer": {**spec["optimizer"], "warmup_epochs": 0.0}}
    )
    train(config, dataset=data)  # compile the fused kernels once, outside the timing
    ratios = []
    for r in range(args.throughput_rounds):
        ours = train(config, dataset=data).final["images_per_s"]
        torch.manual_seed(0)
        reference = REFERENCES["resnet20"]()
        copy_state(build_model(config, data), reference)
        loader = make_loader(data, "train", batch_size=config.batch_size, seed=0)
        test = make_loader(data, "test", batch_size=128)
        test_batches = functools.partial(test.epoch, 0)
        official = official_training(
            reference,
            loader.epoch,
            test_batches,
            epochs=1,
            lr=0.1,
            momentum=0.9,
            weight_decay=5e-4,
            tau_min=0.85,
            tau_max=0.99,
        )["images_per_s"][0]
        ratios.append(ours / official)
        print(
            f"round {r}: recu {ours:.0f} img/s, official {official:.0f} img/s, "
            f"ratio {ours / official:.2f}",
            flush=True,
        )
    print(f"median ratio recu / official: {statistics.median(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument(
        "--throughput-rounds",
        type=int,
        default=0,
        help="Instead of the seeds: R interleaved rounds of one epoch each (recu, official).",
    )
    args = parser.parse_args()
    print(environment())
    data = load_dataset(_config(args, 0).dataset)
    assert isinstance(data, ImageDataset)
    print(
        f"CIFAR-10: {data.train_labels.shape[0]} train, {data.test_labels.shape[0]} test; "
        f"ResNet-20, {args.epochs} epochs, batch 256, official recipe",
        flush=True,
    )
    if args.throughput_rounds:
        _throughput(args, data)
        return
    rows = [_run_seed(args, data, seed) for seed in args.seeds]

    def summary(key: str) -> str:
        values = [r[key] for r in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} +- {spread:.4f}"

    print("| | best test acc | last test acc | train img/s |")
    print("|---|---|---|---|")
    for who in ("recu", "official"):
        print(
            f"| {who} | {summary(who + '_best')} | {summary(who + '_last')} | "
            f"{statistics.mean(r[who + '_ips'] for r in rows):.0f} |"
        )
    ratios = [r["recu_ips"] / r["official_ips"] for r in rows]
    print(
        f"throughput ratio recu / official: {statistics.mean(ratios):.2f} "
        f"(per seed {', '.join(f'{x:.2f}' for x in ratios)})"
    )


if __name__ == "__main__":
    main()
