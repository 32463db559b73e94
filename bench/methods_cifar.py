"""Layer options of other BNN methods against ReCU on real CIFAR-10, at a CPU budget.

Each method is a ``BinaryOptions`` setting trained in-process by ``recu_core.train.train``
on the same data, model and seeds:

    ReCU                  the defaults (the paper's layer)
    BiPer                 sign(sin(f w)), f = 20, its regulariser (BiPer's CIFAR-10
                          stage-2 recipe: lr 0.0037, weight decay 1.6e-4, lambda 0.0468)
    ReCU + RSign/RPReLU   ReActNet's learnable sign threshold and RPReLU on ReCU's layer
    two-stage ReCU        stage 1 real weights (weights="real") and binary activations,
                          stage 2 binary both, initialised from stage 1's best weights
                          (``train(config, init_weights=path)``: fresh optimiser and
                          schedule); stage 2 at --stage2-lr-factor of the learning rate
    two-stage BiPer       stage 1 sin(f w) (BiPer's stage-1 recipe: lr 0.021, weight
                          decay 1.6e-3, lambda 0.037), stage 2 sign(sin(f w)) (its
                          stage-2 recipe), as BiPer's run_stg1.sh / run_stg2.sh

One-stage methods train --epochs epochs; two-stage ones --epochs per stage (twice the
time: the table gives epochs and minutes). Best is the best test accuracy over the epochs
(the papers' figure), last the final epoch's; mean ± std (sample) over the seeds. The
first run's time includes torch.compile's one-time build of ReCU's fused kernels (~7 s).
The header says whether recu_core.train calls ``layers.regularization_loss`` (BiPer's
term) and ``layers.set_epoch_progress`` (ReSTE/EDE schedules; no method here needs it).

    make data && .venv/bin/python -m bench.methods_cifar --epochs 30 --num-train 50000 \\
        --seeds 0 1 2 --model resnet20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import recu_core.train as train_module
from bench.common import environment
from recu_core.config import BinaryOptions, DatasetConfig, OptimizerConfig, TrainConfig
from recu_core.data import Dataset, load_dataset
from recu_core.train import EpochReport, train

BIPER_STAGE1 = {"lr": 0.021, "weight_decay": 0.0016, "regularizer": 0.037}
BIPER_STAGE2 = {"lr": 0.0037, "weight_decay": 0.00016, "regularizer": 0.0468}


@dataclass(frozen=True)
class Stage:
    """One training run of a method: its layer options and optimiser overrides."""

    options: BinaryOptions
    lr: float | None = None  # None: the bench's --lr
    weight_decay: float | None = None  # None: the default 5e-4


@dataclass(frozen=True)
class Method:
    name: str
    stages: tuple[Stage, ...]


def methods(stage2_lr: float) -> list[Method]:
    biper = {"weight_binarizer": "biper", "biper_frequency": 20.0}
    reactnet = {"activation_threshold": "rsign", "activation": "rprelu"}
    return [
        Method("ReCU", (Stage(BinaryOptions()),)),
        Method(
            "BiPer",
            (
                Stage(
                    BinaryOptions(**biper, biper_regularizer=BIPER_STAGE2["regularizer"]),
                    BIPER_STAGE2["lr"],
                    BIPER_STAGE2["weight_decay"],
                ),
            ),
        ),
        Method("ReCU + RSign/RPReLU", (Stage(BinaryOptions(**reactnet)),)),
        Method(
            "two-stage ReCU",
            (Stage(BinaryOptions(weights="real")), Stage(BinaryOptions(), stage2_lr)),
        ),
        Method(
            "two-stage BiPer",
            (
                Stage(
                    BinaryOptions(
                        **biper, weights="real", biper_regularizer=BIPER_STAGE1["regularizer"]
                    ),
                    BIPER_STAGE1["lr"],
                    BIPER_STAGE1["weight_decay"],
                ),
                Stage(
                    BinaryOptions(**biper, biper_regularizer=BIPER_STAGE2["regularizer"]),
                    BIPER_STAGE2["lr"],
                    BIPER_STAGE2["weight_decay"],
                ),
            ),
        ),
    ]


@dataclass
class Row:
    best: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _config(args: argparse.Namespace, data: DatasetConfig, stage: Stage, seed: int) -> TrainConfig:
    optimizer: dict[str, Any] = {"lr": stage.lr if stage.lr is not None else args.lr}
    if stage.weight_decay is not None:
        optimizer["weight_decay"] = stage.weight_decay
    return TrainConfig(
        model=args.model,
        dataset=data,
        binary_options=stage.options,
        epochs=args.epochs,
        batch_size=args.batch,
        optimizer=OptimizerConfig(**optimizer),
        seed=seed,
        device=args.device,
    )


def run_method(
    method: Method, args: argparse.Namespace, data: DatasetConfig, dataset: Dataset, seed: int
) -> tuple[float, float, float]:
    """(best test accuracy, last test accuracy, seconds) of ``method`` for one seed."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="methods-cifar-") as tmp:
        best_path = Path(tmp) / "best.safetensors"

        def keep_best(report: EpochReport) -> None:
            if report.is_best:
                report.save_checkpoint(best_path)

        init: Path | None = None
        for i, stage in enumerate(method.stages):
            last_stage = i == len(method.stages) - 1
            result = train(
                _config(args, data, stage, seed),
                dataset=dataset,
                callbacks=() if last_stage else (keep_best,),
                init_weights=init,
            )
            init = best_path
    final = result.final
    return final["best_test_acc"], final["test_acc"], time.perf_counter() - started


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="cifar10-jpeg")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--epochs", type=int, default=10, help="per stage")
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument("--num-test", type=int, default=None, help="default: all 10,000")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--stage2-lr-factor", type=float, default=0.2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", nargs="+", default=None, help="method names to run")
    parser.add_argument("--json", type=Path, default=None, help="Also write results here.")
    args = parser.parse_args()

    data = DatasetConfig(
        name="imagefolder", root=args.root, num_train=args.num_train, num_test=args.num_test
    )
    dataset = load_dataset(data)
    source = Path(train_module.__file__).read_text()
    hooks = {
        name: name in source for name in ("regularization_loss", "set_epoch_progress")
    }  # the two calls the training loop makes for these options
    print(f"# layer options on real CIFAR-10  ({environment()})")
    print(
        f"{args.model}, {len(dataset.train_images)} train / {len(dataset.test_images)} test "
        f"images, {args.epochs} epochs per stage, batch {args.batch}, SGD lr {args.lr} "
        f"(BiPer: its own recipe), seeds {args.seeds}; training loop calls: {hooks}"
    )
    chosen = [
        m for m in methods(args.lr * args.stage2_lr_factor) if not args.only or m.name in args.only
    ]
    rows: dict[str, Row] = {}
    for method in chosen:
        row = rows.setdefault(method.name, Row())
        for seed in args.seeds:
            best, last, seconds = run_method(method, args, data, dataset, seed)
            row.best.append(best)
            row.last.append(last)
            row.seconds.append(seconds)
            print(
                f"  {method.name:22s} seed {seed}: best {best:.4f} last {last:.4f} "
                f"({seconds:.0f} s)",
                flush=True,
            )
    print()
    print("| method | epochs | best top-1 (mean ± std) | last top-1 (mean ± std) | minutes/seed |")
    print("|---|---|---|---|---|")
    for method in chosen:
        row = rows[method.name]
        epochs = " + ".join([str(args.epochs)] * len(method.stages))
        minutes = statistics.mean(row.seconds) / 60
        print(
            f"| {method.name} | {epochs} | {_mean_std(row.best)} | {_mean_std(row.last)} "
            f"| {minutes:.1f} |"
        )
    if args.json:
        payload = {name: row.__dict__ for name, row in rows.items()}
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, **payload}, indent=2))


if __name__ == "__main__":
    main()
