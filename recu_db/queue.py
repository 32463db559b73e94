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

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Float,
    Integer,
    String,
    Text,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from recu_core.jobspec import ExportSpec, JobSpec
from recu_core.sweepspec import SweepSpec
from recu_db import fairshare
from recu_db.candidates import first_unlocked
from recu_db.fairshare import ClaimPolicy
from recu_db.models import EpochMetric, Export, Job, JobEvent, UtcDateTime
from recu_db.specs import InvalidStoredSpecError, Spec, parse_spec
from recu_db.states import TERMINAL, TRANSITIONS, JobKind, JobState, check_transition

Db = sessionmaker[Session]
_LIVE = (JobState.RUNNING, JobState.CANCELLING)
DEFAULT_POLICY = ClaimPolicy()


#: How every reason the reaper records begins (``recu_db.stats`` counts them).
LEASE_EXPIRED = "lease expired"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Lease:
    """What a worker holds after a claim: the job, parsed once, and the fence of its later
    writes (job id, attempt, owner)."""

    job_id: int
    attempt: int
    owner: str
    spec: Spec
    kind: JobKind = JobKind.TRAIN
    cpus: float = 1.0  # what the job reserves on the cluster (a sweep: all its trials at once)
    gpus: float = 0.0
    claimed_at: datetime | None = None  # this attempt's start (its fair-share usage); trials: None

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

    @property
    def export(self) -> ExportSpec:
        """The spec of an export job."""
        if not isinstance(self.spec, ExportSpec):
            raise TypeError(f"job {self.job_id} is a {self.kind}, not an export")
        return self.spec


def _event(
    session: Connection | Session,
    job_id: int,
    from_state: str | None,
    to_state: str,
    attempt: int,
    reason: str,
    now: datetime,
) -> None:
    """Record a transition in ``job_events``: one Core INSERT, executed at once (an ORM
    session flushes its pending changes first)."""
    row = {"job_id": job_id, "at": now, "from_state": from_state, "to_state": to_state}
    session.execute(_EVENT, row | {"attempt": attempt, "reason": reason})


_EVENT = insert(JobEvent)  # executed with a dict of its columns


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
    waits_for = job_spec.dependencies
    values = {
        "kind": JobKind.TRAIN if isinstance(spec, JobSpec) else JobKind.SWEEP,
        "user_id": user_id,
        "state": JobState.WAITING if waits_for else JobState.QUEUED,
        "spec": spec.stored(),
        "cpus": cpus,
        "gpus": gpus,
        "worker_cpus": one["CPU"],
        "worker_gpus": one.get("GPU", 0.0),
        "priority": priority,
        "idempotency_key": idempotency_key,
        "attempt": 0,
        "max_attempts": max_attempts,
        "current_epoch": 0,
        "created_at": now,
        "updated_at": now,
    }
    job = Job(**values)
    try:
        with db.begin() as session:
            if max_queued is not None and _at_cap(session, user_id, max_queued):
                earlier = _by_key(session, job)
                if earlier is None:
                    raise QueueFullError(max_queued)
                return earlier, False  # a retry of an accepted submit is not refused
            reason = "submitted"
            if waits_for:
                reason += f"; waiting for job{'s' if len(waits_for) > 1 else ''} " + ", ".join(
                    map(str, waits_for)
                )
            job.id = _insert_queued(session, values, reason)
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


def _insert_queued(session: Session, values: dict[str, Any], reason: str) -> int:
    """Insert a queued job and its "queued" event (pre-built Core statements on the
    session's connection: no ORM unit of work, no statement built per call); its id. On
    PostgreSQL one statement (the job's INSERT in a CTE feeding the event's), one round
    trip; on SQLite two."""
    connection = session.connection()
    now = values["created_at"]
    if connection.dialect.name != "postgresql":
        job_id = connection.execute(_INSERT_JOB, values).scalar_one()
        _event(connection, job_id, None, values["state"], 0, reason, now)
        return job_id
    event = {"at": now, "reason": reason, "state": str(values["state"])}
    params = {f"job_{k}": v for k, v in values.items()} | {
        f"event_{k}": v for k, v in event.items()
    }
    return connection.execute(_submit_postgres(tuple(values)), params).scalar_one()


