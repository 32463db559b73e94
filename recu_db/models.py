"""Tables: users and their API tokens, jobs, the events of every transition, per-epoch
metrics and telemetry, logs, checkpoints, and what each worker's Ray cluster has."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases: SQLite keeps no offset, so values
    read back are marked UTC (every value written is UTC, see ``queue.utcnow``)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """Whoever owns jobs and sweeps; ``role`` "admin" sees everyone's."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="user")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # fair share (recu_db.fairshare): finished work's decayed usage as of usage_at_s
    # (Unix seconds: the decay is computed in SQL alike on both databases)
    usage: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    usage_at_s: Mapped[float | None] = mapped_column(Float)


class ApiToken(Base):
    """A bearer token: ``key_id`` is public (it finds the row), the secret is stored only
    as its sha256 (a random 256-bit secret needs no slow hash)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


#: A partial index over the queued jobs alone (a claim's candidates).
_QUEUED_ONLY: dict[str, Any] = {
    "postgresql_where": text("state = 'queued'"),
    "sqlite_where": text("state = 'queued'"),
}


class Job(Base):
    """A queue item. ``attempt`` and ``owner`` fence every write after a claim.

    ``kind``: "train" (a training job), "sweep" (a Ray Tune search, claimed like a job) or
    "trial" (one training run of a sweep: ``parent_id`` is the sweep, ``trial_key`` Tune's
    trial id; never queued, run and fenced by its sweep's worker). ``user_id``: the owner
    (trials inherit their sweep's); an idempotency key is unique per owner.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("parent_id", "trial_key"),
        UniqueConstraint("user_id", "idempotency_key"),
        # the queued jobs' indexes in claim order follow the class; the per-user cap's count
        Index("ix_jobs_user_state", "user_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="train", index=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    trial_key: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    current_epoch: Mapped[int] = mapped_column(Integer, default=0)
    cpus: Mapped[float] = mapped_column(Float, default=1.0)
    gpus: Mapped[float] = mapped_column(Float, default=0.0)
    # one Ray Train worker's share: a claim skips a job no node of the cluster can place
    worker_cpus: Mapped[float] = mapped_column(Float, default=1.0)
    worker_gpus: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # this attempt's start
    # a worker draining its cluster for this (wide) job, until then (recu_db.fairshare)
    reserved_by: Mapped[str | None] = mapped_column(String(200))
    reserved_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


# The queued jobs alone (a claim's candidates): in claim order, by owner in that order
# (fair share's probe per owner) and by age (aging's probe).
Index("ix_jobs_queued", Job.priority.desc(), Job.id, **_QUEUED_ONLY)
Index("ix_jobs_queued_owner", Job.user_id, Job.priority.desc(), Job.id, **_QUEUED_ONLY)
Index("ix_jobs_queued_created", Job.created_at, **_QUEUED_ONLY)


class JobEvent(Base):
    """One row per state transition: when, from what, to what, and why."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)


class EpochMetric(Base):
    """Per-epoch figures keyed by (job, epoch): re-running an epoch overwrites, never adds."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("job_id", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class EpochTelemetry(Base):
    """Per-layer weight telemetry of one epoch (recu_core.telemetry), keyed like metrics."""

    __tablename__ = "epoch_telemetry"
    __table_args__ = (UniqueConstraint("job_id", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    telemetry: Mapped[dict[str, Any]] = mapped_column(JSON)


class RunManifestRow(Base):
    """One attempt's reproducibility manifest (``recu_core.manifest.RunManifest`` as JSON),
    written by rank 0 when the attempt's training starts."""

    __tablename__ = "run_manifests"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)


class LogLine(Base):
    """Training output, one row per line, in order."""

    __tablename__ = "log_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    line: Mapped[str] = mapped_column(Text)


class Checkpoint(Base):
    """A stored checkpoint's metadata; its bytes live in ``checkpoint_chunks``."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CheckpointChunk(Base):
    """Checkpoint bytes in fixed-size chunks, so neither writing nor streaming a large
    checkpoint ever holds it in memory twice."""

    __tablename__ = "checkpoint_chunks"

    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Export(Base):
    """A checkpoint packed as a ``.bnn`` file by an export job (``job_id``); one per
    checkpoint, deleted with it (ON DELETE CASCADE; the keep-K prune also deletes it)."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="CASCADE"), unique=True
    )
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Worker(Base):
    """What one queue worker's Ray cluster has, as it last published it (``recu_db.cluster``):
    ``nodes`` the totals of each alive node ([{"CPU": c, "GPU": g}, ...]), ``free`` what
    the worker could give a new job then ({"CPU": c, "GPU": g})."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    nodes: Mapped[list[dict[str, float]]] = mapped_column(JSON)
    free: Mapped[dict[str, float]] = mapped_column(JSON)
