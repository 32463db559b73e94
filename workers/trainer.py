"""Layer 2 of the Ray code: the driver that runs one claimed job as a TorchTrainer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2.api.callback import UserCallback

from recu_db.demand import num_workers, per_worker_resources
from recu_db.queue import Lease
from workers.train_loop import train_loop_per_worker


def storage_path(runs_dir: str | Path) -> str:
    """Ray's storage for the runs: a URI (``s3://...``, ``gs://...``) as given, a local
    or shared-filesystem path made absolute (every node must see the same one)."""
    text = str(runs_dir)
    return text if "://" in text else str(Path(text).resolve())


def run_job(
    lease: Lease,
    *,
    database_url: str,
    lease_s: float,
    runs_dir: str | Path,
    max_failures: int,
    name: str | None = None,
    callbacks: Sequence[UserCallback] = (),
) -> None:
    """Train the job on Ray Train; returns when it succeeded, raises when it failed.
    ``name`` (default ``job-{id}``) names the run in ``runs_dir``; ``callbacks`` go to the
    trainer (a sweep's trial passes Tune's report callback)."""
    per_worker = per_worker_resources(lease.spec)
    threads = max(1, int(per_worker["CPU"]))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "lease": dataclasses.asdict(lease),
            "database_url": database_url,
            "lease_s": lease_s,
        },
        scaling_config=ScalingConfig(
            num_workers=num_workers(lease.spec),
            use_gpu="GPU" in per_worker,
            resources_per_worker=per_worker,
        ),
        run_config=RunConfig(  # type: ignore[call-arg]  # mypy sees Train V1's RunConfig
            name=name or f"job-{lease.job_id}",
            callbacks=list(callbacks),  # type: ignore[arg-type]  # V1 stubs, as above
            storage_path=storage_path(runs_dir),
            failure_config=FailureConfig(max_failures=max_failures),
            # torch in each worker uses as many threads as the CPUs it reserved
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
        ),
    )
    trainer.fit()