_INSERT_JOB = insert(Job).returning(Job.id)  # executed with a dict of the job's columns


@functools.lru_cache(maxsize=8)
def _submit_postgres(columns: tuple[str, ...]) -> Any:
    """INSERT the job (``columns``, bound as job_<column>) in a CTE and its first event
    from it (bound as event_at, event_reason, event_state), RETURNING the job's id."""
    table = JobEvent.__table__.c
    new = (
        insert(Job)
        .values({c: bindparam(f"job_{c}", type_=Job.__table__.c[c].type) for c in columns})
        .returning(Job.id)
        .cte("new_job")
    )
    event = insert(JobEvent).from_select(
        ["job_id", "at", "reason", "from_state", "to_state", "attempt"],
        select(
            new.c.id,
            bindparam("event_at", type_=table["at"].type),
            bindparam("event_reason", type_=table["reason"].type),
            literal(None, table["from_state"].type),
            bindparam("event_state", type_=table["to_state"].type),
            literal(0, table["attempt"].type),
        ),
    )
    return event.returning(JobEvent.job_id)


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


_ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING)
_EXPORT_LOCK = 0x6578  # advisory lock class of one checkpoint's export submits ("ex")


def active_export(session: Session, checkpoint_id: int) -> Job | None:
    """The export job of the checkpoint that is queued or running, if any."""
    return session.scalars(
        select(Job)
        .where(
            Job.kind == JobKind.EXPORT,
            Job.state.in_(_ACTIVE),
            Job.spec["checkpoint_id"].as_integer() == checkpoint_id,
        )
        .order_by(Job.id.desc())
        .limit(1)
    ).first()


def submit_export(
    db: Db,
    checkpoint_id: int,
    *,
    user_id: int | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    now: datetime | None = None,
) -> tuple[Export | None, Job | None, bool]:
    """The checkpoint's stored export, else its queued or running export job, else a new
    export job: (export, job, created), exactly one of export and job set. Race-free: the
    look-up and the insert are one transaction serialised per checkpoint (BEGIN IMMEDIATE
    on SQLite, an advisory lock on the checkpoint id on PostgreSQL), so concurrent calls
    for one checkpoint create one job."""
    now = now or utcnow()
    with db.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(_EXPORT_LOCK, checkpoint_id)))
        stored = session.scalars(
            select(Export).where(Export.checkpoint_id == checkpoint_id)
        ).first()
        if stored is not None:
            session.expunge(stored)
            return stored, None, False
        pending = active_export(session, checkpoint_id)
        if pending is not None:
            return None, pending, False
        job = Job(
            kind=JobKind.EXPORT,
            user_id=user_id,
            state=JobState.QUEUED,
            spec=ExportSpec(checkpoint_id=checkpoint_id).stored(),
            cpus=1.0,
            gpus=0.0,
            worker_cpus=1.0,
            worker_gpus=0.0,
            priority=priority,
            max_attempts=max_attempts,
            created_at=now,
            updated_at=now,
        )
        session.add(job)
        session.flush()
        _event(
            session, job.id, None, JobState.QUEUED, 0, f"export of checkpoint {checkpoint_id}", now
        )
    return None, job, True


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
    """The owner's queued (or waiting) jobs and sweeps, counted up to ``cap`` (the cost
    stays bounded however long the queue)."""
    return session.connection().scalar(_QUEUED_COUNT, {"user_id": user_id, "cap": cap}) or 0


