"""Layer 2 of the Ray code: the driver that runs one claimed job as a TorchTrainer.

Ray Train runs with no retries of its own; ``run_job`` decides (``failures.cause_of``):
a lost worker starts a fresh worker group up to ``max_failures`` times, resuming from the
newest stored checkpoint (a database outage that outlasted rank 0's retries counts as
one: the fresh group waits for the database at its start, under the same lease); an error
of the training code fails the job at once; a stop on request ends it. A run that ends
on an outage raises it, and the worker loop gives the job back to the queue. The worker
group is torn down (its resources freed) in every case.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2.api.callback import UserCallback

from recu_db.queue import Lease
from workers.failures import Cause, cause_of, describe, failure_summary, is_outage
from workers.stops import JobStoppedError
from workers.train_loop import RankJob, train_loop_per_worker

log = logging.getLogger("recu.worker")


class TrainingCodeError(RuntimeError):
    """The job's training code raised (not retried); ``details`` holds its traceback."""

    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.details = details


def storage_path(runs_dir: str | Path) -> str:
    """Ray's storage for the runs: a URI (``s3://...``, ``gs://...``) as given, a local
    or shared-filesystem path made absolute (every node must see the same one)."""
    text = str(runs_dir)
    return text if "://" in text else str(Path(text).resolve())


def _trainer(
    job: RankJob, runs_dir: str | Path, name: str, callbacks: Sequence[UserCallback]
) -> TorchTrainer:
    resources = job.lease.job.resources
    threads = max(1, int(resources.cpus_per_worker))
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(
            num_workers=resources.num_workers,
            use_gpu=resources.use_gpu,
            resources_per_worker=resources.per_worker,
        ),
        run_config=RunConfig(  # type: ignore[call-arg]  # mypy sees Train V1's RunConfig
            name=name,
            callbacks=list(callbacks),  # type: ignore[arg-type]  # V1 stubs, as above
            storage_path=storage_path(runs_dir),
            failure_config=FailureConfig(max_failures=0),  # run_job decides what is retried
            # torch in each worker uses as many threads as the CPUs it reserved
            worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
        ),
    )


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
    """Train the job on Ray Train; returns when it succeeded. Raises JobStoppedError when
    it was stopped on request, TrainingCodeError when its code raised, and the last
    infrastructure error after ``max_failures`` restarts. ``name`` (default ``job-{id}``)
    names the run in ``runs_dir``; ``callbacks`` go to the trainer (a sweep's trial passes
    Tune's report callback)."""
    job = RankJob(lease=lease, database_url=database_url, lease_s=lease_s)
    base = name or f"job-{lease.job_id}"
    for restart in range(max_failures + 1):
        run_name = base if restart == 0 else f"{base}-restart-{restart}"
        try:
            _trainer(job, runs_dir, run_name, callbacks).fit()
            return
        except Exception as err:
            cause = cause_of(err)
            if cause == Cause.STOPPED:
                raise JobStoppedError(f"job {lease.job_id} stopped on request") from err
            if cause == Cause.USER:
                message, details = describe(err)
                raise TrainingCodeError(message, details) from err
            if restart == max_failures:
                raise  # an outage (failures.is_outage) is given back to the queue
            log.warning(
                "job %d: %s (%s); restart %d of %d from the newest checkpoint",
                lease.job_id,
                "the database was out of reach" if is_outage(err) else "a worker was lost",
                failure_summary(err),
                restart + 1,
                max_failures,
            )
