"""The job contract: what one queued training job is, shared by every layer.

A ``JobSpec`` is a ``TrainConfig`` (the run) plus how the queue runs it: the cluster
resources of its Ray Train workers and its checkpoint policy. The API validates a POST
body into it, the queue stores it as JSON and parses it back once per claim, the workers
read its typed fields. Importing this module does not import torch.

Demand of one Ray Train worker: ``cpus_per_worker`` CPUs and, with ``use_gpu``,
max(1, gpus_per_worker) GPUs; the job reserves ``num_workers`` times that.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, JsonValue, model_validator

from recu_core.config import StrictModel, TrainConfig
from recu_core.recipes import RECIPES


class Resources(StrictModel):
    """What the job's Ray Train workers reserve on the cluster."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        # The schema states the cross-field rule: without use_gpu, gpus_per_worker is 0.
        json_schema_extra={
            "if": {"not": {"properties": {"use_gpu": {"const": True}}, "required": ["use_gpu"]}},
            "then": {"properties": {"gpus_per_worker": {"const": 0}}},
        },
    )

    num_workers: int = Field(1, ge=1, le=1024, description="DDP workers (Ray Train).")
    use_gpu: bool = False
    gpus_per_worker: int = Field(
        0, ge=0, le=16, description="GPUs per worker with use_gpu (0 means 1)."
    )
    cpus_per_worker: float = Field(1.0, gt=0, le=256)

    @model_validator(mode="after")
    def _gpus_need_use_gpu(self) -> Self:
        if self.gpus_per_worker and not self.use_gpu:
            raise ValueError(f"resources.gpus_per_worker={self.gpus_per_worker} needs use_gpu=true")
        return self

    @property
    def per_worker(self) -> dict[str, float]:
        """Ray resources of one worker: {"CPU": c} or {"CPU": c, "GPU": g}."""
        one = {"CPU": float(self.cpus_per_worker)}
        if self.use_gpu:
            one["GPU"] = float(max(1, self.gpus_per_worker))
        return one

    @property
    def demand(self) -> tuple[float, float]:
        """(cpus, gpus) all the job's workers reserve together."""
        one = self.per_worker
        return self.num_workers * one["CPU"], self.num_workers * one.get("GPU", 0.0)


class CheckpointPolicy(StrictModel):
    """Which epochs' checkpoints are stored and kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    every_epochs: int = Field(1, ge=1, le=10_000, description="Store a checkpoint every N epochs.")
    keep: int = Field(
        2,
        ge=1,
        le=1000,
        description="Keep the newest K checkpoints, and always the best epoch's (best_epoch).",
    )
    export: bool = Field(
        False,
        description="When the job succeeds, its worker packs every checkpoint it keeps as a "
        "1-bit .bnn file (GET /checkpoints/{id}/export serves it); training jobs only.",
    )


JobId = Annotated[int, Field(ge=1, le=2**31 - 1)]
CheckpointChoice = Literal["best", "last"]


class InitFrom(StrictModel):
    """Start from another job's trained weights (weights only: this job's own optimizer,
    schedule and epochs): the stage-2 half of a two-stage recipe."""

    job_id: JobId = Field(description="The job whose checkpoint's weights start this one.")
    checkpoint: CheckpointChoice = Field(
        "best", description="Its best epoch's checkpoint, or its last stored one."
    )


class DistillSpec(StrictModel):
    """Learn from a teacher job's soft targets (``recu_core.distill``): the teacher is
    that job's checkpoint, run in eval mode on the same batches and device."""

    teacher_job_id: JobId = Field(description="The teacher: a job of the same user.")
    checkpoint: CheckpointChoice = "best"
    temperature: float = Field(1.0, gt=0.0, le=100.0, description="T of the soft targets.")
    weight: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Weight of the soft loss; 1 - weight goes to the hard labels (ReActNet: 1).",
    )


