"""Layer 1 of the Ray code: the per-worker training function.

Every Ray Train worker runs recu_core's ``train`` (distributed data parallel through the
process group Ray set up), resuming from the job's newest stored checkpoint. Rank 0 adds
two things: the ``EpochRecorder`` callback (each epoch's rows, fenced by the lease) and a
``StopWatch`` (a cancelled or lost job stops before its next step). The database, not
Ray's storage, is the source of truth, so a re-claimed job resumes whichever worker
process runs it. The lease is renewed by the worker loop's heartbeat alone. Every
database read at the start (the job's state, the checkpoint) is retried through an
outage for up to a lease, as rank 0's writes are.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import torch

from recu_core.paths import confined_root
from recu_core.settings import DataSettings
from recu_core.train import EpochReport, TrainingStoppedError, train
from recu_db import queue, reads, results
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.queue import Lease
from recu_db.retry import retry_transient
from recu_db.states import JobState
from workers import upstream
from workers.recorder import EpochRecorder
from workers.stops import JobStoppedError, StopWatch

log = logging.getLogger("recu.worker")


@dataclass(frozen=True)
class RankJob:
    """What each Ray Train worker is handed: the lease (with its typed spec), where the
    results go, and how long a write may be retried (the lease's duration)."""

    lease: Lease
    database_url: str
    lease_s: float


@contextlib.contextmanager
def _database(url: str) -> Iterator[queue.Db]:
    engine = make_engine(url)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


def latest_checkpoint(db: queue.Db, job_id: int, workdir: Path) -> Path | None:
    """The newest stored checkpoint whose bytes match their stored sha256, written to
    ``workdir``; a checkpoint that fails the check is skipped (the next older is tried)."""
    with db() as session:
        stored = reads.job_checkpoints(session, job_id)
    path = workdir / "resume.safetensors"
    for ckpt in reversed(stored):
        if upstream.write_checkpoint(db, ckpt, path):
            return path
        log.warning("checkpoint %d of job %d fails its sha256 check; skipped", ckpt.id, job_id)
    return None


def train_loop_per_worker(config: dict[str, RankJob]) -> None:
    """Ray Train's per-worker function (``config["job"]``: what this rank runs)."""
    job = config["job"]
    run_training(
        job.lease,
        database_url=job.database_url,
        lease_s=job.lease_s,
        rank=ray.train.get_context().get_world_rank(),
        report=ray.train.report,
    )


def run_training(
    lease: Lease,
    *,
    database_url: str,
    lease_s: float,
    rank: int,
    report: Callable[[dict[str, Any]], None],
) -> None:
    """Train the leased job on this process (one rank of it), record rank 0's epochs and
    hand each epoch's metrics to ``report`` (Ray Train's or Tune's). Raises
    JobStoppedError when the job was cancelled or is no longer ours."""
    spec = lease.job
    if spec.dataset.root is not None:  # the API checked it too; the worker's data_dir rules
        confined_root(spec.dataset.root, DataSettings().data_dir)
    per_worker = spec.resources.per_worker
    config = spec.train_config.model_copy(
        update={"device": "cuda" if "GPU" in per_worker else "cpu"}
    )
    torch.set_num_threads(max(1, int(per_worker["CPU"])))  # the CPUs this worker reserved

    def to_ray(epoch: EpochReport) -> None:
        report({**epoch.metrics, "epoch": epoch.epoch})

    with _database(database_url) as db, contextlib.ExitStack() as stack:
        callbacks: list[Callable[[EpochReport], None]] = [to_ray]
        watch = None
        on_start = None
        if rank == 0:  # a start in a database outage waits for it as long as a write would
            state = retry_transient(lambda: queue.state_if_ours(db, lease), seconds=lease_s)
            if state != JobState.RUNNING:
                raise JobStoppedError(f"job {lease.job_id} was cancelled or re-claimed")
            recorder = EpochRecorder(db, lease, spec.checkpoint, retry_s=lease_s)
            callbacks.insert(0, recorder)
            on_start = recorder.record_manifest
            watch = stack.enter_context(StopWatch(db, lease))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        resume_from = retry_transient(  # each try writes the file afresh
            lambda: latest_checkpoint(db, lease.job_id, tmp), seconds=lease_s
        )
        start = None
        if resume_from is None:  # a resumed chained job has its own weights already
            start = retry_transient(lambda: upstream.init_weights(db, spec, tmp), seconds=lease_s)
        teacher = retry_transient(lambda: upstream.teacher(db, spec, tmp), seconds=lease_s)
        lines = [taken.line for taken in (start, teacher) if taken is not None]
        if rank == 0 and lines:
            retry_transient(lambda: results.append_logs(db, lease, lines), seconds=lease_s)
        try:
            train(
                config,
                callbacks=callbacks,
                resume_from=resume_from,
                should_stop=watch.requested if watch else None,
                on_start=on_start,
                init_weights=None if start is None else start.path,
                distill=None if teacher is None else teacher.distillation,
            )
        except TrainingStoppedError as err:
            reason = watch.reason if watch else None
            raise JobStoppedError(f"job {lease.job_id}: {reason or 'stopped'}; {err}") from err
