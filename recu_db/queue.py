"""The job queue: submit, claim, heartbeat, fenced writes, finish, cancel, reap.

Each operation is one short transaction. A claim is one UPDATE ... WHERE id = (SELECT ...
FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING (on SQLite the lock comes from BEGIN
IMMEDIATE). Every write after the claim is fenced by (job id, attempt, owner): a worker
whose lease expired and whose job was re-claimed changes 0 rows, and its write is
discarded. Leases are renewed by heartbeat; ``reap`` requeues jobs whose lease expired
(their worker died) until ``max_attempts``, then fails them. ``release`` gives a job
back at once after a transient failure (the same outcome, sooner). Every transition is
recorded in ``job_events``. ``now`` is a parameter everywhere so tests can drive the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from recu_core.jobspec import JobSpec
from recu_core.sweepspec import SweepSpec
from recu_db.models import EpochMetric, Job, JobEvent
from recu_db.specs import InvalidStoredSpecError, parse_spec
from recu_db.states import TERMINAL, JobKind, JobState, check_transition

Db = sessionmaker[Session]
_LIVE = (JobState.RUNNING, JobState.CANCELLING)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Lease:
    """What a worker holds after a claim: the job, parsed once, and the fence of its later
    writes (job id, attempt, owner)."""

    job_id: int
    attempt: int
    owner: str
    spec: JobSpec | SweepSpec
    kind: JobKind = JobKind.TRAIN
    cpus: float = 1.0  # what the job reserves on the cluster (a sweep: all its trials at once)
    gpus: float = 0.0

    @property
    def job(self) -> JobSpec:
        """The spec of a training job or trial."""
        if not isinstance(self.spec, JobSpec):
            raise TypeError(f"job {self.job_id} is a {self.kind}, not a training job")
        return self.spec

    @property
    def sweep(self) -> SweepSpec:
        """The spec of a sweep."""
        if not isinstance(self.spec, SweepSpec):
            raise TypeError(f"job {self.job_id} is a {self.kind}, not a sweep")
        return self.spec


def _event(
    session: Session,
    job_id: int,
    from_state: str | None,
    to_state: str,
    attempt: int,
    reason: str,
    now: datetime,
) -> None:
    session.add(
        JobEvent(
            job_id=job_id,
            at=now,
            from_state=from_state,
            to_state=to_state,
            attempt=attempt,
            reason=reason,
        )
    )


class QueueFullError(Exception):
    """The owner already has ``cap`` jobs and sweeps queued."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"at most {cap} queued jobs and sweeps per user; wait for some to start")
        self.cap = cap


class IdempotencyKeyReusedError(Exception):
    """The owner's idempotency key names an earlier job whose request was another one (a
    different spec, priority or max_attempts, or a job where this is a sweep)."""

    def __init__(self, key: str, job_id: int) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was used for an earlier request with a different "
            f"body (job {job_id}); a retry must repeat the same body, a new request needs "
            "a new key"
        )
        self.key = key
        self.job_id = job_id


