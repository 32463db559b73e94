"""Read-side queries used by the API: jobs, their history, and checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, case, func, select
from sqlalchemy.orm import Session, aliased

from recu_db.models import (
    Checkpoint,
    EpochMetric,
    EpochTelemetry,
    Job,
    JobEvent,
    LogLine,
    RunManifestRow,
)
from recu_db.states import TERMINAL, JobState


def _listing(kind: str, state: str | None, user_id: int | None) -> list[Any]:
    """WHERE of a listing: jobs of ``kind``, in ``state`` when given, ``user_id``'s when
    given."""
    return [
        Job.kind == kind,
        *([Job.state == state] if state else []),
        *([Job.user_id == user_id] if user_id is not None else []),
    ]


def _total(session: Session, where: list[Any]) -> int:
    """How many jobs match the listing filter ``where`` (the page's total)."""
    return session.scalar(select(func.count()).select_from(Job).where(*where)) or 0


def list_jobs(
    session: Session,
    *,
    state: str | None,
    offset: int,
    limit: int,
    kind: str = "train",
    user_id: int | None = None,
) -> tuple[Sequence[Job], int]:
    """A page of jobs of ``kind`` (train, sweep or trial), newest first, and the total
    matching ``state``; only ``user_id``'s when given."""
    where = _listing(kind, state, user_id)
    total = _total(session, where)
    rows = session.scalars(
        select(Job).where(*where).order_by(Job.id.desc()).offset(offset).limit(limit)
    ).all()
    return rows, total


def _job_view() -> Select[Any]:
    """A job's columns with what its public view adds, as correlated subqueries (one
    statement, each an index look-up per row): ``latest_metrics`` (the newest epoch's),
    ``started_at`` (first went running) and ``finished_at`` (reached a terminal state)."""
    latest = (
        select(EpochMetric.metrics)
        .where(EpochMetric.job_id == Job.id)
        .order_by(EpochMetric.epoch.desc())
        .limit(1)
        .scalar_subquery()
    )
    started = select(func.min(JobEvent.at)).where(
        JobEvent.job_id == Job.id, JobEvent.to_state == JobState.RUNNING
    )
    finished = select(func.max(JobEvent.at)).where(
        JobEvent.job_id == Job.id, JobEvent.to_state.in_(TERMINAL)
    )
    return select(
        *Job.__table__.c,
        latest.label("latest_metrics"),
        started.scalar_subquery().label("started_at"),
        finished.scalar_subquery().label("finished_at"),
    )


def job_view(session: Session, job_id: int) -> Row[Any] | None:
    """One job's row with ``latest_metrics``, ``started_at`` and ``finished_at``, in one
    statement (Core: no ORM objects on the read path); None when there is no such job."""
    return session.execute(_job_view().where(Job.id == job_id)).first()


def job_views(
    session: Session,
    *,
    state: str | None,
    offset: int,
    limit: int,
    kind: str = "train",
    user_id: int | None = None,
) -> tuple[Sequence[Row[Any]], int]:
    """``list_jobs`` as view rows (``job_view``): a page in one statement, and the total."""
    where = _listing(kind, state, user_id)
    total = _total(session, where)
    rows = session.execute(
        _job_view().where(*where).order_by(Job.id.desc()).offset(offset).limit(limit)
    ).all()
    return rows, total


def latest_metrics(session: Session, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The newest epoch's metrics for each job that has any."""
    if not job_ids:
        return {}
    newest = (
        select(EpochMetric.job_id, func.max(EpochMetric.epoch).label("epoch"))
        .where(EpochMetric.job_id.in_(job_ids))
        .group_by(EpochMetric.job_id)
        .subquery()
    )
    rows = session.execute(
        select(EpochMetric.job_id, EpochMetric.metrics).join(
            newest,
            (EpochMetric.job_id == newest.c.job_id) & (EpochMetric.epoch == newest.c.epoch),
        )
    )
    return {row.job_id: row.metrics for row in rows}


def run_times(
    session: Session, job_ids: Sequence[int]
) -> dict[int, tuple[datetime | None, datetime | None]]:
    """(first start, end) of each job from its events, in one query: when it first went
    running, and when it reached a terminal state (None while it has not)."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(
            JobEvent.job_id,
            func.min(case((JobEvent.to_state == JobState.RUNNING, JobEvent.at))).label("started"),
            func.max(case((JobEvent.to_state.in_(TERMINAL), JobEvent.at))).label("finished"),
        )
        .where(JobEvent.job_id.in_(job_ids))
        .group_by(JobEvent.job_id)
    )
    return {row.job_id: (row.started, row.finished) for row in rows}


def metrics_history(session: Session, job_id: int) -> Sequence[EpochMetric]:
    return session.scalars(
        select(EpochMetric).where(EpochMetric.job_id == job_id).order_by(EpochMetric.epoch)
    ).all()


def telemetry_history(
    session: Session, job_id: int, max_points: int | None = None
) -> Sequence[EpochTelemetry]:
    """Per-epoch telemetry in epoch order; with ``max_points``, only the evenly spaced
    epochs ``downsample`` keeps are read (the epoch numbers first, then those rows)."""
    where = EpochTelemetry.job_id == job_id
    if max_points is not None:
        epochs = session.scalars(
            select(EpochTelemetry.epoch).where(where).order_by(EpochTelemetry.epoch)
        ).all()
        if len(epochs) > max_points:
            where = where & EpochTelemetry.epoch.in_(downsample(epochs, max_points))
    return session.scalars(select(EpochTelemetry).where(where).order_by(EpochTelemetry.epoch)).all()


def log_lines(session: Session, job_id: int, *, offset: int, limit: int) -> Sequence[LogLine]:
    return session.scalars(
        select(LogLine)
        .where(LogLine.job_id == job_id)
        .order_by(LogLine.id)
        .offset(offset)
        .limit(limit)
    ).all()


def events(session: Session, job_id: int) -> Sequence[JobEvent]:
    return session.scalars(
        select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    ).all()


def job_checkpoints(session: Session, job_id: int) -> Sequence[Checkpoint]:
    return session.scalars(
        select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.epoch)
    ).all()


def best_and_last(
    session: Session, job_id: int
) -> tuple[Sequence[Checkpoint], Checkpoint | None, Checkpoint | None]:
    """The job's stored checkpoints (oldest first), the one of its best epoch (None when
    none stored is; the newest of that epoch) and its newest (highest epoch, then id)."""
    stored = job_checkpoints(session, job_id)
    best_epoch = latest_metrics(session, [job_id]).get(job_id, {}).get("best_epoch")
    best = next((c for c in stored if best_epoch is not None and c.epoch == int(best_epoch)), None)
    last = max(stored, key=lambda c: (c.epoch, c.id), default=None)
    return stored, best, last


def run_manifest(session: Session, job_id: int) -> RunManifestRow | None:
    """The reproducibility manifest of the job's latest attempt that recorded one."""
    return session.scalars(
        select(RunManifestRow)
        .where(RunManifestRow.job_id == job_id)
        .order_by(RunManifestRow.attempt.desc())
        .limit(1)
    ).first()


def downsample(items: Sequence[Any], max_points: int | None) -> list[Any]:
    """At most ``max_points`` items, evenly spaced, always keeping the first and the last."""
    if max_points is None or len(items) <= max_points:
        return list(items)
    if max_points == 1:
        return [items[-1]]
    step = (len(items) - 1) / (max_points - 1)
    return [items[round(i * step)] for i in range(max_points)]


def children(session: Session, parent_id: int) -> Sequence[Job]:
    """A sweep's trials in plan order."""
    return session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.id)).all()


