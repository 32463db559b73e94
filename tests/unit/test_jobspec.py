"""The job contract: one JobSpec (TrainConfig + resources + checkpoint policy) and one
SweepSpec, shared by the API, the queue and the workers; the request bodies add only what
the queue owns, and the stored JSON keeps its shape."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from recu_core.config import TrainConfig
from recu_core.jobspec import JobSpec, Resources
from recu_core.sweepspec import SweepSpec
from recu_db.specs import InvalidStoredSpecError, parse_spec
from recu_db.states import TERMINAL, JobKind, JobState, is_terminal
from service.schemas import JobCreate
from service.sweep_schemas import SweepCreate

QUEUE_FIELDS = {"priority", "max_attempts"}


def test_request_bodies_add_only_the_queue_fields_to_the_specs():
    assert set(JobSpec.model_fields) - set(TrainConfig.model_fields) == {
        "resources",
        "checkpoint",
        "after",
        "init_from",
        "distill",
    }
    assert set(JobCreate.model_fields) - set(JobSpec.model_fields) == QUEUE_FIELDS
    assert set(SweepCreate.model_fields) - set(SweepSpec.model_fields) == QUEUE_FIELDS
    assert SweepSpec.model_fields["base"].annotation is JobSpec


def test_the_stored_job_is_the_body_without_its_queue_fields_and_parses_back_equal():
    body = JobCreate.model_validate(
        {
            "recipe": "cifar10_resnet20",
            "epochs": 30,
            "resources": {"num_workers": 2, "cpus_per_worker": 0.5},
            "checkpoint": {"keep": 4},
            "priority": 7,
            "max_attempts": 2,
        }
    )
    spec = JobSpec.from_fields(body)
    stored = spec.stored()
    assert QUEUE_FIELDS.isdisjoint(stored)
    assert stored["epochs"] == 30
    assert stored["batch_size"] == 256
    assert stored["resources"]["num_workers"] == 2
    assert parse_spec(JobKind.TRAIN, stored) == spec
    assert spec.train_config == TrainConfig.model_validate(
        {k: v for k, v in stored.items() if k in TrainConfig.model_fields}
    )


def test_a_row_stored_by_the_previous_version_still_parses():
    """The JSON shape did not change: a spec as the API stored it before (a JobCreate dump
    without priority and max_attempts, written by hand here) reads back typed."""
    stored = {
        "model": "resnet20",
        "binary": True,
        "dataset": {"name": "digits", "root": None, "num_train": 256},
        "tau": {"kind": "exponential", "tau_s": 0.85, "tau_e": 0.99},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "epochs": 2,
        "batch_size": 64,
        "resources": {"num_workers": 2, "use_gpu": False, "gpus_per_worker": 0},
        "checkpoint": {"every_epochs": 1, "keep": 2},
    }
    spec = parse_spec(JobKind.TRIAL, stored)
    assert isinstance(spec, JobSpec)
    assert (spec.dataset.num_train, spec.resources.num_workers, spec.checkpoint.keep) == (256, 2, 2)


def test_an_unreadable_stored_spec_names_the_field():
    with pytest.raises(InvalidStoredSpecError, match="epochs"):
        parse_spec(JobKind.TRAIN, {"epochs": "many"})
    with pytest.raises(InvalidStoredSpecError, match="base"):
        parse_spec(JobKind.SWEEP, {"space": {"seed": {"kind": "grid", "values": [1]}}})


@pytest.mark.parametrize(
    ("resources", "per_worker", "demand"),
    [
        ({}, {"CPU": 1.0}, (1.0, 0.0)),
        ({"num_workers": 4, "cpus_per_worker": 2.0}, {"CPU": 2.0}, (8.0, 0.0)),
        ({"num_workers": 2, "use_gpu": True}, {"CPU": 1.0, "GPU": 1.0}, (2.0, 2.0)),
        (
            {"num_workers": 2, "use_gpu": True, "gpus_per_worker": 2},
            {"CPU": 1.0, "GPU": 2.0},
            (2.0, 4.0),
        ),
    ],
)
def test_resources_give_the_ray_demand_per_worker_and_in_all(resources, per_worker, demand):
    typed = Resources.model_validate(resources)
    assert typed.per_worker == per_worker
    assert typed.demand == demand


def test_gpus_without_use_gpu_is_refused():
    with pytest.raises(ValidationError, match=r"needs use_gpu=true"):
        Resources(gpus_per_worker=1)


def test_imagefolder_needs_its_root_and_streaming_its_image_size():
    with pytest.raises(ValidationError, match=r"dataset\.root is required"):
        JobSpec.model_validate({"dataset": {"name": "imagefolder"}})
    with pytest.raises(ValidationError, match="image_size is required"):
        JobSpec.model_validate(
            {"dataset": {"name": "imagefolder", "root": "x", "loader": "streaming"}}
        )


def test_a_streaming_recipes_image_size_may_be_overridden_but_not_nulled_in_schema_too():
    """The schema says what the model says, so a schema-valid body is accepted (found by
    schemathesis: the recipe set loader 'streaming' and the body nulled image_size)."""
    import jsonschema

    schema = JobSpec.model_json_schema()
    nulled = {"recipe": "imagenet_resnet34", "dataset": {"image_size": None}}
    with pytest.raises(ValidationError, match="image_size is required"):
        JobSpec.model_validate(nulled)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(nulled, schema)
    for valid in (
        {"recipe": "imagenet_resnet34", "dataset": {"image_size": 160}},
        {"recipe": "imagenet_resnet34", "dataset": {"image_size": None, "loader": "memory"}},
        {"recipe": "imagenet_resnet34", "dataset": {"name": "digits", "image_size": None}},
    ):
        jsonschema.validate(valid, schema)
        JobSpec.model_validate(valid)


def test_a_job_may_ask_for_its_exports_and_a_sweep_may_not():
    assert JobSpec.model_validate({"checkpoint": {"export": True}}).checkpoint.export
    assert not JobSpec().checkpoint.export
    base = {"checkpoint": {"export": True}}
    space = {"seed": {"kind": "grid", "values": [0, 1]}}
    with pytest.raises(ValidationError, match=r"base\.checkpoint\.export is for training jobs"):
        SweepSpec.model_validate({"base": base, "space": space})
    # and the schema says so, so a schema-valid sweep body is accepted
    import jsonschema

    schema = SweepSpec.model_json_schema()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"base": base, "space": space}, schema)
    jsonschema.validate({"base": {}, "space": space}, schema)


def test_terminal_states_are_defined_once_and_include_stopped():
    assert {s for s in JobState if is_terminal(s)} == set(TERMINAL)
    assert is_terminal("stopped")
    assert is_terminal(JobState.CANCELLED)
    assert not is_terminal("cancelling")
    assert not is_terminal("queued")


@pytest.mark.parametrize(
    ("device", "use_gpu", "ok"),
    [
        ("auto", False, True),
        ("cpu", False, True),
        ("cuda", True, True),
        ("cuda:1", True, True),
        ("cuda", False, False),
        ("cpu", True, False),
        ("mps", False, False),
    ],
)
def test_a_device_the_job_could_not_get_is_refused(device, use_gpu, ok):
    spec = {"device": device, "resources": {"use_gpu": use_gpu}}
    if ok:
        assert JobSpec.model_validate(spec).device == device
    else:
        with pytest.raises(ValidationError, match=r"contradicts resources\.use_gpu"):
            JobSpec.model_validate(spec)