_QUEUED_COUNT = select(func.count()).select_from(
    select(Job.id)
    .where(
        Job.user_id == bindparam("user_id", type_=Integer),
        Job.state.in_((JobState.QUEUED, JobState.WAITING)),
        Job.kind != JobKind.TRIAL,
    )
    .limit(bindparam("cap", type_=Integer))
    .subquery()
)


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
    total: tuple[float, float] | None = None,
    policy: ClaimPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
) -> Lease | None:
    """Take the next queued job, or None when none is queued (or none may start now).

    The order (``_order``): the owner with the least decayed usage first,
    then the highest priority, then the oldest (``policy.fair_share`` off: priority, then
    age). With ``free = (cpus, gpus)`` only a job that fits in them is taken: a smaller
    job may then start before a larger one that does not fit yet (backfill), until the
    larger one has waited ``policy.reserve_after_s``: then, when ``total`` (what this
    worker's cluster has in all) could hold it, this worker reserves it and starts nothing
    else until it fits (``_reserved``). With ``largest_node = (cpus, gpus)`` (the most any
    one node has of each) a job one of whose Ray Train workers no node could hold is left
    queued (its pending_reason says so) instead of being claimed and waiting for a
    placement that never comes.

    Statements are built once per shape (``_ClaimShape``) with bound parameters and
    reused: building them per call was most of a claim's CPU (the profile in
    docs/benchmarks.md).
    """
    now = now or utcnow()
    params: dict[str, Any] = {
        "claimer": owner,
        "now": now,
        "lease_until": now + timedelta(seconds=lease_s),
        "reason": f"claimed by {owner}",
    }
    if free is not None:
        params |= {"free_cpus": free[0] + 1e-9, "free_gpus": free[1] + 1e-9}
    if largest_node is not None:
        params |= {"node_cpus": largest_node[0] + 1e-9, "node_gpus": largest_node[1] + 1e-9}
    engine = _engine(db)
    postgres = engine.dialect.name == "postgresql"
    reserving = policy.reserve_after_s is not None and free is not None and total is not None
    # on PostgreSQL without the reservation step the claim is one statement (the usage
    # read before it only orders): each runs on its own, no BEGIN/COMMIT round trips
    with _connection(engine, autocommit=postgres and not reserving) as connection:
        usage = fairshare.usage_now(connection, now, policy) if policy.fair_share else {}
        if postgres:  # unnested arrays: one statement whatever the number of owners
            params |= {"owners": list(usage), "usages": list(usage.values())}
        else:  # a CASE of user0/usage0, user1/usage1, ...
            for i, (user_id, amount) in enumerate(usage.items()):
                params |= {f"user{i}": user_id, f"usage{i}": amount}
        users = min(len(usage), 1) if postgres else len(usage)
        aging = policy.fair_share and policy.age_s is not None
        if aging:
            assert policy.age_s is not None
            params["aged_before"] = now - timedelta(seconds=policy.age_s)
        shape = _ClaimShape(free is not None, largest_node is not None, users, postgres, aging)
        if reserving:
            assert policy.reserve_after_s is not None
            assert total is not None
            params |= {
                "total_cpus": total[0] + 1e-9,
                "total_gpus": total[1] + 1e-9,
                "waited": now - timedelta(seconds=policy.reserve_after_s),
                "until": now + timedelta(seconds=policy.reservation_s),
            }
            held = _reserved(connection, shape, params)
            if held is not None:
                if held < 0:
                    return None  # draining for the job this worker reserves
                params["held"] = held
                shape = shape._replace(held=True)
        row = connection.execute(_claim_statement(shape), params).first()
        if row is None:
            return None
        if not postgres:  # PostgreSQL recorded the event in the claim's statement
            reason = params["reason"]
            _event(connection, row.id, JobState.QUEUED, JobState.RUNNING, row.attempt, reason, now)
        kind = JobKind(row.kind)
        try:
            spec = parse_spec(kind, row.spec)
        except InvalidStoredSpecError as err:  # fails now, not on a worker minutes later
            _fail_unparsable(connection, row.id, row.attempt, str(err), now)
            return None
        return Lease(
            job_id=row.id,
            attempt=row.attempt,
            owner=owner,
            spec=spec,
            kind=kind,
            cpus=row.cpus,
            gpus=row.gpus,
            claimed_at=now,
        )


class _ClaimShape(NamedTuple):
    """What a claim's statements depend on beyond their bound values."""

    free: bool  # only jobs within free_cpus / free_gpus
    node: bool  # only jobs whose Ray Train workers fit node_cpus / node_gpus
    users: int  # owners in the fair-share order (SQLite: user0/usage0 ...; PostgreSQL: 1,
    # the arrays owners/usages); 0: priority, age
    postgres: bool
    aging: bool = False  # jobs queued before aged_before first (ClaimPolicy.age_s)
    held: bool = False  # the job with id = held (this worker's reservation)


_QUEUED_JOB = (Job.state == JobState.QUEUED, Job.kind != JobKind.TRIAL)