def submit(
    db: Db,
    spec: JobSpec | SweepSpec,
    *,
    demand: tuple[float, float] | None = None,
    trials: Sequence[JobSpec] = (),
    priority: int = 0,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
    user_id: int | None = None,
    max_queued: int | None = None,
    now: datetime | None = None,
) -> tuple[Job, bool]:
    """Queue a job (or a sweep: a SweepSpec) for ``user_id``; returns (job, created).
    ``demand`` is the (cpus, gpus) a claim must find free, by default the spec's
    ``resources`` (a sweep's base: one trial at a time); ``trials`` a sweep's trials, added with it
    (queued, never claimed on their own, keyed "0", "1", ... in plan order).
    The same idempotency key of the same owner with the same request (kind, stored spec,
    priority, max_attempts) returns the same job, also under concurrent submits (the
    unique index decides the race); the key with another request raises
    IdempotencyKeyReusedError and stores nothing. ``max_queued`` caps the owner's queued
    jobs and sweeps (QueueFullError); the count and the insert are one serialised
    transaction (BEGIN IMMEDIATE on SQLite, a per-owner advisory lock on PostgreSQL)."""
    if idempotency_key is not None and user_id is None:
        raise ValueError("an idempotency key needs an owner (user_id): keys are per user")
    now = now or utcnow()
    job_spec = spec if isinstance(spec, JobSpec) else spec.base
    cpus, gpus = demand or job_spec.resources.demand
    one = job_spec.resources.per_worker
    job = Job(
        kind=JobKind.TRAIN if isinstance(spec, JobSpec) else JobKind.SWEEP,
        user_id=user_id,
        state=JobState.QUEUED,
        spec=spec.stored(),
        cpus=cpus,
        gpus=gpus,
        worker_cpus=one["CPU"],
        worker_gpus=one.get("GPU", 0.0),
        priority=priority,
        idempotency_key=idempotency_key,
        max_attempts=max_attempts,
        created_at=now,
        updated_at=now,
    )
    try:
        with db.begin() as session:
            if max_queued is not None and _at_cap(session, user_id, max_queued):
                earlier = _by_key(session, job)
                if earlier is None:
                    raise QueueFullError(max_queued)
                return earlier, False  # a retry of an accepted submit is not refused
            session.add(job)
            session.flush()
            _event(session, job.id, None, JobState.QUEUED, 0, "submitted", now)
            for index, trial_spec in enumerate(trials):
                _add_trial(session, job, index, trial_spec, now)
        return job, True
    except IntegrityError:
        if idempotency_key is None:
            raise
        with db.begin() as session:
            existing = _by_key(session, job)
        assert existing is not None  # the unique (owner, key) index refused the insert
        return existing, False


def _by_key(session: Session, request: Job) -> Job | None:
    """The owner's earlier job under the idempotency key of ``request`` (a Job not yet
    stored), None without a key or an earlier job; IdempotencyKeyReusedError when that
    job was submitted with another request: compared exactly as stored (the spec's
    JSON, after defaults, so bodies that differ only by spelt-out defaults are the same)."""
    key = request.idempotency_key
    if key is None:
        return None
    earlier = session.scalars(
        select(Job).where(Job.user_id == request.user_id, Job.idempotency_key == key)
    ).one_or_none()
    if earlier is None:
        return None
    same = (earlier.kind, earlier.spec, earlier.priority, earlier.max_attempts) == (
        request.kind,
        request.spec,
        request.priority,
        request.max_attempts,
    )
    if not same:
        raise IdempotencyKeyReusedError(key, earlier.id)
    return earlier


def _at_cap(session: Session, user_id: int | None, cap: int) -> bool:
    """Whether the owner has ``cap`` queued jobs and sweeps. Far below the cap
    the count takes no lock (it serialised every submit of one owner: half the POST
    throughput); within CAP_MARGIN of it, PostgreSQL serialises the owner's submits with
    an advisory lock and counts again, so the cap holds unless more than CAP_MARGIN of one
    owner's submits are in flight at once. SQLite's BEGIN IMMEDIATE serialises always."""
    queued = _queued(session, user_id, cap)
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and queued + CAP_MARGIN >= cap:
        session.execute(select(func.pg_advisory_xact_lock(_QUEUE_CAP_LOCK, user_id or 0)))
        queued = _queued(session, user_id, cap)
    return queued >= cap


def _queued(session: Session, user_id: int | None, cap: int) -> int:
    """The owner's queued jobs and sweeps, counted up to ``cap`` (the cost stays bounded
    however long the queue)."""
    queued = (
        select(Job.id)
        .where(Job.user_id == user_id, Job.state == JobState.QUEUED, Job.kind != JobKind.TRIAL)
        .limit(cap)
        .subquery()
    )
    return session.scalar(select(func.count()).select_from(queued)) or 0


