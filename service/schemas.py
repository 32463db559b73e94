"""Request and response bodies. The job itself is ``recu_core.jobspec.JobSpec``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from recu_core.jobspec import JobSpec
from recu_core.manifest import RunManifest
from recu_db.states import JobKind, JobState


class JobCreate(JobSpec):
    """POST /jobs: the job (JobSpec) and what only the queue owns."""

    priority: int = Field(0, ge=-1000, le=1000)
    max_attempts: int = Field(3, ge=1, le=100)


class JobPublic(BaseModel):
    id: int
    kind: JobKind = Field(
        description="train, trial (one run of a sweep: parent_id), or export (packs a checkpoint)."
    )
    parent_id: int | None
    state: JobState
    terminal: bool = Field(description="The state is final: nothing will change any more.")
    pending_reason: str | None = Field(
        None,
        description="Why a queued job has not started: waiting for busy resources, or a "
        "demand no node of the cluster can ever satisfy (unschedulable). Given by the GETs; "
        "the POST answer leaves it null (it reads no cluster state, to keep submits cheap).",
    )
    attempt: int
    max_attempts: int
    priority: int
    current_epoch: int
    best_test_acc: float | None = Field(
        None, description="Best test accuracy over the epochs so far (what the paper reports)."
    )
    best_epoch: int | None = Field(
        None,
        description="The epoch of the kept best checkpoint: the best validation epoch with "
        "a validation split, else the best test epoch.",
    )
    last_test_acc: float | None = Field(None, description="The latest epoch's test accuracy.")
    latest_metrics: dict[str, Any] | None
    error: str | None
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = Field(None, description="When it first went running.")
    finished_at: datetime | None = Field(None, description="When it reached its end state.")


class JobPage(BaseModel):
    items: list[JobPublic]
    total: int
    offset: int
    limit: int


class EpochMetrics(BaseModel):
    epoch: int
    attempt: int
    metrics: dict[str, Any]
    recorded_at: datetime


class EpochTelemetryPublic(BaseModel):
    epoch: int
    telemetry: dict[str, Any]


class LogLinePublic(BaseModel):
    attempt: int
    at: datetime
    line: str


class EventPublic(BaseModel):
    at: datetime
    from_state: str | None
    to_state: str
    attempt: int
    reason: str


class CheckpointPublic(BaseModel):
    id: int
    job_id: int
    epoch: int
    attempt: int
    size: int
    sha256: str
    metrics: dict[str, Any]
    created_at: datetime
    best: bool = Field(False, description="The checkpoint of the job's best_epoch.")
    last: bool = Field(
        False, description="The job's newest stored checkpoint (highest epoch, then id)."
    )


class ExportPublic(BaseModel):
    """A stored ``.bnn`` export of a checkpoint."""

    checkpoint_id: int
    sha256: str
    size: int
    download_url: str = Field(description="GET it for the .bnn bytes.")


class ExportPending(BaseModel):
    """An export job of the checkpoint, queued or running: poll GET /jobs/{job_id}."""

    checkpoint_id: int
    job_id: int
    state: str


class CancelResult(BaseModel):
    id: int
    state: JobState
    terminal: bool


class JobManifest(RunManifest):
    """GET /jobs/{id}/manifest: the reproducibility manifest of the job's latest attempt
    that started training."""

    attempt: int = Field(description="The attempt it describes (1 for the first).")
    recorded_at: datetime


class ComparedJob(BaseModel):
    """One job of GET /compare: what it is, how far it got, and its curves."""

    id: int
    kind: JobKind
    state: JobState
    terminal: bool
    current_epoch: int
    spec: dict[str, Any] = Field(description="Its resolved job spec (every default filled).")
    best_test_acc: float | None
    best_epoch: int | None
    last_test_acc: float | None = Field(description="The latest epoch's test accuracy.")
    metrics: list[EpochMetrics] = Field(description="Its epochs, max_points at most.")
    created_at: datetime


class ConfigDifference(BaseModel):
    """A configuration field whose value is not the same in every compared job."""

    path: str = Field(description="Its dotted path in the job spec (e.g. optimizer.lr).")
    values: list[Any] = Field(
        description="Its value per job, in the order of jobs (null where a spec has none; "
        "a list is one value)."
    )


class Comparison(BaseModel):
    """GET /compare: the jobs in the order asked, and where their configurations differ."""

    jobs: list[ComparedJob]
    differences: list[ConfigDifference] = Field(description="Sorted by path.")