class ExportSpec(StrictModel):
    """An export job: pack the stored checkpoint ``checkpoint_id`` as a ``.bnn`` file."""

    checkpoint_id: int = Field(ge=1, description="The stored checkpoint to export.")


#: Recipes that stream an image folder: with one of them, the streaming loader's required
#: ``dataset.image_size`` comes from the recipe, and an explicit null removes it.
_STREAMING_RECIPES: list[JsonValue] = [
    name
    for name, recipe in sorted(RECIPES.items())
    if recipe.spec["dataset"].get("loader") == "streaming"
]


class JobSpec(TrainConfig):
    """One training job: the run (TrainConfig) and how the queue runs it."""

    # The schema states _device_follows_resources: 'cuda...' needs use_gpu, 'cpu' refuses
    # it, and 'mps' is no device a queued job can reserve; and that a streaming recipe's
    # image_size may be overridden but not nulled (DatasetConfig states the rest).
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"device": {"pattern": "^cuda"}}, "required": ["device"]},
                    "then": {
                        "required": ["resources"],
                        "properties": {
                            "resources": {
                                "required": ["use_gpu"],
                                "properties": {"use_gpu": {"const": True}},
                            }
                        },
                    },
                },
                {
                    "if": {"properties": {"device": {"const": "cpu"}}, "required": ["device"]},
                    "then": {
                        "properties": {"resources": {"properties": {"use_gpu": {"const": False}}}}
                    },
                },
                {"not": {"properties": {"device": {"const": "mps"}}, "required": ["device"]}},
                {
                    "if": {
                        "required": ["recipe"],
                        "properties": {
                            "recipe": {"enum": _STREAMING_RECIPES},
                            "dataset": {
                                "properties": {
                                    "name": {"const": "imagefolder"},
                                    "loader": {"const": "streaming"},
                                }
                            },
                        },
                    },
                    "then": {
                        "properties": {
                            "dataset": {"properties": {"image_size": {"type": "integer"}}}
                        }
                    },
                },
            ]
        }
    )

    resources: Resources = Resources()
    checkpoint: CheckpointPolicy = CheckpointPolicy()
    after: list[JobId] = Field(
        default_factory=list,
        max_length=20,
        description="Jobs that must succeed before this one is queued (it waits, state "
        "'waiting'; it fails if one of them fails or is cancelled).",
    )
    init_from: InitFrom | None = Field(
        None, description="Start from another job's weights; that job is waited for too."
    )
    distill: DistillSpec | None = Field(
        None, description="Distil from a teacher job's checkpoint; it is waited for too."
    )

    @property
    def dependencies(self) -> list[int]:
        """Every job this one waits for: ``after``, ``init_from`` and the teacher."""
        ids = set(self.after)
        if self.init_from is not None:
            ids.add(self.init_from.job_id)
        if self.distill is not None:
            ids.add(self.distill.teacher_job_id)
        return sorted(ids)

    @model_validator(mode="after")
    def _after_once_each(self) -> Self:
        if len(set(self.after)) != len(self.after):
            raise ValueError(f"after lists a job twice: {self.after}; name each job once")
        return self

    @model_validator(mode="after")
    def _device_follows_resources(self) -> Self:
        """The queue places a job by its resources: its workers train on a GPU exactly when
        ``resources.use_gpu``; a ``device`` saying otherwise could never be honoured."""
        wants_gpu = self.device.startswith("cuda")
        if self.device != "auto" and (wants_gpu != self.resources.use_gpu or self.device == "mps"):
            raise ValueError(
                f"device {self.device!r} contradicts resources.use_gpu={self.resources.use_gpu}: "
                "a job's workers train on their reserved GPU when use_gpu is true, else on CPU; "
                "leave device 'auto' (or 'cuda' with use_gpu, 'cpu' without)"
            )
        return self

    @property
    def train_config(self) -> TrainConfig:
        """The run alone, as ``recu_core.train`` takes it."""
        return TrainConfig.model_validate(self.model_dump(include=set(TrainConfig.model_fields)))
