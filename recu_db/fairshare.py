"""Fair share across users by decayed recent usage, and the claim policy it belongs to.

A job of ``g`` GPUs and ``c`` CPUs uses ``w = g`` resource units per second when ``g > 0``,
else ``w = c * cpu_weight`` (by default 8 CPUs weigh as one GPU). Usage decays with a
half-life ``H``: work done ``a`` seconds ago counts ``2^(-a/H)``. So a user's usage now is

    U(now) = U(t0) * 2^(-(now - t0)/H)  +  sum over running jobs of  w * H/ln2 * (1 - 2^(-d/H))

where ``U(t0)`` is stored on the user row (``users.usage`` as of ``users.usage_at_s``,
Unix seconds: its finished attempts, settled in one UPDATE when each ends) and ``d`` is
how long each running attempt has run (``jobs.claimed_at``); the second term is the
integral of ``w * 2^(-(now - s)/H)`` over the attempt's run.

A claim takes, among the queued jobs that fit, the one whose owner has the least usage
now (every user has an equal share: the least-served user goes first), then the highest
priority, then the oldest: a user's priorities order that user's own jobs. A job that
has waited ``age_s`` goes before all of those (aging). Jobs without an owner count as
one user with no usage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    bindparam,
    func,
    null,
    select,
    union_all,
    update,
)

from recu_db.models import Job, User
from recu_db.states import JobState

LN2 = math.log(2.0)
LIVE = (JobState.RUNNING, JobState.CANCELLING)


@dataclass(frozen=True)
class ClaimPolicy:
    """How a claim chooses (``recu_core.settings.WorkerSettings`` builds it).

    ``fair_share`` off: the highest priority, then the oldest (first come, first served).
    ``age_s`` (None: never): a job queued this long ago goes before every user's fresh
    jobs, whatever its owner's usage (aging: a heavy user is delayed, never starved).
    ``reserve_after_s`` (None: never): a queued job that has waited this long and does
    not fit what is free is reserved by the claiming worker whose cluster could hold it;
    that worker then starts nothing else until the job fits (its cluster drains), so a
    wide job starts within ``reserve_after_s`` plus the longest run already on that
    cluster. A reservation lapses ``reservation_s`` after the reserving worker's last
    claim attempt (a worker that died frees it)."""

    fair_share: bool = True
    half_life_s: float = 7 * 86_400.0
    cpu_weight: float = 0.125
    age_s: float | None = 86_400.0
    reserve_after_s: float | None = 600.0
    reservation_s: float = 120.0


FIFO = ClaimPolicy(fair_share=False, age_s=None, reserve_after_s=None)


def weight(gpus: float, cpus: float, policy: ClaimPolicy) -> float:
    """Resource units per second of a job: its GPUs, else its CPUs x cpu_weight."""
    return gpus if gpus > 0 else cpus * policy.cpu_weight


def decayed(usage: float, since_s: float | None, now: datetime, half_life_s: float) -> float:
    """``usage`` as of ``since_s`` (Unix seconds), decayed to ``now``."""
    if since_s is None or usage == 0.0:
        return usage
    age = max(0.0, now.timestamp() - since_s)
    return usage * 2.0 ** (-age / half_life_s)


def accrued(units: float, start: datetime, now: datetime, half_life_s: float) -> float:
    """The decayed usage at ``now`` of ``units`` per second from ``start`` to ``now``."""
    run = max(0.0, (now - start).total_seconds())
    return units * half_life_s / LN2 * (1.0 - 2.0 ** (-run / half_life_s))


_RUNNING = select(Job.user_id, Job.gpus, Job.cpus, Job.claimed_at, null(), null()).where(
    Job.state.in_(LIVE), Job.claimed_at.is_not(None), Job.user_id.is_not(None)
)
_STORED = select(User.id, null(), null(), null(), User.usage, User.usage_at_s).where(User.usage > 0)
_USAGE: Any = union_all(_RUNNING, _STORED)


def work(
    gpus: float, cpus: float, claimed_at: datetime | None, now: datetime, policy: ClaimPolicy
) -> float:
    """The decayed usage at ``now`` of an attempt claimed at ``claimed_at`` (0 without)."""
    if claimed_at is None:
        return 0.0
    return accrued(weight(gpus, cpus, policy), claimed_at, now, policy.half_life_s)


def usage_now(connection: Connection, now: datetime, policy: ClaimPolicy) -> dict[int, float]:
    """Every user's usage now that is not zero: the stored part decayed, plus the running
    attempts' (one read: the live jobs, then the users with usage; the first SELECT of
    the UNION gives the columns their types)."""
    usage: dict[int, float] = {}
    rows: Any = connection.execute(_USAGE)
    for owner, gpus, cpus, start, amount, at_s in rows:
        if start is not None:  # a live job's attempt so far
            units = weight(gpus, cpus, policy)
            part = accrued(units, start, now, policy.half_life_s)
        else:  # the user's finished attempts
            part = decayed(amount, at_s, now, policy.half_life_s)
        usage[owner] = usage.get(owner, 0.0) + part
    return usage


def settle(
    connection: Connection,
    user_id: int | None,
    gpus: float,
    cpus: float,
    claimed_at: datetime | None,
    now: datetime,
    policy: ClaimPolicy,
) -> None:
    """Add an attempt that ends now to its owner's stored usage: one UPDATE that decays
    the stored usage to ``now`` and adds the attempt's (concurrent ends of one user's jobs
    add up: the row is locked by the UPDATE)."""
    if user_id is None or claimed_at is None:
        return
    done = work(gpus, cpus, claimed_at, now, policy)
    statement = _SETTLE[connection.dialect.name == "postgresql"]
    values = {"user_id": user_id, "work": done, "now_s": now.timestamp()}
    connection.execute(statement, values | {"half_life_s": policy.half_life_s})


def _settle(postgres: bool) -> Any:
    """UPDATE users SET usage = usage * 2^-(age / H) + work, usage_at_s = now: past 1000
    halvings the factor is 0 for this purpose (PostgreSQL's power() raises on underflow);
    SQLite calls the 2^x its connections register (``recu_db.engine``), since not every
    build has the math functions."""
    now_s = bindparam("now_s", type_=Float)
    age = now_s - func.coalesce(User.usage_at_s, now_s)
    halvings = age / bindparam("half_life_s", type_=Float)
    # a clock behind the stored time (another worker's) must not grow the usage: the age
    # counts from 0 and the stored time never moves back
    if postgres:
        factor = func.power(2.0, -func.least(func.greatest(halvings, 0.0), 1000.0))
        latest = func.greatest(func.coalesce(User.usage_at_s, now_s), now_s)
    else:
        factor = func.recu_exp2(-halvings)
        latest = func.max(func.coalesce(User.usage_at_s, now_s), now_s)
    return (
        update(User)
        .where(User.id == bindparam("user_id", type_=Integer))
        .values(usage=User.usage * factor + bindparam("work", type_=Float), usage_at_s=latest)
    )


_SETTLE = {postgres: _settle(postgres) for postgres in (False, True)}
