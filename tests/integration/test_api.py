"""The REST API on a real database (SQLite and PostgreSQL), in-process via TestClient."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import datetime

import pytest

from recu_db import queue, results
from recu_db.states import JobState
from service.config import ServiceSettings
from tests.api_client import api_client

JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}


@pytest.fixture
def client(database_url):
    with api_client(ServiceSettings(database_url=database_url, max_workers_per_job=4)) as client:
        yield client


def _errors(response):
    assert response.status_code == 422, response.text
    return {".".join(map(str, e["loc"][1:])): e["msg"] for e in response.json()["detail"]}


def test_submit_then_get_and_list(client):
    created = client.post("/jobs", json=JOB)
    assert created.status_code == 201
    job = created.json()
    assert (job["state"], job["attempt"], job["spec"]["model"]) == ("queued", 0, "resnet20")
    assert job["spec"]["resources"]["num_workers"] == 1
    assert client.get(f"/jobs/{job['id']}").json()["state"] == "queued"
    client.post("/jobs", json=JOB)
    page = client.get("/jobs", params={"state": "queued", "limit": 1}).json()
    assert (page["total"], len(page["items"]), page["items"][0]["id"]) == (2, 1, job["id"] + 1)
    assert client.get("/jobs", params={"state": "running"}).json()["total"] == 0
    events = client.get(f"/jobs/{job['id']}/events").json()
    assert [(e["from_state"], e["to_state"]) for e in events] == [(None, "queued")]


@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ({"model": "resnet50"}, "model", "'resnet20'"),
        ({"dataset": {"name": "mnist"}}, "dataset.name", "'cifar10'"),
        ({"tau": {"tau_s": 0.4}}, "tau.tau_s", "greater than 0.5"),
        ({"tau": {"tau_s": 0.99, "tau_e": 0.9}}, "tau", "must not exceed tau_e"),
        ({"epochs": 0}, "epochs", "greater than or equal to 1"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
        ({"resources": {"num_workers": 9}}, "resources.num_workers", "at most 4 workers"),
        (
            {"resources": {"use_gpu": True, "gpus_per_worker": 2}},
            "resources.gpus_per_worker",
            "at most 1",
        ),
        ({"resources": {"gpus_per_worker": 1}}, "resources", "needs use_gpu=true"),
        ({"dataset": {"name": "imagefolder"}}, "dataset", "dataset.root is required"),
        (
            {"dataset": {"name": "imagefolder", "root": "x", "loader": "streaming"}},
            "dataset",
            "image_size is required",
        ),
    ],
)
def test_invalid_jobs_are_422_naming_the_field_and_nothing_is_created(
    client, patch, field, fragment
):
    errors = _errors(client.post("/jobs", json={**JOB, **patch}))
    assert any(k.startswith(field) and fragment in v for k, v in errors.items()), errors
    assert client.get("/jobs").json()["total"] == 0


def test_a_dataset_root_missing_from_the_data_directory_is_422_at_submit(database_url, tmp_path):
    """Where the API sees the workers' data directory, a root that is not in it fails at
    submit (naming the field), not minutes later on a worker; an existing one is accepted."""
    (tmp_path / "present" / "train").mkdir(parents=True)
    settings = ServiceSettings(database_url=database_url, data_dir=tmp_path)
    with api_client(settings) as client:
        spec = {**JOB, "dataset": {"name": "imagefolder", "root": "absent"}}
        errors = _errors(client.post("/jobs", json=spec))
        assert "does not exist in the data directory" in errors["dataset.root"], errors
        sweep = {"base": spec, "space": {"seed": {"kind": "grid", "values": [0, 1]}}}
        assert "does not exist" in _errors(client.post("/sweeps", json=sweep))["base.dataset.root"]
        assert client.get("/jobs").json()["total"] == 0
        spec["dataset"]["root"] = "present"
        assert client.post("/jobs", json=spec).status_code == 201


def test_idempotency_key_returns_the_same_job(client):
    first = client.post("/jobs", json=JOB, headers={"Idempotency-Key": "k1"})
    again = client.post("/jobs", json=JOB, headers={"Idempotency-Key": "k1"})
    other = client.post("/jobs", json=JOB, headers={"Idempotency-Key": "k2"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    # the same request spelt with its defaults is the same request
    spelt = {**JOB, "seed": 0, "resources": {"num_workers": 1}, "priority": 0}
    same = client.post("/jobs", json=spelt, headers={"Idempotency-Key": "k1"})
    assert (same.status_code, same.json()["id"]) == (200, first.json()["id"])


@pytest.mark.parametrize(
    "change",
    [{"epochs": 4}, {"seed": 1}, {"priority": 5}, {"max_attempts": 1}, {"optimizer": {"lr": 0.2}}],
)
def test_an_idempotency_key_reused_with_another_body_is_422_naming_the_key(client, change):
    """The IETF draft "The Idempotency-Key HTTP Header Field": a key reused with a
    different payload is 422; the first job is untouched and nothing else is stored."""
    first = client.post("/jobs", json=JOB, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    refused = client.post("/jobs", json={**JOB, **change}, headers={"Idempotency-Key": "k-1"})
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert error["type"] == "idempotency_key_reused"
    assert "'k-1'" in error["msg"]
    assert "different body" in error["msg"]
    assert f"job {first.json()['id']}" in error["msg"]
    assert client.get("/jobs").json()["total"] == 1
    assert client.get(f"/jobs/{first.json()['id']}").json()["spec"] == first.json()["spec"]
    retry = client.post("/jobs", json=JOB, headers={"Idempotency-Key": "k-1"})
    assert (retry.status_code, retry.json()["id"]) == (200, first.json()["id"])


NON_FINITE = ["Infinity", "-Infinity", "NaN", "1e309", "-1e309"]
FLOAT_FIELDS = [
    ('{"optimizer": {"lr": %s}}', ["optimizer", "lr"]),
    ('{"optimizer": {"momentum": %s}}', ["optimizer", "momentum"]),
    ('{"optimizer": {"weight_decay": %s}}', ["optimizer", "weight_decay"]),
    ('{"optimizer": {"warmup_epochs": %s}}', ["optimizer", "warmup_epochs"]),
    ('{"optimizer": {"label_smoothing": %s}}', ["optimizer", "label_smoothing"]),
    ('{"tau": {"tau_s": %s}}', ["tau", "tau_s"]),
    ('{"tau": {"tau_e": %s}}', ["tau", "tau_e"]),
    ('{"dataset": {"val_fraction": %s}}', ["dataset", "val_fraction"]),
    ('{"dataset": {"crop_scale": [%s, 1.0]}}', ["dataset", "crop_scale", 0]),
    ('{"resources": {"cpus_per_worker": %s}}', ["resources", "cpus_per_worker"]),
    ('{"epochs": %s}', ["epochs"]),  # an int field: refused as no integer
]


@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_numbers_are_422_naming_the_field_never_500(client, number):
    """Python's JSON parser reads NaN, Infinity and 1e309 (as inf): every float field
    refuses them (allow_inf_nan=False on the contract's models) and the 422 that quotes
    the input is still JSON (the input as its string form)."""
    for template, loc in FLOAT_FIELDS:
        raw = template % number
        refused = client.post("/jobs", content=raw, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422, (raw, refused.text)
        (error,) = [e for e in refused.json()["detail"] if e["loc"][1:] == loc]
        assert error["input"] in ("inf", "-inf", "nan"), error
    assert client.get("/jobs").json()["total"] == 0


def test_history_checkpoints_and_download(client, db):
    job_id = client.post("/jobs", json=JOB).json()["id"]
    lease = queue.claim(db, "w", lease_s=60)
    for epoch in range(1, 11):
        queue.record_epoch(db, lease, epoch, {"test_acc": epoch / 10})
        results.record_telemetry(
            db,
            lease,
            epoch,
            {"layers": {"a": {"q": -epoch, "hist": [epoch]}, "b": {"q": epoch, "hist": [0]}}},
        )
    results.append_logs(db, lease, ["epoch 1", "epoch 2"])
    payload = os.urandom(3_000_000)
    ckpt = results.store_checkpoint(db, lease, 10, {"test_acc": 1.0}, io.BytesIO(payload), keep=2)

    job = client.get(f"/jobs/{job_id}").json()
    assert (job["state"], job["current_epoch"], job["latest_metrics"]) == (
        "running",
        10,
        {"test_acc": 1.0},
    )
    assert [m["epoch"] for m in client.get(f"/jobs/{job_id}/metrics").json()] == list(range(1, 11))
    sampled = client.get(f"/jobs/{job_id}/metrics", params={"max_points": 4}).json()
    assert [m["epoch"] for m in sampled] == [1, 4, 7, 10]
    sampled = client.get(f"/jobs/{job_id}/telemetry", params={"max_points": 4}).json()
    assert [t["epoch"] for t in sampled] == [1, 4, 7, 10]  # the same epochs as the metrics
    one_layer = client.get(
        f"/jobs/{job_id}/telemetry", params={"layer": "a", "max_points": 2}
    ).json()
    assert [t["telemetry"]["layers"] for t in one_layer] == [
        {"a": {"q": -1, "hist": [1]}},
        {"a": {"q": -10, "hist": [10]}},
    ]
    scalars = client.get(f"/jobs/{job_id}/telemetry", params={"hist": False}).json()
    assert scalars[0]["telemetry"]["layers"] == {"a": {"q": -1}, "b": {"q": 1}}
    assert [line["line"] for line in client.get(f"/jobs/{job_id}/logs").json()] == [
        "epoch 1",
        "epoch 2",
    ]

    listed = client.get(f"/jobs/{job_id}/checkpoints").json()
    assert [c["id"] for c in listed] == [ckpt.id]
    assert (
        client.get(f"/checkpoints/{ckpt.id}").json()["sha256"]
        == hashlib.sha256(payload).hexdigest()
    )
    download = client.get(f"/checkpoints/{ckpt.id}/download")
    assert download.status_code == 200
    assert download.content == payload
    assert download.headers["content-length"] == str(len(payload))
    assert download.headers["etag"] == f'"{hashlib.sha256(payload).hexdigest()}"'
    assert hashlib.sha256(download.content).hexdigest() == download.headers["x-checkpoint-sha256"]


def test_cancel_queued_running_finished_and_unknown(client, db):
    queued = client.post("/jobs", json=JOB).json()["id"]
    assert client.post(f"/jobs/{queued}/cancel").json()["state"] == "cancelled"
    assert client.post(f"/jobs/{queued}/cancel").json()["state"] == "cancelled"
    running = client.post("/jobs", json=JOB).json()["id"]
    queue.claim(db, "w", lease_s=60)
    assert client.post(f"/jobs/{running}/cancel").json()["state"] == "cancelling"
    assert client.post(f"/jobs/{running}/cancel").json()["state"] == "cancelling"  # twice
    finished = client.post("/jobs", json=JOB).json()["id"]
    lease = queue.claim(db, "w", lease_s=60)
    assert lease is not None
    assert lease.job_id == finished
    queue.finish(db, lease, JobState.SUCCEEDED)
    done = client.post(f"/jobs/{finished}/cancel")
    assert (done.status_code, done.json()["state"]) == (200, "succeeded")  # left as it is
    assert client.get(f"/jobs/{finished}").json()["state"] == "succeeded"
    assert client.post("/jobs/999999/cancel").status_code == 404


def test_unknown_ids_are_404(client):
    for path in ("/jobs/42", "/jobs/42/metrics", "/checkpoints/42", "/checkpoints/42/download"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "42" in response.json()["detail"]


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
    assert "/jobs" in client.get("/openapi.json").json()["paths"]


def test_jobs_report_when_they_started_and_finished(client, db):
    job_id = client.post("/jobs", json=JOB).json()["id"]
    queued = client.get(f"/jobs/{job_id}").json()
    assert (queued["started_at"], queued["finished_at"]) == (None, None)
    lease = queue.claim(db, "w", lease_s=60)
    running = client.get(f"/jobs/{job_id}").json()
    assert running["started_at"] is not None
    assert running["finished_at"] is None
    queue.finish(db, lease, JobState.SUCCEEDED)
    done = client.get("/jobs").json()["items"][0]
    assert done["started_at"] == running["started_at"]
    assert datetime.fromisoformat(done["finished_at"]) >= datetime.fromisoformat(done["started_at"])


def test_best_and_last_accuracy_and_the_best_checkpoint_outlives_keep(client, db):
    """The job reports its best test accuracy (and epoch) beside the last one; keep=1
    prunes every older checkpoint except the one of the best epoch."""
    job_id = client.post("/jobs", json=JOB).json()["id"]
    lease = queue.claim(db, "w", lease_s=60)
    accs = [0.5, 0.8, 0.6, 0.7]
    stored = {}
    for epoch, acc in enumerate(accs, 1):
        best = max(accs[:epoch])
        metrics = {
            "test_acc": acc,
            "best_test_acc": best,
            "best_epoch": float(accs.index(best) + 1),
        }
        queue.record_epoch(db, lease, epoch, metrics)
        ckpt = results.store_checkpoint(
            db,
            lease,
            epoch,
            metrics,
            io.BytesIO(b"x" * epoch),
            keep=1,
            best_epoch=int(metrics["best_epoch"]),
        )
        stored[epoch] = ckpt.id
    job = client.get(f"/jobs/{job_id}").json()
    assert (job["best_test_acc"], job["best_epoch"], job["last_test_acc"]) == (0.8, 2, 0.7)
    listed = client.get(f"/jobs/{job_id}/checkpoints").json()
    assert [(c["epoch"], c["best"]) for c in listed] == [(2, True), (4, False)]
    assert [c["id"] for c in listed] == [stored[2], stored[4]]
    page = client.get("/jobs").json()
    mine = next(j for j in page["items"] if j["id"] == job_id)
    assert (mine["best_test_acc"], mine["last_test_acc"]) == (0.8, 0.7)
