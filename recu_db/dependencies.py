"""Jobs that wait for other jobs (``JobSpec.dependencies``: ``after``, ``init_from``, the
distillation teacher): a waiting job is queued once every job it names has succeeded, and
failed, with the reason, once one of them has failed, been cancelled or stopped.

Workers settle waiting jobs before each claim (``settle_waiting``, beside the reaper), so
no code path that ends a job has to know about its dependents, and a job is never queued
before its dependencies are final. The API checks a new job's dependencies
(``problems``): they must exist, be the submitter's own (an admin's may name anyone's),
be training jobs or trials, and not have failed already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from recu_db.models import Job
from recu_db.states import JobKind, JobState, check_transition

#: The dependency states that fail a waiting job.
_BROKEN = (JobState.FAILED, JobState.CANCELLED, JobState.STOPPED)
#: The kinds of job another may depend on (they have checkpoints).
DEPENDABLE = (JobKind.TRAIN, JobKind.TRIAL)


def dependencies_of(kind: str, spec: dict[str, Any]) -> list[int]:
    """The job ids a stored spec waits for (a sweep's: its base's)."""
    body = spec.get("base", {}) if kind == JobKind.SWEEP else spec
    ids = set(body.get("after") or [])
    if body.get("init_from"):
        ids.add(body["init_from"]["job_id"])
    if body.get("distill"):
        ids.add(body["distill"]["teacher_job_id"])
    return sorted(ids)


def states_of(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """The state of each of these jobs that exists."""
    rows = session.execute(select(Job.id, Job.state).where(Job.id.in_(ids)))
    return {job_id: state for job_id, state in rows}  # noqa: C416 (rows: Row objects)


@dataclass(frozen=True)
class Problem:
    """Why a named job cannot be waited for: ``missing`` (unknown, or another user's: the
    same words, so nothing is told of others' jobs) or ``unusable`` (not a training job
    or trial; already failed, cancelled or stopped)."""

    job_id: int
    kind: Literal["missing", "unusable"]
    message: str


def problems(
    session: Session, ids: Sequence[int], *, user_id: int | None, admin: bool
) -> list[Problem]:
    """The problems of these dependencies (empty: each can be waited for)."""
    found = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(ids)))}
    out = []
    for job_id in ids:
        job = found.get(job_id)
        if job is None or not (admin or job.user_id == user_id):
            out.append(Problem(job_id, "missing", f"job {job_id} does not exist (or is not yours)"))
        elif job.kind not in DEPENDABLE:
            out.append(
                Problem(job_id, "unusable", f"job {job_id} is a {job.kind} job, not a training job")
            )
        elif job.state in _BROKEN:
            out.append(
                Problem(job_id, "unusable", f"job {job_id} has {job.state}: it can never succeed")
            )
    return out


def settle(db: Any, *, now: datetime | None = None) -> list[tuple[int, JobState]]:
    """``settle_waiting`` in a transaction of its own (what a worker runs before a claim)."""
    from recu_db.queue import utcnow

    with db.begin() as session:
        return settle_waiting(session, now or utcnow())


def settle_waiting(session: Session, now: datetime) -> list[tuple[int, JobState]]:
    """Queue the waiting jobs whose dependencies all succeeded and fail those one of whose
    dependencies failed, was cancelled or stopped (or is gone); (job id, new state) each.
    A sweep that fails so ends its queued trials. Runs in the caller's transaction; the
    waiting rows are locked, other settlers skip them."""
    from recu_db.queue import _event, end_children  # the one writer of job events

    waiting = session.scalars(
        select(Job)
        .where(Job.state == JobState.WAITING)
        .order_by(Job.id)
        .with_for_update(skip_locked=True)
    ).all()
    if not waiting:
        return []
    wanted = {job.id: dependencies_of(job.kind, job.spec) for job in waiting}
    ids = sorted({i for deps in wanted.values() for i in deps})
    states = states_of(session, ids)
    changed: list[tuple[int, JobState]] = []
    for job in waiting:
        deps = wanted[job.id]
        broken = [i for i in deps if states.get(i) in _BROKEN or i not in states]
        if broken:
            first = broken[0]
            why = "was deleted" if first not in states else f"{states[first]}"
            target, reason = JobState.FAILED, f"dependency job {first} {why}"
            job.error = reason
        elif all(states.get(i) == JobState.SUCCEEDED for i in deps):
            target = JobState.QUEUED
            reason = "dependencies succeeded: " + ", ".join(f"job {i}" for i in deps)
        else:
            continue
        check_transition(JobState.WAITING, target)
        job.state = target
        job.updated_at = now
        _event(session, job.id, JobState.WAITING, target, job.attempt, reason, now)
        if target == JobState.FAILED and job.kind == JobKind.SWEEP:
            end_children(session, job.id, target, f"its sweep: {reason}", now)
        changed.append((job.id, target))
    return changed
