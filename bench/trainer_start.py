"""What a ``TorchTrainer`` costs before any training: the floor of a Train-inside-Tune
sweep trial and of a DDP job's start.

Ray is started once (not counted); then, ``--repeats`` times for each worker count, a
``TorchTrainer`` runs a train function that does nothing but one ``ray.train.report``
(so the time is the controller actor, the worker actors' processes, torch's import in
them, the gloo process group and the teardown), and one that also loads the ``digits``
dataset the way a rank does (``recu_core.data.load_dataset``). Prints the median and the
spread of each.

    .venv/bin/python -m bench.trainer_start [--workers 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import ray
import ray.train
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from bench.common import environment


def _nothing(config: dict[str, Any]) -> None:
    ray.train.report({"epoch": 1})


def _load_data(config: dict[str, Any]) -> None:
    from recu_core.config import DatasetConfig
    from recu_core.data import load_dataset

    load_dataset(DatasetConfig(name="digits"))
    ray.train.report({"epoch": 1})


def _fit(function: Any, workers: int, storage: str, name: str) -> float:
    trainer = TorchTrainer(
        function,
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=name, storage_path=storage),
    )
    started = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# TorchTrainer start to end, nothing to train; {environment()}, Ray {ray.__version__}")
    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
    print("| workers | train function | median s | min - max s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as storage:
        for workers in args.workers:
            for label, function in (("one report", _nothing), ("load digits, report", _load_data)):
                times = [
                    _fit(function, workers, storage, f"w{workers}-{function.__name__}-{i}")
                    for i in range(args.repeats)
                ]
                print(
                    f"| {workers} | {label} | {statistics.median(times):.1f} | "
                    f"{min(times):.1f} - {max(times):.1f} |"
                )
    ray.shutdown()


if __name__ == "__main__":
    main()
