"""GET /compare on a real database (SQLite and PostgreSQL), in-process: jobs side by side
with their curves, the configuration differences exactly, another user's job a 404
naming it, and every malformed list of ids a 422 saying what is allowed, never a 500."""

from __future__ import annotations

import pytest

from recu_db import queue
from service.config import ServiceSettings
from tests.api_client import api_client, bearer, token_for

JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}
ALLOWED = "jobs is a comma-separated list of 2 to 10 distinct job ids"


@pytest.fixture
def client(database_url):
    with api_client(ServiceSettings(database_url=database_url)) as client:
        yield client


@pytest.fixture
def three(client, db):
    """Three of alice's jobs: the first trained 3 epochs; the others differ in seed, lr
    and a list field."""
    first = client.post("/jobs", json=JOB).json()["id"]
    second = client.post("/jobs", json={**JOB, "seed": 7, "optimizer": {"lr": 0.05}}).json()
    third = client.post(
        "/jobs", json={**JOB, "seed": 7, "dataset": {"name": "digits", "crop_scale": [0.5, 1.0]}}
    ).json()
    lease = queue.claim(db, "w", lease_s=60)
    assert lease.job_id == first
    for epoch, acc, best, best_epoch in ((1, 0.5, 0.5, 1), (2, 0.7, 0.7, 2), (3, 0.6, 0.7, 2)):
        figures = {"test_acc": acc, "test_loss": 1 - acc, "best_test_acc": best}
        assert queue.record_epoch(db, lease, epoch, {**figures, "best_epoch": best_epoch})
    return first, second["id"], third["id"]


def test_jobs_side_by_side_with_exact_differences(client, three):
    first, second, third = three
    answer = client.get("/compare", params={"jobs": f"{first},{second},{third}"})
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    assert [j["id"] for j in answer["jobs"]] == [first, second, third]  # the order asked
    assert answer["differences"] == [
        {"path": "dataset.crop_scale", "values": [[0.08, 1.0], [0.08, 1.0], [0.5, 1.0]]},
        {"path": "optimizer.lr", "values": [0.1, 0.05, 0.1]},
        {"path": "seed", "values": [0, 7, 7]},
    ]
    trained = answer["jobs"][0]
    assert (trained["kind"], trained["state"], trained["terminal"]) == ("train", "running", False)
    assert (trained["best_test_acc"], trained["best_epoch"], trained["last_test_acc"]) == (
        0.7,
        2,
        0.6,
    )
    assert [m["epoch"] for m in trained["metrics"]] == [1, 2, 3]
    assert trained["metrics"][2]["metrics"]["test_loss"] == pytest.approx(0.4)
    assert trained["spec"] == client.get(f"/jobs/{first}").json()["spec"]
    queued = answer["jobs"][1]
    assert (queued["metrics"], queued["best_test_acc"], queued["last_test_acc"]) == ([], None, None)
    downsampled = client.get("/compare", params={"jobs": f"{first},{third}", "max_points": 2})
    assert [m["epoch"] for m in downsampled.json()["jobs"][0]["metrics"]] == [1, 3]
    assert downsampled.json()["differences"][0]["path"] == "dataset.crop_scale"


def test_another_users_job_is_a_404_naming_it_and_an_admin_sees_all(client, three):
    first, second, _ = three
    bob = bearer(token_for(client, "bob"))
    bobs = client.post("/jobs", json=JOB, headers=bob).json()["id"]
    refused = client.get("/compare", params={"jobs": f"{first},{bobs}"})
    assert (refused.status_code, refused.json()) == (404, {"detail": f"no job {bobs}"})
    refused = client.get("/compare", params={"jobs": f"{first},{second}"}, headers=bob)
    assert (refused.status_code, refused.json()) == (404, {"detail": f"no job {first}, {second}"})
    admin = bearer(token_for(client, "root", admin=True))
    seen = client.get("/compare", params={"jobs": f"{first},{bobs}"}, headers=admin)
    assert seen.status_code == 200, seen.text
    assert [j["id"] for j in seen.json()["jobs"]] == [first, bobs]
    assert seen.json()["differences"] == []  # the same spec


def test_unknown_ids_and_jobs_that_do_not_train_are_404s_naming_them(client, three):
    first, _, _ = three
    unknown = client.get("/compare", params={"jobs": f"{first},998,999"})
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "no job 998, 999")
    sweep = client.post(
        "/sweeps", json={"base": JOB, "space": {"tau.tau_s": {"kind": "grid", "values": [0.9]}}}
    ).json()
    refused = client.get("/compare", params={"jobs": f"{first},{sweep['id']}"})
    assert refused.status_code == 404
    assert refused.json()["detail"].startswith(f"job {sweep['id']} is a sweep, not a training")
    trial = sweep["trials"][0]["id"]  # a sweep's trial trains: it compares
    assert client.get("/compare", params={"jobs": f"{first},{trial}"}).status_code == 200


@pytest.mark.parametrize(
    ("jobs", "fragment"),
    [
        ("1,x", "not a job id: 'x'"),
        ("1,2.5", "not a job id: '2.5'"),
        ("1,,2", "not a job id: ''"),
        ("0,1", "not a job id: '0'"),
        ("1,-2", "not a job id: '-2'"),
        ("1,99999999999", "not a job id: '99999999999'"),
        ("1", "1 job id(s) given"),
        ("", "0 job id(s) given"),
        (",".join(map(str, range(1, 12))), "11 job id(s) given"),
        ("3,1,3", "listed more than once: 3"),
    ],
)
def test_malformed_ids_are_422_saying_what_is_allowed(client, jobs, fragment):
    refused = client.get("/compare", params={"jobs": jobs})
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["query", "jobs"]
    assert fragment in error["msg"]
    assert ALLOWED in error["msg"]
    assert error["input"] == jobs


def test_missing_ids_and_a_bad_max_points_are_422(client, three):
    first, second, _ = three
    missing = client.get("/compare")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "jobs"]
    bad = client.get("/compare", params={"jobs": f"{first},{second}", "max_points": 0})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "max_points"]


def test_the_openapi_spec_states_the_list_of_ids(client):
    operation = client.get("/openapi.json").json()["paths"]["/compare"]["get"]
    (jobs,) = [p for p in operation["parameters"] if p["name"] == "jobs"]
    assert (jobs["style"], jobs["explode"], jobs["required"]) == ("form", False, True)
    assert jobs["schema"]["minItems"] == 2
    assert jobs["schema"]["maxItems"] == 10
    assert jobs["schema"]["uniqueItems"] is True