def _placeable(shape: _ClaimShape) -> tuple[Any, ...]:
    if not shape.node:
        return ()
    return (
        Job.worker_cpus <= bindparam("node_cpus", type_=Float),
        Job.worker_gpus <= bindparam("node_gpus", type_=Float),
    )


def _room(prefix: str) -> tuple[Any, ...]:
    return (
        Job.cpus <= bindparam(f"{prefix}_cpus", type_=Float),
        Job.gpus <= bindparam(f"{prefix}_gpus", type_=Float),
    )


def _fits(shape: _ClaimShape) -> tuple[Any, ...]:
    return _placeable(shape) + (_room("free") if shape.free else ())


def _order(shape: _ClaimShape) -> list[Any]:
    order: list[Any] = [Job.priority.desc(), Job.id]
    if shape.users:
        owner_usage: Any = case(
            *(
                (Job.user_id == bindparam(f"user{i}", type_=Integer), bindparam(f"usage{i}"))
                for i in range(shape.users)
            ),
            else_=literal(0.0),
        )
        order.insert(0, _aged_first(shape, owner_usage))
    elif shape.aging:
        order.insert(0, _aged_first(shape, literal(0.0)))
    return order


def _aged_first(shape: _ClaimShape, usage: Any) -> Any:
    """The fair-share key: the owner's usage, or -1 (before every user) for a job queued
    before ``aged_before`` (``ClaimPolicy.age_s`` ago): a job that has waited that long
    goes first whatever its owner used, so a heavy user's job is delayed, never starved."""
    if not shape.aging:
        return usage
    aged = Job.created_at <= bindparam("aged_before", type_=UtcDateTime())
    return case((aged, literal(-1.0)), else_=usage)


def _first_unlocked(shape: _ClaimShape, where: tuple[Any, ...]) -> Any:
    """PostgreSQL: the first candidate in claim order not locked by another claim, read
    through the claim-order indexes (``recu_db.candidates``)."""
    return first_unlocked(where, fair=bool(shape.users), aging=shape.aging)


@functools.lru_cache(maxsize=256)
def _claim_statement(shape: _ClaimShape) -> Any:
    """UPDATE the first candidate to running, RETURNING what a Lease needs; on PostgreSQL
    the UPDATE is a CTE feeding the event's INSERT (one statement, one round trip)."""
    now = bindparam("now", type_=UtcDateTime())
    which = (Job.id == bindparam("held", type_=Integer),) if shape.held else _fits(shape)
    # a job another worker reserves may still be claimed by one where it fits now (that
    # worker then stops draining: its reservation is gone with the job's queued state)
    where = (*_QUEUED_JOB, *which)
    candidate = (
        _first_unlocked(shape, where)
        if shape.postgres
        else select(Job.id).where(*where).order_by(*_order(shape)).limit(1).scalar_subquery()
    )
    claimed = (
        update(Job)
        .where(Job.id == candidate, Job.state == JobState.QUEUED)
        .values(
            state=JobState.RUNNING,
            attempt=Job.attempt + 1,
            owner=bindparam("claimer", type_=String),
            lease_expires_at=bindparam("lease_until", type_=UtcDateTime()),
            claimed_at=now,
            reserved_by=None,
            reserved_until=None,
            updated_at=now,
        )
        .returning(Job.id, Job.attempt, Job.spec, Job.kind, Job.cpus, Job.gpus)
    )
    if not shape.postgres:  # the event follows as a statement of its own
        return claimed
    done = claimed.cte("claimed")
    event = insert(JobEvent).from_select(
        ["job_id", "attempt", "at", "from_state", "to_state", "reason"],
        select(
            done.c.id,
            done.c.attempt,
            now,
            literal(JobState.QUEUED.value),
            literal(JobState.RUNNING.value),
            bindparam("reason", type_=Text),
        ),
    )
    return select(done).add_cte(event.cte("claim_event"))


