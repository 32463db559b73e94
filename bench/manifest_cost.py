"""What recording a run's reproducibility manifest costs at the start of each attempt, on
real data: the source-file listing, the decoded-content hash, and the whole
``collect_manifest`` (git, versions, device), median of ``--rounds``. Prints seconds;
never a pass/fail test. Needs `make data` (CIFAR-10 as JPEG folders).

    .venv/bin/python -m bench.manifest_cost [--root cifar10-jpeg] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from bench.common import environment
from recu_core.config import DatasetConfig, TrainConfig
from recu_core.data import load_dataset
from recu_core.data.base import ImageDataset
from recu_core.data.identity import content_sha256, dataset_identity
from recu_core.provenance import collect_manifest
from recu_core.settings import DataSettings


def _median_s(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _report(cfg: DatasetConfig, settings: DataSettings, rounds: int) -> None:
    dataset = load_dataset(cfg, settings=settings)
    config = TrainConfig(dataset=cfg)
    identity = dataset_identity(cfg, dataset, settings)
    print(f"{cfg.loader}: {identity.files} files, {identity.train_examples} train examples")
    listed = _median_s(lambda: dataset_identity(cfg, dataset, settings), rounds)
    print(f"  identity (listing + content): {listed:.3f} s")
    if isinstance(dataset, ImageDataset):
        tensors = (
            dataset.train_images,
            dataset.train_labels,
            dataset.test_images,
            dataset.test_labels,
        )
        print(f"  content hash alone: {_median_s(lambda: content_sha256(tensors), rounds):.3f} s")
    cpu = torch.device("cpu")
    whole = _median_s(
        lambda: collect_manifest(config, dataset, cpu, world_size=1, settings=settings), rounds
    )
    print(f"  whole manifest: {whole:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="cifar10-jpeg")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = DataSettings()
    print(environment())
    in_memory = DatasetConfig(name="imagefolder", root=args.root, loader="memory")
    streamed = DatasetConfig(name="imagefolder", root=args.root, loader="streaming", image_size=32)
    for cfg in (in_memory, streamed):
        _report(cfg, settings, args.rounds)


if __name__ == "__main__":
    main()
