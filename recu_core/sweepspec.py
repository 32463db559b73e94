"""The sweep contract: a base job spec, a search space and how to search it.

A dimension is one of: ``{"kind": "grid", "values": [...]}`` (every value, crossed with
the other grids), ``{"kind": "choice", "values": [...]}`` (one at random per trial),
``{"kind": "uniform", "low": a, "high": b}`` and ``{"kind": "loguniform", ...}`` (log-scale,
a > 0). Trials = product of the grids x ``num_samples``, as in Ray Tune's variant generator,
x the number of ``seeds`` when given: a seed group runs every point of the space once per
seed (``base.seed`` set to each), so a point is judged by its mean over seeds (seed spread
on CIFAR is about 0.4 points: one run does not separate two methods). The API validates
a POST /sweeps body into a ``SweepSpec``, the queue stores it, the sweep worker reads it
typed. Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self, get_args

from annotated_types import Ge, Le
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from recu_core.config import StrictModel
from recu_core.jobspec import JobSpec
from recu_core.text import SafeStr, Scalar

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
#: How a sweep names its best: its best trial, or the best trial of the point whose mean
#: over its seeds is best.
RankBy = Literal["trial", "group_mean"]
#: At most this many seeds per point (a group's mean +- std needs a handful, not hundreds).
MAX_SEEDS = 20


def _whole(value: Any) -> Any:
    """A whole float as its int (JSON's ``3.0`` is ``3``: ``whole_numbers_as_int`` for the
    items of a list)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


TrainingSeed = Annotated[int, Ge(0), Le(2**31 - 1), BeforeValidator(_whole)]


class Grid(StrictModel):
    kind: Literal["grid"]
    values: list[Scalar] = Field(
        min_length=1, max_length=1000, description="Booleans, numbers or strings (<= 200)."
    )


class Choice(StrictModel):
    kind: Literal["choice"]
    values: list[Scalar] = Field(
        min_length=1, max_length=1000, description="Booleans, numbers or strings (<= 200)."
    )


class Uniform(StrictModel):
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

_KEEP = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _field_schema(path: str) -> dict[str, Any]:
    """The JSON schema of the job spec's field at the dotted ``path`` (its type and bounds)."""
    schema = JobSpec.model_json_schema()
    node: dict[str, Any] = schema
    for key in path.split("."):
        node = node["properties"][key]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return {k: v for k, v in node.items() if k in _KEEP}


def _dimension_schema(path: str) -> dict[str, Any]:
    """What a dimension over ``path`` may be: values of the field's own type and bounds;
    a uniform or log-uniform range only over a float field (log-uniform: above 0)."""
    field = _field_schema(path)
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "kind": {"const": kind},
                "values": {"type": "array", "items": field, "minItems": 1, "maxItems": 1000},
            },
            "required": ["kind", "values"],
            "additionalProperties": False,
        }
        for kind in ("grid", "choice")
    ]
    if field.get("type") == "number":
        for kind in ("uniform", "loguniform"):
            bound = dict(field)
            if kind == "loguniform":  # log-scale: above 0
                bound["exclusiveMinimum"] = max(bound.get("exclusiveMinimum", 0), 0)
            options.append(
                {
                    "type": "object",
                    "properties": {"kind": {"const": kind}, "low": bound, "high": bound},
                    "required": ["kind", "low", "high"],
                    "additionalProperties": False,
                }
            )
    return {"oneOf": options}


def _space_json_schema(schema: dict[str, Any]) -> None:
    """The schema of ``space`` says per searchable field what the API accepts (a value
    the field refuses is refused in the sweep: a schema-valid space is accepted, but for
    the cross-field rules JSON Schema cannot state, e.g. low < high; docs/reliability.md)."""
    description = schema.get("description")
    schema.clear()
    schema.update(
        type="object",
        additionalProperties=False,
        properties={path: _dimension_schema(path) for path in SEARCHABLE},
        description=description,
    )


class Scheduler(StrictModel):
    kind: Literal["asha", "none"] = Field(
        "asha", description="asha: stop poor trials early (Ray Tune's ASHA); none: run all."
    )
    grace_period: int = Field(1, ge=1, description="Epochs every trial runs before a stop.")
    reduction_factor: float = Field(3.0, gt=1.0, le=100.0)


