"""POST /sweeps bodies and the sweep views (the sweep itself: ``recu_core.sweepspec``)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Self

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


class Spread(BaseModel):
    """A figure over a group's trials that reported it: how many, their mean, and their
    sample standard deviation (n - 1; null below two)."""

    n: int
    mean: float | None
    std: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Self:
        return cls(
            n=len(values),
            mean=statistics.fmean(values) if values else None,
            std=statistics.stdev(values) if len(values) > 1 else None,
        )


class SeedGroup(BaseModel):
    """One point of the space run once per seed (trial i is in group i // len(seeds))."""

    index: int
    params: dict[str, Any] = Field(description="The point's searched values (no seed).")
    trial_ids: list[int]
    seeds: list[int]
    reported: int = Field(description="How many of its trials recorded an epoch.")
    best_test_acc: Spread = Field(description="Each trial's best test accuracy so far.")
    last_test_acc: Spread = Field(description="Each trial's latest epoch's test accuracy.")
    metric: Spread = Field(
        description="The sweep's metric (each trial's latest value): what rank_by "
        "'group_mean' compares."
    )
    best: bool = Field(False, description="The best group (rank_by 'group_mean' only).")


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
    best: BestTrial | None = Field(
        description="rank_by 'trial': the trial whose latest metric is best by mode; "
        "rank_by 'group_mean': that trial within the best group (best_group)."
    )
    best_group: int | None = Field(
        None,
        description="rank_by 'group_mean': the index of the group (point) whose mean metric "
        "over its seeds is best, counting the trials that reported it; else null.",
    )
    created_at: datetime
    updated_at: datetime


class SweepDetail(SweepPublic):
    trials: list[TrialPublic]
    groups: list[SeedGroup] = Field(
        description="With seeds: one per point of the space, its mean +- std over seeds; "
        "without: empty."
    )


class SweepPage(BaseModel):
    items: list[SweepPublic]
    total: int
    offset: int
    limit: int