def _reserved(connection: Connection, shape: _ClaimShape, params: dict[str, Any]) -> int | None:
    """The wide-job reservation step of a claim. This worker's reserved job: its id when
    it fits now (claim it), -1 while it does not (the reservation is renewed: drain).
    Without one: the head of the queue (the first job in claim order, fair share
    included, that this worker's cluster could ever hold and no other live worker
    reserves) is reserved now (-1: drain) when it does not fit what is free and has
    waited ``reserve_after_s``. None: nothing reserved, claim as usual (backfill).

    Only the head is ever reserved, so a reservation protects the job the policy would
    start next, not any job that has waited: on a loaded cluster every job waits past
    any threshold, and reserving each aged wide job drained every worker in turn (the
    first try of this rule in bench/cluster_sim.py: narrow jobs then waited 89 s)."""
    statements = _reservation_statements(shape)
    mine = connection.scalars(statements.mine, params).first()
    if mine is not None:
        if connection.scalars(statements.fits, {**params, "held": mine}).first() is not None:
            return mine
        if connection.scalars(statements.holdable, {**params, "held": mine}).first() is None:
            # the cluster shrank (a node left): it can no longer hold the job; let it go
            connection.execute(statements.release, {**params, "held": mine})
            return None
        connection.execute(statements.renew, {**params, "held": mine})
        return -1
    head = connection.execute(statements.head, params).first()
    if head is None or head.created_at > params["waited"]:
        return None
    if head.cpus <= params["free_cpus"] and head.gpus <= params["free_gpus"]:
        return None  # it fits: the claim takes it (it is first in the same order)
    connection.execute(statements.reserve, {**params, "held": head.id})
    return -1


class _Reservation(NamedTuple):
    mine: Any
    fits: Any
    holdable: Any
    release: Any
    renew: Any
    head: Any
    reserve: Any


@functools.lru_cache(maxsize=256)
def _reservation_statements(shape: _ClaimShape) -> _Reservation:
    owner, now = bindparam("claimer", type_=String), bindparam("now", type_=UtcDateTime())
    held = bindparam("held", type_=Integer)
    until = bindparam("until", type_=UtcDateTime())
    holdable = (
        *_QUEUED_JOB,
        *_placeable(shape),
        *_room("total"),
        or_(Job.reserved_by.is_(None), Job.reserved_until < now),
    )
    first = (
        _first_unlocked(shape, holdable)
        if shape.postgres
        else select(Job.id).where(*holdable).order_by(*_order(shape)).limit(1).scalar_subquery()
    )
    return _Reservation(
        mine=select(Job.id)
        .where(*_QUEUED_JOB, Job.reserved_by == owner)
        .with_for_update(skip_locked=True),
        fits=select(Job.id).where(Job.id == held, *_fits(shape)),
        holdable=select(Job.id).where(Job.id == held, *_placeable(shape), *_room("total")),
        release=update(Job).where(Job.id == held).values(reserved_by=None, reserved_until=None),
        renew=update(Job).where(Job.id == held).values(reserved_until=until),
        head=select(Job.id, Job.created_at, Job.cpus, Job.gpus).where(Job.id == first),
        reserve=update(Job).where(Job.id == held).values(reserved_by=owner, reserved_until=until),
    )


@contextmanager
def _connection(engine: Engine, *, autocommit: bool) -> Iterator[Connection]:
    """A connection in a transaction (committed at the end, rolled back on an error), or
    with ``autocommit`` one where each statement commits on its own (for work that is one
    statement: no BEGIN and COMMIT round trips)."""
    if not autocommit:
        with engine.begin() as connection:
            yield connection
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        yield connection


def _engine(db: Db) -> Engine:
    """The engine under a sessionmaker: the hot paths (claim, finish) run Core statements
    on a Connection, without the ORM Session's bookkeeping."""
    bind = db.kw["bind"]
    assert isinstance(bind, Engine), bind
    return bind


