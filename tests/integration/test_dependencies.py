"""Job dependencies through the real queue and API (SQLite and PostgreSQL): a job that
names others (``after``, ``init_from``, ``distill``) waits until they succeed, then is
queued; fails, with the reason, when one fails or is cancelled; can be cancelled while
waiting; and may name only its owner's own training jobs that have not failed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from recu_db import dependencies, queue
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.states import JobState
from service.app import create_app
from service.config import ServiceSettings
from tests.api_client import bearer, token_for

JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 2}


@pytest.fixture
def api(database_url, tmp_path):
    settings = ServiceSettings(database_url=database_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(token_for(client, "alice")))
        engine = make_engine(database_url)
        yield client, make_sessionmaker(engine)
        engine.dispose()


def _submit(client, **fields) -> dict:
    answer = client.post("/jobs", json={**JOB, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def _state(client, job_id: int) -> dict:
    return client.get(f"/jobs/{job_id}").json()


def _run(db, job_id: int, end: JobState) -> None:
    lease = queue.claim(db, "w", lease_s=60)
    assert lease is not None
    assert lease.job_id == job_id
    assert queue.finish(db, lease, end, error=None if end == JobState.SUCCEEDED else "boom")


def test_a_job_waits_for_its_dependencies_then_is_queued_and_claimed(api):
    client, db = api
    first = _submit(client)
    teacher = _submit(client)
    chained = _submit(
        client,
        after=[first["id"]],
        init_from={"job_id": first["id"], "checkpoint": "last"},
        distill={"teacher_job_id": teacher["id"], "temperature": 2.0},
    )
    assert chained["state"] == "waiting"
    view = _state(client, chained["id"])
    assert view["pending_reason"] == (
        f"waiting for job {first['id']} (queued), job {teacher['id']} (queued) to succeed"
    )
    events = client.get(f"/jobs/{chained['id']}/events").json()
    assert events[0]["to_state"] == "waiting"
    assert events[0]["reason"] == f"submitted; waiting for jobs {first['id']}, {teacher['id']}"

    _run(db, first["id"], JobState.SUCCEEDED)
    assert dependencies.settle(db) == []  # the teacher has not run yet
    assert _state(client, chained["id"])["pending_reason"] == (
        f"waiting for job {teacher['id']} (queued) to succeed"
    )
    _run(db, teacher["id"], JobState.SUCCEEDED)  # the chained job was never claimable
    assert dependencies.settle(db) == [(chained["id"], JobState.QUEUED)]
    assert _state(client, chained["id"])["state"] == "queued"
    last = client.get(f"/jobs/{chained['id']}/events").json()[-1]
    assert last["from_state"] == "waiting"
    assert last["reason"] == f"dependencies succeeded: job {first['id']}, job {teacher['id']}"
    lease = queue.claim(db, "w", lease_s=60)
    assert lease is not None
    assert lease.job_id == chained["id"]
    assert lease.job.init_from is not None
    assert lease.job.init_from.checkpoint == "last"
    assert lease.job.distill is not None
    assert lease.job.distill.temperature == 2.0


@pytest.mark.parametrize("end", [JobState.FAILED, JobState.CANCELLED])
def test_a_dependency_that_fails_or_is_cancelled_fails_the_waiting_job(api, end):
    client, db = api
    first = _submit(client)
    waiting = _submit(client, after=[first["id"]])
    if end == JobState.CANCELLED:
        assert client.post(f"/jobs/{first['id']}/cancel").json()["state"] == "cancelled"
    else:
        _run(db, first["id"], end)
    assert dependencies.settle(db) == [(waiting["id"], JobState.FAILED)]
    view = _state(client, waiting["id"])
    assert view["state"] == "failed"
    assert view["error"] == f"dependency job {first['id']} {end.value}"
    assert queue.claim(db, "w", lease_s=60) is None  # nothing is left to run


def test_a_waiting_job_can_be_cancelled_and_counts_against_the_queue_cap(api):
    client, db = api
    first = _submit(client)
    waiting = _submit(client, after=[first["id"]])
    assert client.post(f"/jobs/{waiting['id']}/cancel").json() == {
        "id": waiting["id"],
        "state": "cancelled",
        "terminal": True,
    }
    _run(db, first["id"], JobState.SUCCEEDED)
    assert dependencies.settle(db) == []  # cancelled stays cancelled
    assert _state(client, waiting["id"])["state"] == "cancelled"


def test_only_the_owners_own_training_jobs_that_have_not_failed_are_dependencies(api):
    client, db = api
    mine = _submit(client)
    other = client.post("/jobs", json=JOB, headers=bearer(token_for(client, "mallory"))).json()
    _run(db, mine["id"], JobState.FAILED)

    def refused(code: int, **fields) -> str:
        answer = client.post("/jobs", json={**JOB, **fields})
        assert answer.status_code == code, answer.text
        detail = answer.json()["detail"]
        return detail if isinstance(detail, str) else detail[0]["msg"]

    rule = "a job may wait for (after), start from (init_from) or learn from (distill) only"
    assert refused(404, after=[other["id"]]) == (
        f"job {other['id']} does not exist (or is not yours): {rule} a training job or trial "
        "of your own that has not failed"
    )
    assert refused(404, init_from={"job_id": 999_999}).startswith("job 999999 does not exist")
    assert refused(409, distill={"teacher_job_id": mine["id"]}).startswith(
        f"job {mine['id']} has failed: it can never succeed"
    )
    assert "name each job once" in refused(422, after=[other["id"], other["id"]])
    assert refused(422, after=[0]).startswith("Input should be greater than or equal to 1")
    whole = client.post("/jobs", json={**JOB, "after": [float(mine["id"])]})
    assert whole.status_code == 409  # 7.0 is the job id 7 (JSON has one number type)
    # an admin may chain anyone's jobs
    admin = bearer(token_for(client, "root", admin=True))
    chained = client.post("/jobs", json={**JOB, "after": [other["id"]]}, headers=admin)
    assert chained.status_code == 201
    assert chained.json()["state"] == "waiting"


def test_a_sweep_waits_for_its_bases_dependencies_and_fails_with_them(api):
    client, db = api
    first = _submit(client)
    body = {
        "base": {**JOB, "init_from": {"job_id": first["id"]}},
        "space": {"tau.tau_s": {"kind": "grid", "values": [0.85, 0.9]}},
        "scheduler": {"kind": "none"},
    }
    sweep = client.post("/sweeps", json=body)
    assert sweep.status_code == 201, sweep.text
    sweep = sweep.json()
    assert sweep["state"] == "waiting"
    refused = client.post("/sweeps", json={**body, "base": {**JOB, "after": [999_999]}})
    assert refused.status_code == 404
    _run(db, first["id"], JobState.FAILED)
    assert dependencies.settle(db) == [(sweep["id"], JobState.FAILED)]
    view = client.get(f"/sweeps/{sweep['id']}").json()
    assert view["state"] == "failed"
    assert {t["state"] for t in view["trials"]} == {"cancelled"}  # they never ran
