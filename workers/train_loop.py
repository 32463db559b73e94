"""Layer 1 of the Ray code: the per-worker training function.

Every Ray Train worker runs recu_core's ``train`` (distributed data parallel through the
process group Ray set up). Rank 0 writes each epoch's metrics, telemetry, log line and,
per the job's checkpoint policy, a checkpoint to the database, fenced by the job's
lease: the database, not Ray's storage, is the source of truth, so a re-claimed job
resumes from its newest stored checkpoint whichever worker process runs it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import ray.train
import torch

from recu_core.checkpoint import checkpoint_to_bytes
from recu_core.config import TrainConfig
from recu_core.paths import confined_root
from recu_core.settings import Settings
from recu_core.train import EpochReport, train
from recu_db import queue, reads, results
from recu_db.demand import per_worker_resources
from recu_db.engine import make_engine, make_read_sessionmaker, make_sessionmaker
from recu_db.queue import Lease
from recu_db.retry import retry_transient
from recu_db.states import JobState

log = logging.getLogger("recu.worker")
T = TypeVar("T")


class LeaseLostError(RuntimeError):
    """The job was re-claimed, finished or cancelled: stop writing, stop training."""


def _latest_checkpoint(database_url: str, job_id: int, workdir: Path) -> Path | None:
    """The newest stored checkpoint whose bytes match their stored sha256, written to
    ``workdir``; a checkpoint that fails the check is skipped (the next older is tried)."""
    engine = make_engine(database_url)
    try:
        db = make_read_sessionmaker(engine)
        with db() as session:
            stored = reads.job_checkpoints(session, job_id)
        path = workdir / "resume.safetensors"
        for ckpt in reversed(stored):
            digest = hashlib.sha256()
            with open(path, "wb") as f:
                for chunk in results.iter_checkpoint_bytes(db, ckpt.id):
                    digest.update(chunk)
                    f.write(chunk)
            if digest.hexdigest() == ckpt.sha256:
                return path
            log.warning("checkpoint %d of job %d fails its sha256 check; skipped", ckpt.id, job_id)
        return None
    finally:
        engine.dispose()


def train_loop_per_worker(job: dict[str, Any]) -> None:
    """Ray Train's per-worker function: ``job`` holds the lease, database URL and lease_s."""
    run_training(
        Lease(**job["lease"]),
        database_url=job["database_url"],
        lease_s=job["lease_s"],
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
    """Train the leased job on this process (one rank of it), write rank 0's results to
    the database and hand each epoch's metrics to ``report`` (Ray Train's or Tune's)."""
    spec = lease.spec
    config = TrainConfig.model_validate(
        {k: v for k, v in spec.items() if k in TrainConfig.model_fields}
    )
    if config.dataset.root is not None:  # the API checked it too; the worker's data_dir rules
        confined_root(config.dataset.root, Settings().data_dir)
    per_worker = per_worker_resources(spec)
    config = config.model_copy(update={"device": "cuda" if "GPU" in per_worker else "cpu"})
    torch.set_num_threads(max(1, int(per_worker["CPU"])))  # the CPUs this worker reserved
    every, keep = spec["checkpoint"]["every_epochs"], spec["checkpoint"]["keep"]
    engine = make_engine(database_url)
    db = make_sessionmaker(engine)

    def durable(write: Callable[[], T]) -> T:
        """``write()``, retried through a database outage for as long as the lease lasts
        (a fenced write is safe to retry; an ended lease stops the job)."""
        return retry_transient(write, seconds=lease_s)

    announced: list[bool] = []  # the loader line goes with the first epoch's log

    def on_epoch(epoch_report: EpochReport) -> None:
        m, epoch = epoch_report.metrics, epoch_report.epoch
        if rank == 0:
            lines = [f"data loader: {epoch_report.loader}"] if not announced else []
            lines.append(
                f"epoch {epoch}/{epoch_report.total_epochs} tau {m['tau']:.4f} lr {m['lr']:.4f} "
                f"train loss {m['train_loss']:.4f} acc {m['train_acc']:.4f} "
                f"test acc {m['test_acc']:.4f} best {m['best_test_acc']:.4f} "
                f"({m['images_per_s']:.0f} img/s)"
            )
            written = (
                durable(lambda: queue.record_epoch(db, lease, epoch, m))
                and durable(
                    lambda: results.record_telemetry(db, lease, epoch, epoch_report.telemetry)
                )
                and durable(lambda: results.append_logs(db, lease, lines))
            )
            announced.append(True)
            due = epoch % every == 0 or epoch == epoch_report.total_epochs
            if written and (due or epoch_report.is_best):  # the best epoch's is always kept
                data = checkpoint_to_bytes(
                    epoch_report.model, epoch_report.optimizer, epoch_report.manifest()
                )
                best_epoch = int(m["best_epoch"])
                stored = durable(
                    lambda: results.store_checkpoint(
                        db, lease, epoch, m, io.BytesIO(data), keep=keep, best_epoch=best_epoch
                    )
                )
                written = stored is not None
            state = durable(lambda: queue.heartbeat(db, lease, lease_s=lease_s))
            if not written or state != JobState.RUNNING:
                raise LeaseLostError(f"job {lease.job_id} is no longer ours to run ({state})")
        report({**m, "epoch": epoch})

    if (
        rank == 0
        and durable(lambda: queue.heartbeat(db, lease, lease_s=lease_s)) != JobState.RUNNING
    ):
        raise LeaseLostError(f"job {lease.job_id} was cancelled or re-claimed before it started")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            resume = _latest_checkpoint(database_url, lease.job_id, Path(tmp))
            train(config, callbacks=[on_epoch], resume_from=resume)
    finally:
        engine.dispose()
