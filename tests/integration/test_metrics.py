"""GET /metrics: Prometheus's text format, admins only, the queue's state read from the
real database (both engines) and each request timed by its route's template."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from recu_db import queue
from service.app import create_app
from service.config import ServiceSettings
from tests.api_client import bearer, token_for

JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}


@pytest.fixture
def client(database_url, tmp_path):
    settings = ServiceSettings(database_url=database_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        yield client


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus-client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_need_an_admin_token(client):
    assert client.get("/metrics").status_code == 401
    user = client.get("/metrics", headers=bearer(token_for(client, "alice")))
    assert user.status_code == 403
    assert "admin" in user.json()["detail"]


def test_metrics_report_the_queue_claims_expiries_running_epochs_and_request_times(client):
    alice = bearer(token_for(client, "alice"))
    ids = [client.post("/jobs", json=JOB, headers=alice).json()["id"] for _ in range(3)]
    assert client.get(f"/jobs/{ids[0]}", headers=alice).status_code == 200
    db = client.app.state.sessionmaker
    running = queue.claim(db, "worker-a", lease_s=600)
    lost = queue.claim(db, "worker-b", lease_s=1)
    assert (running.job_id, lost.job_id) == (ids[0], ids[1])
    figures = {"test_acc": 0.5, "epoch_time_s": 2.5, "images_per_s": 640.0}
    assert queue.record_epoch(db, running, 1, figures)
    reaped = queue.reap(db, now=queue.utcnow() + timedelta(seconds=30))
    assert [job_id for job_id, _ in reaped] == [ids[1]]  # requeued: its lease expired

    text = client.get("/metrics", headers=bearer(token_for(client, "root", admin=True)))
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    got = _samples(text.text)
    assert got[("recu_jobs", (("state", "queued"),))] == 2
    assert got[("recu_jobs", (("state", "running"),))] == 1
    assert got[("recu_jobs", (("state", "succeeded"),))] == 0
    assert got[("recu_queue_depth", ())] == 2
    assert got[("recu_queue_oldest_age_seconds", ())] > 0
    assert got[("recu_claims_total", ())] == 2
    assert got[("recu_lease_expiries_total", ())] == 1
    job = (("job_id", str(ids[0])), ("kind", "train"))
    assert got[("recu_job_epoch_seconds", job)] == 2.5
    assert got[("recu_job_images_per_second", job)] == 640.0
    timed = "recu_http_request_duration_seconds_count"
    post = (("method", "POST"), ("route", "/jobs"), ("status", "201"))
    assert got[(timed, post)] == 3
    one = (("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "200"))
    assert got[(timed, one)] == 1  # the route's template, never the raw path
    assert not any(str(ids[0]) in dict(labels).get("route", "") for _n, labels in got)
