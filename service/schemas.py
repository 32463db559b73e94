"""Request and response bodies. A job spec is a recu_core TrainConfig plus how to run it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from recu_core.config import TrainConfig


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    num_workers: int = Field(1, ge=1, le=1024, description="DDP workers (Ray Train).")
    use_gpu: bool = False
    gpus_per_worker: int = Field(0, ge=0, le=16)
    cpus_per_worker: float = Field(1.0, gt=0, le=256)


class CheckpointPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    every_epochs: int = Field(1, ge=1, le=10_000, description="Store a checkpoint every N epochs.")
    keep: int = Field(
        2,
        ge=1,
        le=1000,
        description="Keep the newest K checkpoints, and always the best epoch's (best_epoch).",
    )


class JobCreate(TrainConfig):
    """POST /jobs: the training recipe (TrainConfig) and how to run it."""

    resources: Resources = Resources()
    checkpoint: CheckpointPolicy = CheckpointPolicy()
    priority: int = Field(0, ge=-1000, le=1000)
    max_attempts: int = Field(3, ge=1, le=100)


class JobPublic(BaseModel):
    id: int
    kind: str = Field(description="train, or trial (one run of a sweep: parent_id).")
    parent_id: int | None
    state: str
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


class CancelResult(BaseModel):
    id: int
    state: str
