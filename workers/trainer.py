"""Layer 2 of the Ray code: the driver that runs one claimed job as a TorchTrainer."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from recu_db.queue import Lease
from workers.train_loop import train_loop_per_worker


def run_job(
    lease: Lease, *, database_url: str, lease_s: float, runs_dir: Path, max_failures: int
) -> None:
    """Train the job on Ray Train; returns when it succeeded, raises when it failed."""
    resources = lease.spec.get("resources", {})
    use_gpu = bool(resources.get("use_gpu"))
    per_worker = {"CPU": float(resources.get("cpus_per_worker", 1.0))}
    if use_gpu:
        per_worker["GPU"] = float(max(1, resources.get("gpus_per_worker", 1)))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "lease": dataclasses.asdict(lease),
            "database_url": database_url,
            "lease_s": lease_s,
        },
        scaling_config=ScalingConfig(
            num_workers=int(resources.get("num_workers", 1)),
            use_gpu=use_gpu,
            resources_per_worker=per_worker,
        ),
        run_config=RunConfig(  # type: ignore[call-arg]  # mypy sees Train V1's RunConfig
            name=f"job-{lease.job_id}",
            storage_path=str(runs_dir.resolve()),
            failure_config=FailureConfig(max_failures=max_failures),
            worker_runtime_env={
                "env_vars": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
            },
        ),
    )
    trainer.fit()