def _fail_unparsable(
    connection: Connection, job_id: int, attempt: int, error: str, now: datetime
) -> None:
    """Fail a just-claimed job whose stored spec this version cannot read (no retry helps)."""
    connection.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(state=JobState.FAILED, owner=None, error=error, updated_at=now)
    )
    _event(connection, job_id, JobState.RUNNING, JobState.FAILED, attempt, error, now)


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
    policy: ClaimPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
) -> bool:
    """Move a claimed job to a terminal state; False (nothing written) if the lease is stale.
    A job being cancelled ends cancelled, whatever the worker reports (a worker stops a
    cancelled job by failing its run). The attempt's usage goes to its owner's fair share."""
    if state not in TERMINAL:
        raise ValueError(f"finish needs a terminal state, got {state}")
    now = now or utcnow()
    fenced = {"job_id": lease.job_id, "attempt": lease.attempt, "claimer": lease.owner}
    engine = _engine(db)
    if engine.dialect.name == "postgresql":
        return _finish_postgres(engine, lease, fenced, state, reason, error, policy, now)
    with engine.begin() as connection:
        job = connection.execute(_FINISH_READ, fenced).first()
        if job is None:
            return False
        current = JobState(job.state)
        target = JobState.CANCELLED if current == JobState.CANCELLING else state
        check_transition(current, target)
        connection.execute(
            _FINISH_WRITE, {"job_id": lease.job_id, "state": target, "error": error, "now": now}
        )
        _event(connection, lease.job_id, current, target, job.attempt, reason or target, now)
        fairshare.settle(connection, job.user_id, job.gpus, job.cpus, job.claimed_at, now, policy)
    return True


def _finish_postgres(
    engine: Engine,
    lease: Lease,
    fenced: dict[str, Any],
    state: JobState,
    reason: str,
    error: str | None,
    policy: ClaimPolicy,
    now: datetime,
) -> bool:
    """``finish`` as one statement (autocommit: no BEGIN/COMMIT round trips). It ends a
    running job only when running -> ``state`` is allowed (a job being cancelled always
    ends cancelled); a refused transition raises TransitionError, as on SQLite, with
    nothing written."""
    may_end = state in TRANSITIONS[JobState.RUNNING]
    work = fairshare.work(lease.gpus, lease.cpus, lease.claimed_at, now, policy)
    values: dict[str, Any] = {"state": state, "error": error, "now": now, "reason": reason or None}
    values |= {"work": work, "now_s": now.timestamp(), "half_life_s": policy.half_life_s}
    with _connection(engine, autocommit=True) as connection:
        ended = connection.execute(_FINISH_POSTGRES, fenced | values | {"may_end": may_end})
        if ended.first() is not None:
            return True
        if not may_end:  # a refused transition, or a stale lease
            current = connection.scalars(_FINISH_READ.with_only_columns(Job.state), fenced)
            if (found := current.first()) is not None:
                check_transition(JobState(found), state)
        return False


# finish on PostgreSQL, one statement: lock the fenced row, end it (a job being cancelled
# ends cancelled), record the event, add the attempt's usage to its owner's fair share
_FINISH_POSTGRES = text(
    """
    WITH cur AS (
        SELECT id, state, attempt, user_id FROM jobs
        WHERE id = :job_id AND attempt = :attempt AND owner = :claimer
          AND (state = 'cancelling' OR (state = 'running' AND :may_end))
        FOR UPDATE
    ), ended AS (
        UPDATE jobs SET
            state = CASE WHEN cur.state = 'cancelling' THEN 'cancelled' ELSE :state END,
            error = :error, owner = NULL, lease_expires_at = NULL, updated_at = :now
        FROM cur WHERE jobs.id = cur.id
        RETURNING jobs.id, cur.state AS was, jobs.state AS state, cur.attempt, cur.user_id
    ), event AS (
        INSERT INTO job_events (job_id, at, from_state, to_state, attempt, reason)
        SELECT id, :now, was, state, attempt, COALESCE(:reason, state) FROM ended
    ), usage AS (
        UPDATE users SET
            usage = users.usage * power(2.0, -least(greatest(
                (:now_s - COALESCE(users.usage_at_s, :now_s)) / :half_life_s, 0.0
            ), 1000.0)) + :work,
            usage_at_s = greatest(COALESCE(users.usage_at_s, :now_s), :now_s)
        FROM ended WHERE users.id = ended.user_id AND :work > 0
    )
    SELECT was, state FROM ended
    """
).bindparams(
    bindparam("now", type_=UtcDateTime()),
    bindparam("work", type_=Float),
    bindparam("now_s", type_=Float),
    bindparam("half_life_s", type_=Float),
    bindparam("error", type_=Text),
    bindparam("reason", type_=Text),
    bindparam("may_end", type_=Boolean),
)
_FENCED = (
    Job.id == bindparam("job_id", type_=Integer),
    Job.attempt == bindparam("attempt", type_=Integer),
    Job.owner == bindparam("claimer", type_=String),
    Job.state.in_(_LIVE),
)
_FINISH_READ = (
    select(Job.state, Job.attempt, Job.user_id, Job.gpus, Job.cpus, Job.claimed_at)
    .where(*_FENCED)
    .with_for_update()
)
_FINISH_WRITE = (
    update(Job)
    .where(Job.id == bindparam("job_id", type_=Integer))
    .values(
        state=bindparam("state", type_=String),
        error=bindparam("error", type_=Text),
        owner=None,
        lease_expires_at=None,
        updated_at=bindparam("now", type_=UtcDateTime()),
    )
)


