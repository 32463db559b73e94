"""Rank 0's training callback: each ``EpochReport`` becomes fenced database rows.

At the start: the attempt's reproducibility manifest. Per epoch: the metrics row, the
telemetry row and the log lines; a checkpoint when the job's policy makes the epoch due,
and always for the best epoch so far (pruning keeps it).
Every write is fenced by the lease and retried through a database outage for as long as
the lease lasts; a write that is fenced off (the job was re-claimed, finished or
cancelled) raises JobStoppedError.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TypeVar

from recu_core.checkpoint import checkpoint_to_bytes
from recu_core.jobspec import CheckpointPolicy
from recu_core.manifest import RunManifest
from recu_core.text import percent
from recu_core.train import EpochReport
from recu_db import queue, results
from recu_db.queue import Lease
from recu_db.retry import retry_transient
from workers.stops import JobStoppedError

T = TypeVar("T")


def epoch_line(report: EpochReport) -> str:
    """The log line of one epoch."""
    m = report.metrics
    return (
        f"epoch {report.epoch}/{report.total_epochs} tau {m['tau']:.4f} lr {m['lr']:.4f} "
        f"train loss {m['train_loss']:.4f} acc {percent(m['train_acc'])} "
        f"test acc {percent(m['test_acc'])} best {percent(m['best_test_acc'])} "
        f"({m['images_per_s']:.0f} img/s)"
    )


class EpochRecorder:
    """Writes each epoch of the leased job (call it on rank 0 only)."""

    def __init__(
        self, db: queue.Db, lease: Lease, policy: CheckpointPolicy, *, retry_s: float
    ) -> None:
        self.db, self.lease, self.policy, self.retry_s = db, lease, policy, retry_s
        self._announced = False  # the loader line opens the attempt's log

    def _durable(self, write: Callable[[], T]) -> T:
        return retry_transient(write, seconds=self.retry_s)

    def record_manifest(self, manifest: RunManifest) -> None:
        """Store the attempt's reproducibility manifest (``train``'s ``on_start``)."""
        document = manifest.model_dump(mode="json")
        if not self._durable(lambda: results.record_manifest(self.db, self.lease, document)):
            raise JobStoppedError(f"job {self.lease.job_id} is no longer ours to run")

    def __call__(self, report: EpochReport) -> None:
        db, lease, epoch, m = self.db, self.lease, report.epoch, report.metrics
        lines = [] if self._announced else [f"data loader: {report.loader}"]
        lines.append(epoch_line(report))
        written = (
            self._durable(lambda: queue.record_epoch(db, lease, epoch, m))
            and self._durable(lambda: results.record_telemetry(db, lease, epoch, report.telemetry))
            and self._durable(lambda: results.append_logs(db, lease, lines))
        )
        self._announced = True
        due = epoch % self.policy.every_epochs == 0 or epoch == report.total_epochs
        if written and (due or report.is_best):
            data = checkpoint_to_bytes(report.model, report.optimizer, report.manifest())
            stored = self._durable(
                lambda: results.store_checkpoint(
                    db,
                    lease,
                    epoch,
                    m,
                    io.BytesIO(data),
                    keep=self.policy.keep,
                    best_epoch=int(m["best_epoch"]),
                )
            )
            written = stored is not None
        if not written:
            raise JobStoppedError(f"job {lease.job_id} is no longer ours to run")
