"""The queue consumer: claim jobs that fit, keep their leases alive, run them on Ray.

``concurrency`` slots (threads) share one Ray connection and one database engine; each
claims the next queued job that fits in what the cluster has free (see ``Capacity``), runs
it with Ray Train and records its end. A heartbeat thread renews a job's lease every
lease/3 seconds while it runs; the reaper runs before each claim, so a job whose worker
died is requeued (or failed after its attempts) by whichever worker looks next.
A database outage stops no thread and fails no job: a missed beat is tried again every
half second, an idle slot polls on, a job's end is retried for as long as its lease
lasts, and a run that ends on the outage gives its job back to the queue.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback

import ray
from sqlalchemy.exc import DBAPIError

from recu_core.settings import WorkerSettings
from recu_db import dependencies, queue, results
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.fairshare import ClaimPolicy
from recu_db.queue import Lease
from recu_db.retry import is_transient, retry_transient
from recu_db.states import JobKind, JobState
from workers import cluster_view
from workers.capacity import Capacity
from workers.export import export_kept, run_export
from workers.failures import is_outage
from workers.log_setup import configure_worker_logging
from workers.shutdown import Shutdown
from workers.stops import JobStoppedError
from workers.sweep import run_sweep
from workers.trainer import TrainingCodeError, run_job
from workers.warm_rank import run_warm

log = logging.getLogger("recu.worker")


MISSED_BEAT_RETRY_S = 0.5  # after a missed beat: renew as soon as the database is back


def _heartbeat(db: queue.Db, lease: Lease, lease_s: float, stop: threading.Event) -> None:
    pause = lease_s / 3
    while not stop.wait(pause):
        try:
            if queue.heartbeat(db, lease, lease_s=lease_s) is None:
                return
            pause = lease_s / 3
        except DBAPIError as err:  # out of reach: try again soon, the lease is running out
            if not is_transient(err):
                raise
            log.warning("heartbeat of job %d missed: database unavailable", lease.job_id)
            pause = min(lease_s / 3, MISSED_BEAT_RETRY_S)


def _give_back(
    db: queue.Db, lease: Lease, lease_s: float, err: BaseException, policy: ClaimPolicy
) -> None:
    """A run ended on a database outage: requeue the job (``queue.release``, retried for
    up to a lease while the database is away); if it stays away, the lease lapses and
    the reaper requeues the job once it is back. Either way it costs one attempt, and the
    next one resumes from the newest checkpoint; the job is never failed for it but on
    its last attempt."""
    reason = f"database unavailable ({type(err).__name__})"
    try:
        state = retry_transient(
            lambda: queue.release(db, lease, reason, policy=policy), seconds=lease_s
        )
    except DBAPIError as still:
        if not is_transient(still):
            raise
        log.warning("job %d: database still unavailable; its lease lapses", lease.job_id)
        return
    log.warning("job %d: %s; now %s", lease.job_id, reason, state or "no longer ours")


def claim_policy(settings: WorkerSettings) -> ClaimPolicy:
    """The claim policy of the worker's settings (fair share, wide-job reservations);
    a reservation lapses one lease after the reserving worker's last claim attempt."""
    return ClaimPolicy(
        fair_share=settings.fair_share,
        half_life_s=settings.fair_share_half_life_s,
        cpu_weight=settings.fair_share_cpu_weight,
        age_s=settings.fair_share_age_s or None,
        reserve_after_s=settings.reserve_after_s or None,
        reservation_s=settings.lease_s,
    )


def _claim(
    db: queue.Db, settings: WorkerSettings, capacity: Capacity, policy: ClaimPolicy
) -> Lease | None:
    alive = cluster_view.nodes()
    with capacity.lock:
        queue.reap(db, policy=policy)
        for job_id, state in dependencies.settle(db):
            log.info("job %d: its dependencies settled it: %s", job_id, state.value)
        lease = queue.claim(
            db,
            settings.name,
            lease_s=settings.lease_s,
            free=capacity.free(),
            largest_node=cluster_view.largest_node(alive),
            total=cluster_view.total(alive),
            policy=policy,
        )
        if lease is not None:
            capacity.hold(lease.job_id, (lease.cpus, lease.gpus))
            if lease.kind != JobKind.EXPORT and not warm_path(settings, lease):
                # its trainer's actors need the room the idle warm ranks hold
                capacity.warm.make_room((lease.cpus, lease.gpus))
        return lease


def warm_path(settings: WorkerSettings, lease: Lease) -> bool:
    """Whether the job runs on a warm rank (``workers.warm_rank``): a one-rank training
    job, with warm ranks on."""
    return (
        settings.warm_ranks and lease.kind == JobKind.TRAIN and lease.job.resources.num_workers == 1
    )


def describe(lease: Lease) -> str:
    """A claimed job as the worker's log names it."""
    what = lease.kind.value
    if lease.kind in (JobKind.TRAIN, JobKind.TRIAL):
        job = lease.job
        what = f"{what} {job.model} on {job.dataset.name}, {job.epochs} epochs"
    return f"{what}, attempt {lease.attempt}, {lease.cpus:g} CPU {lease.gpus:g} GPU reserved"


def run_one(
    settings: WorkerSettings,
    db: queue.Db,
    capacity: Capacity,
    shutdown: Shutdown | None = None,
) -> bool:
    """Claim one job that fits and run it to its end; False when none could be claimed.
    ``shutdown``: the worker's stop (a job it hands back ends as the queue's, not here)."""
    policy = claim_policy(settings)  # the same for the claim and the job's end
    lease = _claim(db, settings, capacity, policy)
    if lease is None:
        return False
    log.info("job %d claimed: %s", lease.job_id, describe(lease))
    shutdown = shutdown or Shutdown(db, policy, settings.lease_s)
    if not shutdown.started(lease):  # claimed as the stop came: handed straight back
        shutdown.ended(lease)
        with capacity.releasing(lease.job_id):
            return True
    started = time.monotonic()
    try:
        _run_claimed(settings, db, capacity, lease, policy, shutdown)
    finally:
        shutdown.ended(lease)
    log.info("job %d: worker done with it after %.1f s", lease.job_id, time.monotonic() - started)
    return True


