"""POST /sweeps bodies and the sweep views (the sweep itself: ``recu_core.sweepspec``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from recu_core.sweepspec import SweepSpec
from recu_db.states import JobState
from service.schemas import CheckpointPublic


class SweepCreate(SweepSpec):
    """POST /sweeps: the sweep, and how the queue runs it."""

    priority: int = Field(0, ge=-1000, le=1000)
    max_attempts: int = Field(3, ge=1, le=100)


class TrialPublic(BaseModel):
    id: int
    index: int
    state: JobState
    terminal: bool = Field(description="The state is final: nothing will change any more.")
    attempt: int
    current_epoch: int
    error: str | None
    params: dict[str, Any]
    metrics: list[dict[str, Any]]


class BestTrial(BaseModel):
    trial_id: int
    index: int
    value: float
    params: dict[str, Any]
    checkpoint: CheckpointPublic | None


class SweepPublic(BaseModel):
    id: int
    state: JobState
    terminal: bool = Field(description="The state is final: nothing will change any more.")
    pending_reason: str | None = Field(
        None,
        description="Why a queued sweep has not started: waiting for busy resources, or a "
        "demand no node of the cluster can ever satisfy (unschedulable).",
    )
    attempt: int
    max_attempts: int
    priority: int
    error: str | None
    spec: dict[str, Any]
    trial_counts: dict[str, int]
    best: BestTrial | None
    created_at: datetime
    updated_at: datetime


class SweepDetail(SweepPublic):
    trials: list[TrialPublic]


class SweepPage(BaseModel):
    items: list[SweepPublic]
    total: int
    offset: int
    limit: int
