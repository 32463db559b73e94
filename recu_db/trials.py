"""A sweep's trials: child jobs planned at submit, run by the worker that holds the sweep.

Every trial row is written with its sweep (state queued, ``trial_key`` its index in the
plan) and is never claimed on its own. Under its sweep's lease a trial is started (queued
-> running), or, after the sweep was re-claimed, taken over with a new attempt, so a dead
worker's late writes are fenced off. A trial that already ended is not started again. Each
trial then has a lease of its own for its fenced writes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from recu_core.jobspec import JobSpec
from recu_db.models import Job
from recu_db.queue import Db, Lease, _event, end_children, fence, utcnow
from recu_db.specs import parse_spec
from recu_db.states import TERMINAL, JobKind, JobState


def start_trial(db: Db, sweep: Lease, key: str, *, now: datetime | None = None) -> Lease | None:
    """The trial's lease, or None when the sweep is not ours and running any more or the
    trial already ended (a trial being cancelled ends cancelled here)."""
    now = now or utcnow()
    with db.begin() as session:
        parent = session.scalars(select(Job).where(*fence(sweep)).with_for_update()).first()
        if parent is None or parent.state != JobState.RUNNING:
            return None
        trial = session.scalars(
            select(Job).where(Job.parent_id == sweep.job_id, Job.trial_key == key).with_for_update()
        ).one()
        current = JobState(trial.state)
        if current in TERMINAL:
            return None
        if current == JobState.CANCELLING:
            trial.state, trial.owner, trial.updated_at = JobState.CANCELLED, None, now
            reason = "cancelled before its sweep resumed it"
            _event(session, trial.id, current, JobState.CANCELLED, trial.attempt, reason, now)
            return None
        trial.attempt += 1
        trial.state = JobState.RUNNING
        trial.owner = sweep.owner
        trial.updated_at = now
        reason = f"started by sweep {sweep.job_id} attempt {sweep.attempt}"
        _event(session, trial.id, current, JobState.RUNNING, trial.attempt, reason, now)
        return Lease(
            job_id=trial.id,
            attempt=trial.attempt,
            owner=sweep.owner,
            spec=parse_spec(JobKind.TRIAL, trial.spec),
            kind=JobKind.TRIAL,
        )


def end_trial(
    db: Db,
    sweep: Lease,
    key: str,
    target: JobState | None,
    reason: str,
    *,
    error: str | None = None,
    now: datetime | None = None,
) -> bool:
    """End one trial still live under this sweep's lease (the scheduler stopped it, or its
    actor died); False, writing nothing, when it already ended or the lease is stale.
    ``target=None``: succeeded when it recorded all its epochs, else stopped (early)."""
    now = now or utcnow()
    with db.begin() as session:
        if session.scalars(select(Job.id).where(*fence(sweep))).first() is None:
            return False
        trial = session.scalars(
            select(Job)
            .where(
                Job.parent_id == sweep.job_id,
                Job.trial_key == key,
                Job.owner == sweep.owner,
                Job.state.in_((JobState.RUNNING, JobState.CANCELLING)),
            )
            .with_for_update()
        ).first()
        if trial is None:
            return False
        current = JobState(trial.state)
        if target is None:
            done = trial.current_epoch >= JobSpec.model_validate(trial.spec).epochs
            target = JobState.SUCCEEDED if done else JobState.STOPPED
            reason = reason if target == JobState.STOPPED else "ran all its epochs"
        final = JobState.CANCELLED if current == JobState.CANCELLING else target
        trial.state, trial.owner, trial.error, trial.updated_at = final, None, error, now
        _event(session, trial.id, current, final, trial.attempt, reason, now)
    return True


def end_open_trials(
    db: Db, sweep: Lease, target: JobState, reason: str, *, now: datetime | None = None
) -> bool:
    """End every trial of the sweep not ended yet (queued ones as cancelled); False,
    writing nothing, when the sweep's lease is stale."""
    now = now or utcnow()
    with db.begin() as session:
        if session.scalars(select(Job.id).where(*fence(sweep))).first() is None:
            return False
        end_children(session, sweep.job_id, target, reason, now)
    return True