class SweepSpec(StrictModel):
    """A sweep: the job every trial starts from, what to search, and how."""

    # The schema states the rules between fields: search 'grid' enumerates values, so only
    # grid and choice; _trials_do_not_export; and _seeds_fit_the_space, _group_mean_needs_seeds.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"search": {"const": "grid"}}, "required": ["search"]},
                    "then": {
                        "properties": {
                            "space": {
                                "patternProperties": {
                                    "": {"properties": {"kind": {"enum": ["grid", "choice"]}}}
                                }
                            }
                        }
                    },
                },
                {
                    "properties": {
                        "base": {
                            "properties": {
                                "checkpoint": {"properties": {"export": {"const": False}}}
                            }
                        }
                    }
                },
                {
                    "if": {"properties": {"seeds": {"type": "array"}}, "required": ["seeds"]},
                    "then": {"properties": {"space": {"not": {"required": ["seed"]}}}},
                    "else": {"properties": {"space": {"minProperties": 1}}, "required": ["space"]},
                },
                {
                    "if": {
                        "properties": {"rank_by": {"const": "group_mean"}},
                        "required": ["rank_by"],
                    },
                    "then": {
                        "properties": {
                            "seeds": {"type": "array"},
                            "scheduler": {"properties": {"kind": {"const": "none"}}},
                        },
                        "required": ["seeds"],
                    },
                },
            ]
        }
    )

    base: JobSpec = Field(
        description="The job spec of every trial (as for POST /jobs, without its queue fields)."
    )
    space: dict[SafeStr, Dimension] = Field(
        default_factory=dict,
        description=f"Searched fields: {', '.join(SEARCHABLE)}. Empty only with seeds (the "
        "base job once per seed).",
        json_schema_extra=_space_json_schema,
    )
    num_samples: int = Field(1, ge=1, le=1000, description="Samples per grid point.")
    search: Literal["random", "grid"] = Field(
        "random", description="random: sample choice/uniform dimensions; grid: grids only."
    )
    scheduler: Scheduler = Field(
        default_factory=Scheduler,
        description="kind ASHA by default; with seeds, none by default (ASHA would stop a "
        "point's weaker seeds early and bias its mean).",
    )
    metric: SweepMetric = "test_acc"
    mode: Literal["max", "min"] = "max"
    max_concurrent_trials: int = Field(1, ge=1, le=256)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the random search.")
    seeds: list[TrainingSeed] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SEEDS,
        json_schema_extra={"uniqueItems": True},
        validate_default=True,
        description="Training seeds: every point of the space runs once per seed "
        "(base.seed set to each), and GET /sweeps/{id} reports each point's mean and "
        "standard deviation over them (its groups). Not with 'seed' in space.",
    )
    rank_by: RankBy = Field(
        "trial",
        description="trial: the best trial is the one whose latest metric is best; "
        "group_mean: the point whose mean metric over its seeds is best (its best trial is "
        "then named). group_mean needs seeds and scheduler 'none'.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_asha_by_default_over_seeds(cls, data: Any) -> Any:
        """With seeds and no scheduler.kind given, run every seed to its end (kind
        'none'): a group's mean over seeds ASHA stopped early would mix epochs."""
        if not isinstance(data, dict) or not data.get("seeds"):
            return data
        scheduler = data.get("scheduler", {})
        if isinstance(scheduler, dict) and "kind" not in scheduler:
            return {**data, "scheduler": {**scheduler, "kind": "none"}}
        return data

    @field_validator("seeds")
    @classmethod
    def _seeds_fit_the_space(cls, seeds: list[int] | None, info: ValidationInfo) -> Any:
        """Unique seeds, not beside a searched 'seed'; an empty space needs seeds."""
        space = info.data.get("space")
        if seeds is None:
            if space == {}:
                raise ValueError(
                    "the space is empty and no seeds are given: search at least one field "
                    "(space), or give seeds to run the base job once per seed"
                )
            return seeds
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seeds must be unique; repeated: {repeated}")
        if space and "seed" in space:
            raise ValueError(
                "seeds run every point once per seed, so 'seed' cannot also be searched: "
                "remove 'seed' from space, or drop seeds"
            )
        return seeds

    @field_validator("rank_by")
    @classmethod
    def _group_mean_needs_seeds(cls, rank_by: str, info: ValidationInfo) -> str:
        """A group mean needs groups (seeds), and every seed run to its end."""
        if rank_by != "group_mean":
            return rank_by
        if not info.data.get("seeds"):
            raise ValueError(
                "rank_by 'group_mean' ranks a point by its mean over seeds: give seeds "
                "(e.g. [0, 1, 2]), or rank_by 'trial'"
            )
        scheduler = info.data.get("scheduler")
        if scheduler is not None and scheduler.kind != "none":
            raise ValueError(
                f"rank_by 'group_mean' compares every seed's final figure, but scheduler "
                f"{scheduler.kind!r} stops a point's weaker seeds early: set scheduler.kind "
                "to 'none' (the default with seeds), or rank_by 'trial'"
            )
        return rank_by

    @property
    def group_size(self) -> int:
        """Trials per point of the space: one per seed (1 without seeds)."""
        return len(self.seeds) if self.seeds else 1

    @property
    def searched(self) -> list[str]:
        """The dotted paths a trial's params name: the space's, and 'seed' with seeds."""
        return [*self.space, *(["seed"] if self.seeds else [])]

    @model_validator(mode="after")
    def _trials_do_not_export(self) -> Self:
        """A sweep's trials are many short runs; their checkpoints export on request."""
        if self.base.checkpoint.export:
            raise ValueError(
                "base.checkpoint.export is for training jobs, not sweep trials: export a "
                "trial's checkpoint with POST /checkpoints/{id}/export"
            )
        return self
