"""Accuracy on real CIFAR-10 at a fixed short budget: ReCU versus clamp-off (a plain
standardised BNN) versus full precision, same seeds, same data, same recipe.

The paper's ablation direction: full precision > ReCU > clamp-off.

    make data && .venv/bin/python -m bench.accuracy_cifar [--epochs 5] [--num-train 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench.common import environment
from recu_core.config import BinaryOptions, DatasetConfig, OptimizerConfig, TrainConfig
from recu_core.data import load_dataset
from recu_core.train import train

VARIANTS = {
    "ReCU (clamp on)": {"binary": True, "binary_options": BinaryOptions()},
    "clamp off (plain BNN)": {"binary": True, "binary_options": BinaryOptions(clamp=False)},
    "full precision": {"binary": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="cifar10-jpeg")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--json", type=Path, default=None, help="Also write results here.")
    args = parser.parse_args()

    data_cfg = DatasetConfig(name="imagefolder", root=args.root, num_train=args.num_train)
    dataset = load_dataset(data_cfg)
    print(f"# accuracy on real CIFAR-10  ({environment()})")
    print(
        f"{args.model}, {len(dataset.train_images)} train / {len(dataset.test_images)} test "
        f"images, {args.epochs} epochs, batch {args.batch}, SGD lr {args.lr} cosine, "
        f"seeds {args.seeds}"
    )
    rows = {}
    for name, overrides in VARIANTS.items():
        accs = []
        started = time.perf_counter()
        for seed in args.seeds:
            config = TrainConfig(
                model=args.model,
                dataset=data_cfg,
                epochs=args.epochs,
                batch_size=args.batch,
                optimizer=OptimizerConfig(lr=args.lr),
                seed=seed,
                **overrides,
            )
            result = train(config, dataset=dataset)
            accs.append(result.final["test_acc"])
            print(f"  {name:24s} seed {seed}: {result.final['test_acc']:.4f}", flush=True)
        mean = statistics.mean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        rows[name] = {
            "accs": accs,
            "mean": mean,
            "std": std,
            "minutes": (time.perf_counter() - started) / 60,
        }
    print("| variant | top-1 (mean ± std) | minutes |")
    print("|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} | {row['minutes']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
