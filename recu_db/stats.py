"""The service's state as figures for monitoring (``GET /metrics``), read from the
database at scrape time, so every API process reports the same values.

Counters (claims, lease expiries) are counts of the job events that record them: they
only grow, as Prometheus counters must (events are deleted only with their job).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recu_db.models import Job, JobEvent
from recu_db.queue import LEASE_EXPIRED
from recu_db.reads import latest_metrics
from recu_db.states import JobState


@dataclass(frozen=True)
class RunningJob:
    """A running job's newest epoch figures (None before its first epoch)."""

    job_id: int
    kind: str
    epoch_time_s: float | None
    images_per_s: float | None


@dataclass(frozen=True)
class ServiceStats:
    jobs_by_state: dict[str, int]  # every state, 0 included; jobs, sweeps and trials
    queued: int  # what a claim can take: queued jobs and sweeps (trials run in their sweep)
    oldest_queued_age_s: float  # 0 when nothing is queued
    claims: int  # queued -> running transitions ever recorded
    lease_expiries: int  # leases the reaper found expired
    running: list[RunningJob] = field(default_factory=list)


def service_stats(session: Session, now: datetime) -> ServiceStats:
    """Five aggregate reads: jobs by state, the claimable queue, the two event counts, and
    the running jobs' newest epochs."""
    counted = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    by_state = {state.value: counted.get(state.value, 0) for state in JobState}
    claimable = (Job.state == JobState.QUEUED, Job.kind != "trial")
    queued, oldest = session.execute(
        select(func.count(), func.min(Job.created_at)).where(*claimable)
    ).one()
    claims = session.scalar(
        select(func.count()).where(
            JobEvent.from_state == JobState.QUEUED, JobEvent.to_state == JobState.RUNNING
        )
    )
    expiries = session.scalar(
        select(func.count()).where(JobEvent.reason.startswith(LEASE_EXPIRED, autoescape=True))
    )
    live = session.execute(
        select(Job.id, Job.kind).where(Job.state == JobState.RUNNING).order_by(Job.id)
    ).all()
    figures = latest_metrics(session, [row.id for row in live])
    running = [
        RunningJob(
            job_id=row.id,
            kind=row.kind,
            epoch_time_s=figures.get(row.id, {}).get("epoch_time_s"),
            images_per_s=figures.get(row.id, {}).get("images_per_s"),
        )
        for row in live
    ]
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return ServiceStats(by_state, queued, max(age, 0.0), claims or 0, expiries or 0, running)
