"""The queue consumer: claim jobs that fit, keep their leases alive, run them on Ray.

``concurrency`` slots (threads) share one Ray connection and one database engine; each
claims the next queued job that fits in what the cluster has free (see ``Capacity``), runs
it with Ray Train and records its end. A heartbeat thread renews a job's lease every
lease/3 seconds while it runs; the reaper runs before each claim, so a job whose worker
died is requeued (or failed after its attempts) by whichever worker looks next.
A database outage stops no thread: a missed beat is tried again at the next one, an idle
slot polls on, and a job's end is retried for as long as its lease lasts.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback

import ray
from sqlalchemy.exc import DBAPIError

from recu_core.settings import WorkerSettings
from recu_db import queue, results
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.queue import Lease
from recu_db.retry import is_transient, retry_transient
from recu_db.states import JobKind, JobState
from workers import cluster_view
from workers.capacity import Capacity
from workers.stops import JobStoppedError
from workers.sweep import run_sweep
from workers.trainer import TrainingCodeError, run_job

log = logging.getLogger("recu.worker")


def _heartbeat(db: queue.Db, lease: Lease, lease_s: float, stop: threading.Event) -> None:
    while not stop.wait(lease_s / 3):
        try:
            if queue.heartbeat(db, lease, lease_s=lease_s) is None:
                return
        except DBAPIError as err:  # out of reach: the next beat tries again
            if not is_transient(err):
                raise
            log.warning("heartbeat of job %d missed: database unavailable", lease.job_id)


def _claim(db: queue.Db, settings: WorkerSettings, capacity: Capacity) -> Lease | None:
    with capacity.lock:
        queue.reap(db)
        lease = queue.claim(
            db,
            settings.name,
            lease_s=settings.lease_s,
            free=capacity.free(),
            largest_node=cluster_view.largest_node(),
        )
        if lease is not None:
            capacity.hold(lease.job_id, (lease.cpus, lease.gpus))
        return lease


def run_one(settings: WorkerSettings, db: queue.Db, capacity: Capacity) -> bool:
    """Claim one job that fits and run it to its end; False when none could be claimed."""
    lease = _claim(db, settings, capacity)
    if lease is None:
        return False
    with capacity.releasing(lease.job_id):
        stop = threading.Event()
        beat = threading.Thread(
            target=_heartbeat, args=(db, lease, settings.lease_s, stop), daemon=True
        )
        beat.start()
        try:
            state, error, lines, reason = JobState.SUCCEEDED, None, list[str](), ""
            try:
                if lease.kind == JobKind.SWEEP:
                    run_sweep(
                        lease,
                        database_url=settings.database_url,
                        lease_s=settings.lease_s,
                        runs_dir=settings.runs_dir,
                    )
                else:
                    run_job(
                        lease,
                        database_url=settings.database_url,
                        lease_s=settings.lease_s,
                        runs_dir=settings.runs_dir,
                        max_failures=settings.max_failures,
                    )
            except JobStoppedError:  # cancelled (or no longer ours: the fence drops it)
                state, reason = JobState.CANCELLED, "stopped on request"
                lines = ["stopped on request: the job was cancelled"]
            except TrainingCodeError as err:  # the job's own code raised: failed, not retried
                state, error = JobState.FAILED, str(err)
                lines = err.details.splitlines()
            except Exception as err:  # the job failed: record why, and go on with the next
                state, error = JobState.FAILED, f"{type(err).__name__}: {err}"
                lines = "".join(traceback.format_exception(err)).splitlines()
            # the end is recorded even across a database outage, for as long as the lease lasts
            if lines:
                retry_transient(
                    lambda: results.append_logs(db, lease, lines), seconds=settings.lease_s
                )
            retry_transient(
                lambda: queue.finish(db, lease, state, reason=reason, error=error),
                seconds=settings.lease_s,
            )
        finally:
            stop.set()
            beat.join()
    return True


def _slot(
    settings: WorkerSettings,
    db: queue.Db,
    capacity: Capacity,
    exit_when_idle: bool,
    stopping: threading.Event,
) -> None:
    while not stopping.is_set():
        try:
            if run_one(settings, db, capacity):
                continue
        except DBAPIError as err:  # out of reach: poll on until it is back
            if not is_transient(err):
                raise
            log.warning("database unavailable (%s); polling on", type(err.orig).__name__)
            stopping.wait(settings.poll_s)
            continue
        if exit_when_idle and capacity.running() == 0:
            return
        stopping.wait(settings.poll_s)


def serve(
    settings: WorkerSettings,
    *,
    exit_when_idle: bool = False,
    stopping: threading.Event | None = None,
) -> None:
    """Connect to Ray (RAY_ADDRESS, or a local instance) and consume the queue with
    ``settings.concurrency`` jobs at most at once. With ``exit_when_idle`` it returns once
    nothing it could claim is queued and none of its jobs runs; ``stopping`` ends it after
    the running jobs."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    # a sweep's results live in the database: no Tune CSV/JSON/TensorBoard files per trial
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False)
    stopping = stopping or threading.Event()
    engine = make_engine(settings.database_url, **settings.pool())
    db = make_sessionmaker(engine)
    capacity = Capacity()
    publisher = threading.Thread(  # what the cluster has, for the API's pending reasons
        target=cluster_view.publish_until,
        args=(db, settings.name, capacity, settings.poll_s, stopping),
        name="recu-cluster-view",
    )
    slots = [
        threading.Thread(
            target=_slot,
            args=(settings, db, capacity, exit_when_idle, stopping),
            name=f"recu-slot-{i}",
        )
        for i in range(settings.concurrency)
    ]
    try:
        publisher.start()
        for slot in slots:
            slot.start()
        for slot in slots:
            slot.join()
    finally:
        stopping.set()
        for slot in slots:
            if slot.is_alive():
                slot.join()
        if publisher.is_alive():
            publisher.join()
        engine.dispose()