CAP_MARGIN = 64
_QUEUE_CAP_LOCK = 0x7175  # advisory lock class of the per-owner queue cap ("qu")


def _add_trial(session: Session, sweep: Job, index: int, spec: JobSpec, now: datetime) -> None:
    cpus, gpus = spec.resources.demand
    one = spec.resources.per_worker
    trial = Job(
        kind=JobKind.TRIAL,
        parent_id=sweep.id,
        trial_key=str(index),
        user_id=sweep.user_id,
        state=JobState.QUEUED,
        spec=spec.stored(),
        priority=sweep.priority,
        attempt=0,
        max_attempts=1,
        cpus=cpus,
        gpus=gpus,
        worker_cpus=one["CPU"],
        worker_gpus=one.get("GPU", 0.0),
        current_epoch=0,
        created_at=now,
        updated_at=now,
    )
    session.add(trial)
    session.flush()
    _event(session, trial.id, None, JobState.QUEUED, 0, f"trial {index} of sweep {sweep.id}", now)


def claim(
    db: Db,
    owner: str,
    *,
    lease_s: float,
    free: tuple[float, float] | None = None,
    largest_node: tuple[float, float] | None = None,
    now: datetime | None = None,
) -> Lease | None:
    """Take the highest-priority, oldest queued job, or None when none is queued.

    With ``free = (cpus, gpus)`` only a job that fits in them is taken: a smaller job may
    then start before a larger one of higher priority that does not fit yet (backfill).
    With ``largest_node = (cpus, gpus)`` (the most any one node has of each) a job one of
    whose Ray Train workers no node could hold is left queued (its pending_reason says
    so) instead of being claimed and waiting for a placement that never comes.
    """
    now = now or utcnow()
    fits: tuple[Any, ...] = ()
    if free is not None:
        fits += (Job.cpus <= free[0] + 1e-9, Job.gpus <= free[1] + 1e-9)
    if largest_node is not None:
        fits += (
            Job.worker_cpus <= largest_node[0] + 1e-9,
            Job.worker_gpus <= largest_node[1] + 1e-9,
        )
    with db.begin() as session:
        candidate = (
            select(Job.id)
            .where(Job.state == JobState.QUEUED, Job.kind != JobKind.TRIAL, *fits)
            .order_by(Job.priority.desc(), Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        row = session.execute(
            update(Job)
            .where(Job.id == candidate, Job.state == JobState.QUEUED)
            .values(
                state=JobState.RUNNING,
                attempt=Job.attempt + 1,
                owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_s),
                updated_at=now,
            )
            .returning(Job.id, Job.attempt, Job.spec, Job.kind, Job.cpus, Job.gpus)
            .execution_options(synchronize_session=False)
        ).first()
        if row is None:
            return None
        kind = JobKind(row.kind)
        try:
            spec = parse_spec(kind, row.spec)
        except InvalidStoredSpecError as err:  # fails now, not on a worker minutes later
            _fail_unparsable(session, row.id, row.attempt, str(err), now)
            return None
        _event(
            session,
            row.id,
            JobState.QUEUED,
            JobState.RUNNING,
            row.attempt,
            f"claimed by {owner}",
            now,
        )
        return Lease(
            job_id=row.id,
            attempt=row.attempt,
            owner=owner,
            spec=spec,
            kind=kind,
            cpus=row.cpus,
            gpus=row.gpus,
        )


def _fail_unparsable(
    session: Session, job_id: int, attempt: int, error: str, now: datetime
) -> None:
    """Fail a just-claimed job whose stored spec this version cannot read (no retry helps)."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(state=JobState.FAILED, owner=None, error=error, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    _event(session, job_id, JobState.QUEUED, JobState.FAILED, attempt, error, now)


def fence(lease: Lease) -> tuple[Any, ...]:
    """WHERE clauses that match the job only while ``lease`` still owns it."""
    return (
        Job.id == lease.job_id,
        Job.attempt == lease.attempt,
        Job.owner == lease.owner,
        Job.state.in_(_LIVE),
    )


def heartbeat(
    db: Db, lease: Lease, *, lease_s: float, now: datetime | None = None
) -> JobState | None:
    """Renew the lease. Returns the job's state (CANCELLING asks the worker to stop), or
    None when the lease is no longer ours (expired and re-claimed, or finished)."""
    now = now or utcnow()
    with db.begin() as session:
        row = session.execute(
            update(Job)
            .where(*fence(lease))
            .values(lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now)
            .returning(Job.state)
            .execution_options(synchronize_session=False)
        ).first()
    return JobState(row.state) if row else None


def state_if_ours(db: Db, lease: Lease) -> JobState | None:
    """The job's state while ``lease`` still holds it, else None; writes nothing."""
    with db() as session:
        state = session.scalars(select(Job.state).where(*fence(lease))).first()
    return JobState(state) if state else None


def record_epoch(
    db: Db, lease: Lease, epoch: int, metrics: dict[str, Any], *, now: datetime | None = None
) -> bool:
    """Store one epoch's metrics idempotently (keyed by job and epoch), fenced by the lease.
    Returns False, writing nothing, when the lease is stale."""
    now = now or utcnow()
    with db.begin() as session:
        owned = session.execute(
            update(Job)
            .where(*fence(lease))
            .values(current_epoch=epoch, updated_at=now)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        ).first()
        if owned is None:
            return False
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        values = {
            "job_id": lease.job_id,
            "epoch": epoch,
            "attempt": lease.attempt,
            "metrics": metrics,
            "recorded_at": now,
        }
        stmt = dialect.insert(EpochMetric).values(**values)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["job_id", "epoch"],
                set_={"attempt": lease.attempt, "metrics": metrics, "recorded_at": now},
            )
        )
    return True


