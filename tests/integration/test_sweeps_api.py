"""POST/GET /sweeps on a real database (SQLite and PostgreSQL), in-process via TestClient:
planning, validation, listing, cancel with its trials, and the best trial."""

from __future__ import annotations

import json

import pytest

from recu_core.sweepspec import SweepSpec
from recu_db import queue
from recu_db.queue import Lease
from recu_db.states import JobState
from recu_db.trials import end_open_trials, end_trial, start_trial
from service.config import ServiceSettings
from tests.api_client import api_client
from tests.integration.test_api import _errors

BASE = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}
PAPER = {
    "tau.tau_s": {"kind": "uniform", "low": 0.85, "high": 0.94},
    "tau.tau_e": {"kind": "uniform", "low": 0.96, "high": 0.999},
}


@pytest.fixture
def client(database_url):
    settings = ServiceSettings(database_url=database_url, max_trials_per_sweep=20)
    with api_client(settings) as client:
        yield client


def test_a_sweep_plans_its_trials_reproducibly_and_is_not_a_job(client):
    body = {
        "base": BASE,
        "space": {**PAPER, "optimizer.lr": {"kind": "grid", "values": [0.05, 0.1]}},
        "num_samples": 3,
        "seed": 7,
    }
    created = client.post("/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep = created.json()
    assert sweep["state"] == "queued"
    assert sweep["trial_counts"] == {"queued": 6}
    trials = sweep["trials"]
    assert [t["index"] for t in trials] == list(range(6))
    assert [t["params"]["optimizer.lr"] for t in trials] == [0.05, 0.1] * 3
    for t in trials:
        assert 0.85 <= t["params"]["tau.tau_s"] <= 0.94
        assert 0.96 <= t["params"]["tau.tau_e"] <= 0.999
        trial_job = client.get(f"/jobs/{t['id']}").json()
        assert (trial_job["kind"], trial_job["parent_id"]) == ("trial", sweep["id"])
        assert trial_job["spec"]["tau"]["tau_s"] == t["params"]["tau.tau_s"]
    # the same seed plans the same trials; the plan is not a function of time
    again = client.post("/sweeps", json=body).json()
    assert [t["params"] for t in again["trials"]] == [t["params"] for t in trials]
    # neither the sweep nor its trials are training jobs
    assert client.get("/jobs").json()["total"] == 0
    assert client.get("/jobs", params={"kind": "trial"}).json()["total"] == 12
    listed = client.get("/sweeps").json()
    assert [s["id"] for s in listed["items"]] == [again["id"], sweep["id"]]


def test_grid_search_enumerates_grids_and_choices(client):
    body = {
        "base": BASE,
        "search": "grid",
        "space": {
            "tau.tau_s": {"kind": "grid", "values": [0.85, 0.9]},
            "binary_options.clamp": {"kind": "choice", "values": [True, False]},
        },
        "scheduler": {"kind": "none"},
    }
    sweep = client.post("/sweeps", json=body).json()
    assert [t["params"] for t in sweep["trials"]] == [
        {"tau.tau_s": 0.85, "binary_options.clamp": True},
        {"tau.tau_s": 0.85, "binary_options.clamp": False},
        {"tau.tau_s": 0.9, "binary_options.clamp": True},
        {"tau.tau_s": 0.9, "binary_options.clamp": False},
    ]


@pytest.mark.parametrize(
    ("space", "extra", "field", "fragment"),
    [
        (
            {"tau.tau_s": {"kind": "uniform", "low": 0.4, "high": 0.9}},
            {},
            "space.tau.tau_s",
            "greater than 0.5",
        ),
        (
            {"tau.tau_e": {"kind": "grid", "values": [0.97, 1.0]}},
            {},
            "space.tau.tau_e",
            "less than 1",
        ),
        (
            {"tau.tau_s": {"kind": "uniform", "low": 0.9, "high": 0.9}},
            {},
            "space.tau.tau_s.uniform",
            "empty range",
        ),
        (
            {"tau.tau_s": {"kind": "grid", "values": []}},
            {},
            "space.tau.tau_s.grid.values",
            "at least 1 item",
        ),
        (
            {"optimizer.lr": {"kind": "loguniform", "low": 0.0, "high": 0.1}},
            {},
            "space.optimizer.lr.loguniform",
            "low > 0",
        ),
        (
            {"model": {"kind": "choice", "values": ["resnet20"]}},
            {},
            "space.model",
            "searchable fields: tau.tau_s",
        ),
        (
            {"binary_options.activation_ste": {"kind": "choice", "values": ["tanh"]}},
            {},
            "space.binary_options.activation_ste",
            "'approx_sign'",
        ),
        (
            {**PAPER, "tau.tau_s": {"kind": "uniform", "low": 0.85, "high": 0.97}},
            {},
            "space.tau.tau_s",
            "tau_s <= tau_e in every trial",
        ),
        (
            {"tau.tau_s": {"kind": "uniform", "low": 0.85, "high": 0.9}},
            {"search": "grid"},
            "space.tau.tau_s.kind",
            "must be 'grid' or 'choice'",
        ),
        (PAPER, {"num_samples": 21}, "num_samples", "at most 20 are allowed"),
        (PAPER, {"metric": "accuracy"}, "metric", "'test_acc'"),
        (PAPER, {"colour": "red"}, "colour", "Extra inputs are not permitted"),
        (
            PAPER,
            {"base": {**BASE, "resources": {"num_workers": 99}}},
            "base.resources.num_workers",
            "at most 8 workers",
        ),
    ],
)
def test_invalid_sweeps_are_422_naming_the_field_and_nothing_is_created(
    client, space, extra, field, fragment
):
    errors = _errors(client.post("/sweeps", json={"base": BASE, "space": space, **extra}))
    assert field in errors, errors
    assert fragment in errors[field]
    assert client.get("/sweeps").json()["total"] == 0
    assert client.get("/jobs", params={"kind": "trial"}).json()["total"] == 0


def test_idempotency_key_returns_the_same_sweep(client):
    body = {"base": BASE, "space": PAPER, "num_samples": 2}
    first = client.post("/sweeps", json=body, headers={"Idempotency-Key": "s-1"})
    second = client.post("/sweeps", json=body, headers={"Idempotency-Key": "s-1"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert client.get("/jobs", params={"kind": "trial"}).json()["total"] == 2


def test_an_idempotency_key_reused_with_another_body_is_422_naming_the_key(client):
    """Another space, num_samples, priority, or a job under a sweep's key: 422 naming the
    key (the IETF draft), nothing stored; the same body still answers the first sweep."""
    body = {"base": BASE, "space": PAPER, "num_samples": 2}
    first = client.post("/sweeps", json=body, headers={"Idempotency-Key": "s-1"})
    assert first.status_code == 201
    changed = [
        {**body, "num_samples": 3},
        {**body, "priority": 1},
        {**body, "space": {"seed": {"kind": "grid", "values": [0, 1]}}},
    ]
    for other in changed:
        refused = client.post("/sweeps", json=other, headers={"Idempotency-Key": "s-1"})
        assert refused.status_code == 422, refused.text
        (error,) = refused.json()["detail"]
        assert error["loc"] == ["header", "Idempotency-Key"]
        assert "'s-1'" in error["msg"]
        assert "different body" in error["msg"]
    as_job = client.post("/jobs", json=BASE, headers={"Idempotency-Key": "s-1"})
    assert as_job.status_code == 422, as_job.text  # the key names a sweep, not this job
    assert client.get("/sweeps").json()["total"] == 1
    assert client.get("/jobs").json()["total"] == 0
    assert client.get("/jobs", params={"kind": "trial"}).json()["total"] == 2
    again = client.post("/sweeps", json=body, headers={"Idempotency-Key": "s-1"})
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


@pytest.mark.parametrize(
    ("raw_space", "loc"),
    [
        ('{"optimizer.lr": {"kind": "uniform", "low": 0.01, "high": Infinity}}', "high"),
        ('{"optimizer.lr": {"kind": "loguniform", "low": NaN, "high": 0.1}}', "low"),
        ('{"optimizer.lr": {"kind": "grid", "values": [0.1, 1e309]}}', "values"),
        ('{"tau.tau_s": {"kind": "choice", "values": [-Infinity]}}', "values"),
    ],
)
def test_non_finite_numbers_in_a_sweep_space_are_422_never_500(client, raw_space, loc):
    raw = '{"base": {"epochs": 3}, "space": ' + raw_space + "}"
    refused = client.post("/sweeps", content=raw, headers={"Content-Type": "application/json"})
    assert refused.status_code == 422, refused.text
    errors = refused.json()["detail"]
    assert any(e["loc"][:3] == ["body", "space", e["loc"][2]] and loc in e["loc"] for e in errors)
    assert any(e["input"] in ("inf", "-inf", "nan") for e in errors), errors
    assert client.get("/sweeps").json()["total"] == 0


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ([None], "a searched value is a boolean, a number or a string"),
        ([[0.9]], "a searched value is a boolean, a number or a string"),
        ([{"a": 1}], "a searched value is a boolean, a number or a string"),
        (["x" * 201], "at most 200 characters"),
        (["\ud800"], "lone UTF-16 surrogate (U+D800)"),
        (["a\u0000"], "NUL (U+0000)"),
    ],
)
def test_sweep_values_are_typed_scalars(client, values, fragment):
    """A dimension's values are booleans, numbers or bounded strings, as the schema says;
    a surrogate or NUL among them is refused before it reaches the database."""
    space = {"tau.kind": {"kind": "grid", "values": values}}
    body = json.dumps({"base": BASE, "space": space})  # a surrogate as its \\ud800 escape
    refused = client.post("/sweeps", content=body, headers={"Content-Type": "application/json"})
    assert refused.status_code == 422, refused.text
    msgs = [e["msg"] for e in refused.json()["detail"]]
    assert any(fragment in m for m in msgs), msgs
    assert client.get("/sweeps").json()["total"] == 0
    assert client.get("/jobs", params={"kind": "trial"}).json()["total"] == 0


def test_cancel_queued_and_running_sweeps_ends_their_trials(client, db):
    body = {"base": BASE, "space": PAPER, "num_samples": 3}
    queued = client.post("/sweeps", json=body).json()
    assert client.post(f"/sweeps/{queued['id']}/cancel").json()["state"] == "cancelled"
    assert client.get(f"/sweeps/{queued['id']}").json()["trial_counts"] == {"cancelled": 3}

    running = client.post("/sweeps", json=body).json()
    lease = queue.claim(db, "w", lease_s=30)
    assert (lease.job_id, lease.kind) == (running["id"], "sweep")
    trial = start_trial(db, lease, "0")
    assert client.post(f"/sweeps/{running['id']}/cancel").json()["state"] == "cancelling"
    view = client.get(f"/sweeps/{running['id']}").json()
    assert view["trial_counts"] == {"cancelling": 1, "cancelled": 2}
    assert queue.heartbeat(db, trial, lease_s=30) == JobState.CANCELLING  # its loop stops
    assert start_trial(db, lease, "1") is None  # nothing new starts
    end_open_trials(db, lease, JobState.STOPPED, "the sweep ended")
    queue.finish(db, lease, JobState.SUCCEEDED)
    view = client.get(f"/sweeps/{running['id']}").json()
    assert (view["state"], view["trial_counts"]) == ("cancelled", {"cancelled": 3})
    assert client.post("/sweeps/999/cancel").status_code == 404
    assert client.get(f"/sweeps/{trial.job_id}").status_code == 404  # a trial is no sweep


def test_best_trial_follows_the_metric_and_mode(client, db):
    body = {"base": BASE, "space": PAPER, "num_samples": 3, "metric": "test_loss", "mode": "min"}
    sweep = client.post("/sweeps", json=body).json()
    lease = queue.claim(db, "w", lease_s=30)
    for key, loss in (("0", 0.9), ("1", 0.4), ("2", 0.7)):
        trial = start_trial(db, lease, key)
        assert queue.record_epoch(db, trial, 1, {"test_loss": loss, "test_acc": 1 - loss})
    end_trial(db, lease, "2", JobState.STOPPED, "stopped early")
    view = client.get(f"/sweeps/{sweep['id']}").json()
    assert view["best"]["index"] == 1
    assert view["best"]["value"] == 0.4
    assert view["best"]["params"] == view["trials"][1]["params"]
    assert view["trials"][2]["state"] == "stopped"
    assert view["trials"][1]["metrics"] == [{"epoch": 1, "test_loss": 0.4, "test_acc": 0.6}]


def test_a_requeued_sweep_takes_over_its_unfinished_trials_and_fences_the_old_worker(db):
    from datetime import timedelta

    spec = SweepSpec.model_validate({"base": BASE, "space": PAPER})
    sweep, _ = queue.submit(db, spec, trials=[spec.base] * 3)
    dead = queue.claim(db, "dead", lease_s=30)
    done = start_trial(db, dead, "0")
    assert queue.finish(db, done, JobState.SUCCEEDED)
    stale = start_trial(db, dead, "1")
    assert queue.reap(db, now=queue.utcnow() + timedelta(minutes=5)) == [(sweep.id, "queued")]
    alive = queue.claim(db, "alive", lease_s=30)
    assert start_trial(db, alive, "0") is None  # finished trials are not re-run
    resumed = start_trial(db, alive, "1")
    assert (resumed.job_id, resumed.attempt) == (stale.job_id, stale.attempt + 1)
    assert not queue.record_epoch(db, stale, 1, {"test_acc": 0.1})  # the dead worker's write
    assert queue.record_epoch(db, resumed, 1, {"test_acc": 0.5})
    assert start_trial(db, dead, "2") is None  # the old lease starts nothing
    assert isinstance(resumed, Lease)