def metrics_histories(session: Session, job_ids: Sequence[int]) -> dict[int, list[EpochMetric]]:
    """Per-epoch metrics of several jobs in one query, each list in epoch order."""
    out: dict[int, list[EpochMetric]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        rows = session.scalars(
            select(EpochMetric)
            .where(EpochMetric.job_id.in_(job_ids))
            .order_by(EpochMetric.job_id, EpochMetric.epoch)
        )
        for row in rows:
            out[row.job_id].append(row)
    return out


def sweep_version(session: Session, sweep_id: int) -> tuple[Any, ...] | None:
    """What a sweep's view is judged changed by, in one query: its state and update time,
    its trials' count and latest update, and its trials' latest epoch row and checkpoint
    (None when the sweep is gone). Equal versions: nothing a view shows has changed."""
    trial = aliased(Job)
    trial_ids = select(trial.id).where(trial.parent_id == sweep_id)
    row = session.execute(
        select(
            Job.state,
            Job.updated_at,
            select(func.count(trial.id)).where(trial.parent_id == sweep_id).scalar_subquery(),
            select(func.max(trial.updated_at)).where(trial.parent_id == sweep_id).scalar_subquery(),
            select(func.max(EpochMetric.id))
            .where(EpochMetric.job_id.in_(trial_ids))
            .scalar_subquery(),
            select(func.max(EpochMetric.recorded_at))
            .where(EpochMetric.job_id.in_(trial_ids))
            .scalar_subquery(),
            select(func.max(Checkpoint.id))
            .where(Checkpoint.job_id.in_(trial_ids))
            .scalar_subquery(),
        ).where(Job.id == sweep_id)
    ).first()
    return None if row is None else tuple(row)