def finish(
    db: Db,
    lease: Lease,
    state: JobState,
    *,
    reason: str = "",
    error: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Move a claimed job to a terminal state; False (nothing written) if the lease is stale.
    A job being cancelled ends cancelled, whatever the worker reports (a worker stops a
    cancelled job by failing its run)."""
    if state not in TERMINAL:
        raise ValueError(f"finish needs a terminal state, got {state}")
    now = now or utcnow()
    with db.begin() as session:
        job = session.scalars(select(Job).where(*fence(lease)).with_for_update()).first()
        if job is None:
            return False
        current = JobState(job.state)
        target = JobState.CANCELLED if current == JobState.CANCELLING else state
        check_transition(current, target)
        job.state = target
        job.error = error
        job.owner = None
        job.lease_expires_at = None
        job.updated_at = now
        _event(session, job.id, current, target, job.attempt, reason or target.value, now)
    return True


def release(db: Db, lease: Lease, reason: str, *, now: datetime | None = None) -> JobState | None:
    """Give a claimed job back after a transient failure that is not the job's (the
    database was out of reach): what ``reap`` does once the lease lapses, without waiting
    for it. While attempts remain the job is requeued (the next claim counts the next
    attempt and resumes from the newest checkpoint); on its last attempt it fails with
    the reason; a job being cancelled ends cancelled. Fenced: returns the new state, or
    None (nothing written) when the lease is no longer ours."""
    now = now or utcnow()
    with db.begin() as session:
        job = session.scalars(select(Job).where(*fence(lease)).with_for_update()).first()
        if job is None:
            return None
        return _give_back(
            session,
            job,
            requeued=f"{reason}; requeued",
            failed=f"{reason}, on attempt {job.attempt} of {job.max_attempts}",
            cancelled=f"{reason}; released while cancelling",
            now=now,
        )


def _give_back(
    session: Session, job: Job, *, requeued: str, failed: str, cancelled: str, now: datetime
) -> JobState:
    """End a live job's lease (expired, or released by its worker): requeued while attempts
    remain (the next claim counts the next one), failed on the last, cancelled when it was
    being cancelled, each with its reason; a sweep that does not requeue ends its open
    trials."""
    current = JobState(job.state)
    if current == JobState.CANCELLING:
        target, why = JobState.CANCELLED, cancelled
    elif job.attempt < job.max_attempts:
        target, why = JobState.QUEUED, requeued
    else:
        target, why = JobState.FAILED, failed
        job.error = why
    check_transition(current, target)
    job.state = target
    job.owner = None
    job.lease_expires_at = None
    job.updated_at = now
    _event(session, job.id, current, target, job.attempt, why, now)
    if target != JobState.QUEUED:  # a requeued sweep's next attempt resumes its trials
        end_children(session, job.id, target, f"its sweep: {why}", now)
    return target


def cancel(
    db: Db, job_id: int, *, user_id: int | None = None, now: datetime | None = None
) -> JobState | None:
    """Cancel a job: queued -> cancelled at once; running -> cancelling (its worker stops
    at the next heartbeat and finishes it as cancelled); terminal or cancelling: unchanged.
    Returns the resulting state, or None for an unknown job (or, with ``user_id``, one
    that is not that user's)."""
    now = now or utcnow()
    with db.begin() as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or (user_id is not None and job.user_id != user_id):
            return None
        current = JobState(job.state)
        target = {
            JobState.QUEUED: JobState.CANCELLED,
            JobState.RUNNING: JobState.CANCELLING,
        }.get(current)
        if target is None:
            return current
        job.state = target
        job.updated_at = now
        _event(session, job.id, current, target, job.attempt, "cancel requested", now)
        end_children(session, job.id, "cancel", "its sweep was cancelled", now)
        return target


def reap(db: Db, *, now: datetime | None = None) -> list[tuple[int, JobState]]:
    """Requeue live jobs whose lease expired (their worker died) while attempts remain;
    fail them after ``max_attempts``; a job being cancelled ends cancelled.
    Returns (job id, new state) for each job changed."""
    now = now or utcnow()
    changed: list[tuple[int, JobState]] = []
    with db.begin() as session:
        expired = session.scalars(
            select(Job)
            .where(Job.state.in_(_LIVE), Job.kind != JobKind.TRIAL, Job.lease_expires_at < now)
            .with_for_update(skip_locked=True)
        ).all()
        for job in expired:
            target = _give_back(
                session,
                job,
                requeued=f"lease expired (owner {job.owner}); requeued",
                failed=f"lease expired on attempt {job.attempt} of {job.max_attempts}",
                cancelled="lease expired while cancelling",
                now=now,
            )
            changed.append((job.id, target))
    return changed


def end_children(session: Session, parent_id: int, target: str, reason: str, now: datetime) -> None:
    """End the trials of a sweep with it. Queued ones end cancelled (they never ran).
    ``target="cancel"``: a running trial goes to cancelling (its loop stops at the next
    epoch); otherwise a cancelling trial ends cancelled and a running one ``target`` (through
    cancelling when the target is cancelled)."""
    children = session.scalars(
        select(Job)
        .where(Job.parent_id == parent_id, Job.state.in_((JobState.QUEUED, *_LIVE)))
        .with_for_update()
    ).all()
    for child in children:
        steps: list[JobState] = []
        current = JobState(child.state)
        if current == JobState.QUEUED:
            steps = [JobState.CANCELLED]
        elif target == "cancel":
            steps = [JobState.CANCELLING] if current == JobState.RUNNING else []
        elif current == JobState.CANCELLING:
            steps = [JobState.CANCELLED]
        elif JobState(target) == JobState.CANCELLED and current == JobState.RUNNING:
            steps = [JobState.CANCELLING, JobState.CANCELLED]
        else:
            steps = [JobState(target)]
        for new in steps:
            check_transition(current, new)
            _event(session, child.id, current, new, child.attempt, reason, now)
            current = new
        if steps:
            child.state = current
            child.updated_at = now
            if current in TERMINAL:
                child.owner = None