def _run_claimed(
    settings: WorkerSettings,
    db: queue.Db,
    capacity: Capacity,
    lease: Lease,
    policy: ClaimPolicy,
    shutdown: Shutdown,
) -> None:
    with capacity.releasing(lease.job_id):
        stop = threading.Event()
        beat = threading.Thread(
            target=_heartbeat, args=(db, lease, settings.lease_s, stop), daemon=True
        )
        beat.start()
        try:
            state, error, lines, reason = JobState.SUCCEEDED, None, list[str](), ""
            outage: BaseException | None = None
            try:
                if lease.kind == JobKind.EXPORT:
                    run_export(lease, db)
                elif lease.kind == JobKind.SWEEP:
                    run_sweep(
                        lease,
                        database_url=settings.database_url,
                        lease_s=settings.lease_s,
                        runs_dir=settings.runs_dir,
                    )
                elif warm_path(settings, lease):
                    run_warm(
                        lease,
                        capacity.warm,
                        capacity.lock,
                        database_url=settings.database_url,
                        lease_s=settings.lease_s,
                        max_failures=settings.max_failures,
                    )
                else:
                    run_job(
                        lease,
                        database_url=settings.database_url,
                        lease_s=settings.lease_s,
                        runs_dir=settings.runs_dir,
                        max_failures=settings.max_failures,
                    )
                    if lease.kind == JobKind.TRAIN and lease.job.checkpoint.export:
                        export_kept(lease, db)
            except JobStoppedError:  # cancelled (or no longer ours: the fence drops it)
                state, reason = JobState.CANCELLED, "stopped on request"
                lines = ["stopped on request: the job was cancelled"]
            except TrainingCodeError as err:  # the job's own code raised: failed, not retried
                state, error = JobState.FAILED, str(err)
                lines = err.details.splitlines()
            except Exception as err:  # the job failed: record why, and go on with the next
                if is_outage(err):  # not the job's failure: it goes back to the queue
                    outage = err
                state, error = JobState.FAILED, f"{type(err).__name__}: {err}"
                lines = "".join(traceback.format_exception(err)).splitlines()
            if shutdown.handed_back(lease):
                log.info("job %d stopped: handed back to the queue", lease.job_id)
            elif outage is not None:
                _give_back(db, lease, settings.lease_s, outage, policy)
            else:
                _record_end(db, lease, settings.lease_s, state, reason, error, lines, policy)
                if error is None:
                    log.info("job %d %s", lease.job_id, state.value)
                else:
                    log.warning("job %d %s: %s", lease.job_id, state.value, _first_line(error))
        finally:
            stop.set()
            beat.join()


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _record_end(
    db: queue.Db,
    lease: Lease,
    lease_s: float,
    state: JobState,
    reason: str,
    error: str | None,
    lines: list[str],
    policy: ClaimPolicy,
) -> None:
    """The job's end, retried through a database outage for up to a lease (every write is
    fenced); an outage longer than that leaves the job to its lapsing lease: the reaper
    requeues it, and its next attempt resumes from the newest checkpoint (the last epoch's,
    for a job that had ended) and records the end."""
    try:
        if lines:
            retry_transient(lambda: results.append_logs(db, lease, lines), seconds=lease_s)
        retry_transient(
            lambda: queue.finish(db, lease, state, reason=reason, error=error, policy=policy),
            seconds=lease_s,
        )
    except DBAPIError as err:
        if not is_transient(err):
            raise
        log.warning("job %d: its end not recorded, database unavailable", lease.job_id)


def _slot(
    settings: WorkerSettings,
    db: queue.Db,
    capacity: Capacity,
    exit_when_idle: bool,
    shutdown: Shutdown,
) -> None:
    stopping = shutdown.stopping
    while not stopping.is_set():
        try:
            if run_one(settings, db, capacity, shutdown):
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
    the running jobs. Called from the main thread, it handles SIGTERM and SIGINT
    (``workers.shutdown``): the running jobs are handed back to the queue, then it
    returns."""
    configure_worker_logging()
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    # a sweep's results live in the database: no Tune CSV/JSON/TensorBoard files per trial
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False)
    stopping = stopping or threading.Event()
    engine = make_engine(settings.database_url, **settings.pool())
    db = make_sessionmaker(engine)
    shutdown = Shutdown(db, claim_policy(settings), settings.lease_s, stopping)
    restore_signals = (
        shutdown.install() if threading.current_thread() is threading.main_thread() else None
    )
    capacity = Capacity(warm_limit=settings.concurrency)
    log.info(
        "worker %s consuming the queue: %d slot(s), Ray at %s",
        settings.name,
        settings.concurrency,
        settings.ray_address or "a local instance",
    )
    publisher = threading.Thread(  # what the cluster has, for the API's pending reasons
        target=cluster_view.publish_until,
        args=(db, settings.name, capacity, settings.poll_s, stopping),
        name="recu-cluster-view",
    )
    slots = [
        threading.Thread(
            target=_slot,
            args=(settings, db, capacity, exit_when_idle, shutdown),
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
        with capacity.lock:
            capacity.warm.close()
        engine.dispose()
        if restore_signals is not None:
            restore_signals()
