"""The sweep contract: a base job spec, a search space and how to search it.

A dimension is one of: ``{"kind": "grid", "values": [...]}`` (every value, crossed with
the other grids), ``{"kind": "choice", "values": [...]}`` (one at random per trial),
``{"kind": "uniform", "low": a, "high": b}`` and ``{"kind": "loguniform", ...}`` (log-scale,
a > 0). Trials = product of the grids x ``num_samples``, as in Ray Tune's variant generator.
The API validates a POST /sweeps body into a ``SweepSpec``, the queue stores it, the sweep
worker reads it typed. Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recu_core.jobspec import JobSpec

#: Fields a sweep may search, as dotted paths into the job spec.
SEARCHABLE = (
    "tau.tau_s",
    "tau.tau_e",
    "tau.kind",
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.momentum",
    "optimizer.name",
    "binary_options.activation_ste",
    "binary_options.clamp",
    "binary_options.standardize",
    "batch_size",
    "seed",
)
# What a sweep can optimise: an epoch's figures, or the best test accuracy so far (the
# figure papers report; docs/models.md).
SweepMetric = Literal["test_acc", "best_test_acc", "test_loss", "train_acc", "train_loss"]
METRICS = get_args(SweepMetric)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Grid(_Strict):
    kind: Literal["grid"]
    values: list[Any] = Field(min_length=1, max_length=1000)


class Choice(_Strict):
    kind: Literal["choice"]
    values: list[Any] = Field(min_length=1, max_length=1000)


class Uniform(_Strict):
    kind: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _non_empty(self) -> Self:
        if not self.low < self.high:
            raise ValueError(f"empty range: low ({self.low}) must be below high ({self.high})")
        return self


class LogUniform(Uniform):
    kind: Literal["loguniform"]  # type: ignore[assignment]

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.low <= 0:
            raise ValueError(f"a log-uniform range needs low > 0, got {self.low}")
        return self


Dimension = Annotated[Grid | Choice | Uniform | LogUniform, Field(discriminator="kind")]


class Scheduler(_Strict):
    kind: Literal["asha", "none"] = Field(
        "asha", description="asha: stop poor trials early (Ray Tune's ASHA); none: run all."
    )
    grace_period: int = Field(1, ge=1, description="Epochs every trial runs before a stop.")
    reduction_factor: float = Field(3.0, gt=1.0, le=100.0)


class SweepSpec(_Strict):
    """A sweep: the job every trial starts from, what to search, and how."""

    base: JobSpec = Field(
        description="The job spec of every trial (as for POST /jobs, without its queue fields)."
    )
    space: dict[str, Dimension] = Field(
        min_length=1,
        description=f"Searched fields: {', '.join(SEARCHABLE)}.",
        json_schema_extra={"propertyNames": {"enum": list(SEARCHABLE)}},
    )
    num_samples: int = Field(1, ge=1, le=1000, description="Samples per grid point.")
    search: Literal["random", "grid"] = Field(
        "random", description="random: sample choice/uniform dimensions; grid: grids only."
    )
    scheduler: Scheduler = Scheduler()
    metric: SweepMetric = "test_acc"
    mode: Literal["max", "min"] = "max"
    max_concurrent_trials: int = Field(1, ge=1, le=256)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the random search.")

    @classmethod
    def from_fields(cls, model: BaseModel) -> SweepSpec:
        """The SweepSpec part of a larger model (a request body that adds queue fields)."""
        return cls.model_validate(model.model_dump(include=set(cls.model_fields)))

    def stored(self) -> dict[str, Any]:
        """The JSON the queue stores (parsed back with ``SweepSpec.model_validate``)."""
        return self.model_dump(mode="json")