def release(
    db: Db,
    lease: Lease,
    reason: str,
    *,
    policy: ClaimPolicy = DEFAULT_POLICY,
    now: datetime | None = None,
) -> JobState | None:
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
            policy=policy,
            now=now,
        )


def hand_back(
    db: Db, lease: Lease, reason: str, *, policy: ClaimPolicy = DEFAULT_POLICY
) -> JobState | None:
    """Give a running job back because its worker is shutting down: requeued at no cost,
    its ``max_attempts`` raised by one so the attempt it was on is not counted against it
    (the attempt number itself only grows: the fence of the old lease stays shut); a job
    being cancelled ends cancelled. Fenced: the new state, or None when not ours."""
    with db.begin() as session:
        job = session.scalars(select(Job).where(*fence(lease)).with_for_update()).first()
        if job is None:
            return None
        if job.state != JobState.CANCELLING:
            job.max_attempts += 1
        return _give_back(
            session,
            job,
            requeued=f"{reason}; handed back to the queue (no attempt counted)",
            failed=reason,  # not reached: the raised bound leaves an attempt
            cancelled=f"{reason}; handed back while cancelling",
            policy=policy,
            now=utcnow(),
        )


def _give_back(
    session: Session,
    job: Job,
    *,
    requeued: str,
    failed: str,
    cancelled: str,
    policy: ClaimPolicy,
    now: datetime,
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
    fairshare.settle(
        session.connection(), job.user_id, job.gpus, job.cpus, job.claimed_at, now, policy
    )
    if target != JobState.QUEUED:  # a requeued sweep's next attempt resumes its trials
        end_children(session, job.id, target, f"its sweep: {why}", now)
    return target


def cancel(
    db: Db, job_id: int, *, user_id: int | None = None, now: datetime | None = None
) -> JobState | None:
    """Cancel a job: queued or waiting -> cancelled at once; running -> cancelling (its worker stops
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
            JobState.WAITING: JobState.CANCELLED,
            JobState.RUNNING: JobState.CANCELLING,
        }.get(current)
        if target is None:
            return current
        job.state = target
        job.updated_at = now
        _event(session, job.id, current, target, job.attempt, "cancel requested", now)
        end_children(session, job.id, "cancel", "its sweep was cancelled", now)
        return target


def reap(
    db: Db, *, policy: ClaimPolicy = DEFAULT_POLICY, now: datetime | None = None
) -> list[tuple[int, JobState]]:
    """Requeue live jobs whose lease expired (their worker died) while attempts remain;
    fail them after ``max_attempts``; a job being cancelled ends cancelled.
    Returns (job id, new state) for each job changed."""
    now = now or utcnow()
    changed: list[tuple[int, JobState]] = []
    with db.begin() as session:
        expired = session.scalars(
            select(Job)
            .where(Job.state.in_(_LIVE), Job.kind != JobKind.TRIAL, Job.lease_expires_at < now)
            .order_by(Job.user_id, Job.id)  # the owners' usage rows locked in one order
            .with_for_update(skip_locked=True)
        ).all()
        for job in expired:
            target = _give_back(
                session,
                job,
                requeued=f"{LEASE_EXPIRED} (owner {job.owner}); requeued",
                failed=f"{LEASE_EXPIRED} on attempt {job.attempt} of {job.max_attempts}",
                cancelled=f"{LEASE_EXPIRED} while cancelling",
                policy=policy,
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
