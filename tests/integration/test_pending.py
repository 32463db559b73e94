"""Why a queued job has not started (``pending_reason``), and ``terminal`` in every view:
the real API (TestClient) on a real database (SQLite and PostgreSQL), with the workers'
clusters published through ``recu_db.cluster`` as a worker publishes them."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer
from sqlalchemy import event

from recu_cli import client as cli
from recu_db import cluster, queue
from recu_db.states import JobState
from recu_db.trials import end_trial, start_trial
from service.config import ServiceSettings
from service.pending import CLAIMABLE, LIVE_S, NO_WORKER
from tests.api_client import api_client

JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}
GPU = {**JOB, "resources": {"use_gpu": True}}
WIDE = {**JOB, "resources": {"cpus_per_worker": 64}}
THREE = {**JOB, "resources": {"num_workers": 3}}
SPACE = {"tau.tau_s": {"kind": "grid", "values": [0.85, 0.9]}}
CPU_ONLY = [{"CPU": 2.0, "GPU": 0.0}]  # this machine's kind of cluster: one 2-CPU node
ONE_NODE = "the largest node has {CPU: 2, GPU: 0}; the cluster has {CPU: 2, GPU: 0} in 1 node"


@pytest.fixture
def client(database_url):
    with api_client(ServiceSettings(database_url=database_url)) as client:
        yield client


def _submit(client, body, path="/jobs"):
    response = client.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _reason(client, job_id):
    return client.get(f"/jobs/{job_id}").json()["pending_reason"]


def test_on_a_cpu_only_cluster_gpu_and_oversized_jobs_are_unschedulable_with_the_numbers(
    client, db
):
    cluster.publish(db, "w1", CPU_ONLY, {"CPU": 2.0, "GPU": 0.0})
    ids = {
        name: _submit(client, body)
        for name, body in [("gpu", GPU), ("wide", WIDE), ("three", THREE), ("fits", JOB)]
    }
    expected = {
        "gpu": f"unschedulable: needs 1 worker x {{CPU: 1, GPU: 1}}; {ONE_NODE}",
        "wide": f"unschedulable: needs 1 worker x {{CPU: 64, GPU: 0}}; {ONE_NODE}",
        "three": f"unschedulable: needs 3 workers x {{CPU: 1, GPU: 0}}; {ONE_NODE} "
        "(room for 2 such workers)",
        "fits": CLAIMABLE,
    }
    assert {name: _reason(client, i) for name, i in ids.items()} == expected
    listed = {j["id"]: j["pending_reason"] for j in client.get("/jobs").json()["items"]}
    assert listed == {ids[name]: text for name, text in expected.items()}
    # once claimed, a job waits for nothing
    assert queue.claim(db, "w1", lease_s=30, free=(2.0, 0.0)).job_id == ids["fits"]
    assert client.get(f"/jobs/{ids['fits']}").json()["pending_reason"] is None


def test_a_worker_must_fit_on_one_node_even_when_the_cluster_has_enough(client, db):
    cluster.publish(db, "w1", [{"CPU": 2.0, "GPU": 0.0}] * 2, {"CPU": 4.0, "GPU": 0.0})
    three_cpus = _submit(client, {**JOB, "resources": {"cpus_per_worker": 3}})
    two_by_two = _submit(client, {**JOB, "resources": {"num_workers": 2, "cpus_per_worker": 2}})
    assert _reason(client, three_cpus) == (
        "unschedulable: needs 1 worker x {CPU: 3, GPU: 0}; the largest node has "
        "{CPU: 2, GPU: 0}; the cluster has {CPU: 4, GPU: 0} in 2 nodes"
    )
    assert _reason(client, two_by_two) == CLAIMABLE


def test_a_job_that_fits_but_whose_resources_are_busy_waits_for_resources(client, db):
    cluster.publish(db, "w1", CPU_ONLY, {"CPU": 1.0, "GPU": 0.0})
    two = _submit(client, {**JOB, "resources": {"num_workers": 2}})
    one = _submit(client, JOB)
    assert _reason(client, two) == (
        "waiting for resources: needs {CPU: 2, GPU: 0}, free now {CPU: 1, GPU: 0}"
    )
    assert _reason(client, one) == CLAIMABLE
    # a second worker on another cluster with room: the job is claimable there
    cluster.publish(db, "w2", [{"CPU": 8.0, "GPU": 0.0}], {"CPU": 8.0, "GPU": 0.0})
    assert _reason(client, two) == CLAIMABLE


def test_without_a_live_worker_a_job_says_so_and_a_stale_worker_is_ignored(client, db):
    job = _submit(client, GPU)
    assert _reason(client, job) == NO_WORKER
    assert NO_WORKER.startswith("no worker is connected to the queue")
    long_ago = queue.utcnow() - timedelta(seconds=2 * LIVE_S)
    cluster.publish(db, "gone", CPU_ONLY, {"CPU": 2.0, "GPU": 0.0}, now=long_ago)
    assert _reason(client, job) == NO_WORKER
    cluster.publish(db, "alive", CPU_ONLY, {"CPU": 2.0, "GPU": 0.0})
    assert _reason(client, job).startswith("unschedulable: needs 1 worker x {CPU: 1, GPU: 1}")
    cluster.withdraw(db, "alive")  # a worker that stops cleanly withdraws at once
    assert _reason(client, job) == NO_WORKER


def test_a_sweep_reports_the_demand_of_its_trials_at_once_and_its_trials_wait_for_it(client, db):
    cluster.publish(db, "w1", CPU_ONLY, {"CPU": 2.0, "GPU": 0.0})
    body = {
        "base": {**JOB, "resources": {"num_workers": 2}},
        "space": SPACE,
        "search": "grid",
        "max_concurrent_trials": 2,
    }
    created = client.post("/sweeps", json=body).json()
    wide = (
        f"unschedulable: needs 4 workers x {{CPU: 1, GPU: 0}}; {ONE_NODE} (room for 2 such workers)"
    )
    assert created["pending_reason"] == wide  # the submit answer says it at once
    assert client.get(f"/sweeps/{created['id']}").json()["pending_reason"] == wide
    assert client.get("/sweeps").json()["items"][0]["pending_reason"] == wide
    trial = created["trials"][0]["id"]
    assert _reason(client, trial) == f"waiting for its sweep (#{created['id']}) to start it"
    gpu = client.post("/sweeps", json={"base": GPU, "space": SPACE, "search": "grid"}).json()
    assert (
        gpu["pending_reason"] == f"unschedulable: needs 1 worker x {{CPU: 1, GPU: 1}}; {ONE_NODE}"
    )


def test_a_page_of_jobs_reads_the_workers_once(client, db):
    cluster.publish(db, "w1", CPU_ONLY, {"CPU": 2.0, "GPU": 0.0})
    for _ in range(5):
        _submit(client, JOB)
    reads: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if "FROM workers" in statement:
            reads.append(statement)

    engine = client.app.state.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        items = client.get("/jobs").json()["items"]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [j["pending_reason"] for j in items] == [CLAIMABLE] * 5
    assert len(reads) == 1


def test_reject_unschedulable_refuses_with_422_naming_the_demand_and_stores_nothing(
    database_url, db
):
    settings = ServiceSettings(database_url=database_url, reject_unschedulable=True)
    with api_client(settings) as client:
        # no worker has published yet: nothing to judge by, the job is queued
        early = _submit(client, GPU)
        cluster.publish(db, "w1", CPU_ONLY, {"CPU": 2.0, "GPU": 0.0})
        refused = client.post("/jobs", json=GPU)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["detail"]
        assert error["loc"] == ["body", "resources"]
        assert error["msg"].startswith(
            f"unschedulable: needs 1 worker x {{CPU: 1, GPU: 1}}; {ONE_NODE}"
        )
        assert "RECU_REJECT_UNSCHEDULABLE" in error["msg"]
        sweep = client.post("/sweeps", json={"base": WIDE, "space": SPACE, "search": "grid"})
        assert sweep.status_code == 422, sweep.text
        [error] = sweep.json()["detail"]
        assert error["loc"] == ["body", "base", "resources"]
        assert "needs 1 worker x {CPU: 64, GPU: 0}; the largest node has {CPU: 2" in error["msg"]
        assert client.get("/jobs").json()["total"] == 1  # only the early one
        assert client.get("/sweeps").json()["total"] == 0
        assert client.get("/jobs", params={"kind": "trial"}).json()["total"] == 0
        fits = _submit(client, JOB)
        assert [j["id"] for j in client.get("/jobs").json()["items"]] == [fits, early]


def test_a_stopped_trial_is_terminal_everywhere_and_the_cli_wait_returns(client, db, monkeypatch):
    """ASHA's stopped trials used to be polled forever: the clients kept their own list of
    terminal states, without ``stopped``; they read the API's ``terminal`` now."""
    sweep = client.post("/sweeps", json={"base": JOB, "space": SPACE, "search": "grid"}).json()
    lease = queue.claim(db, "w", lease_s=30)
    trial = start_trial(db, lease, "0")
    assert queue.record_epoch(db, trial, 1, {"test_acc": 0.5})
    assert end_trial(db, lease, "0", JobState.STOPPED, "stopped early by ASHA")
    job = client.get(f"/jobs/{trial.job_id}").json()
    assert (job["state"], job["terminal"], job["pending_reason"]) == ("stopped", True, None)
    view = client.get(f"/sweeps/{sweep['id']}").json()
    assert (view["state"], view["terminal"]) == ("running", False)
    assert [(t["state"], t["terminal"]) for t in view["trials"]] == [
        ("stopped", True),
        ("queued", False),
    ]

    # the trial's stream ends (``end``) at once: stopped early is terminal, and no failure
    cli.follow_job(client, trial.job_id, epochs=3)
    cancelled = client.post(f"/sweeps/{sweep['id']}/cancel").json()
    assert (cancelled["state"], cancelled["terminal"]) == ("cancelling", False)


def test_the_cli_wait_stops_on_an_unschedulable_job_with_the_reason(
    client, db, monkeypatch, capsys
):
    cluster.publish(db, "w1", CPU_ONLY, {"CPU": 2.0, "GPU": 0.0})
    job = _submit(client, GPU)
    with pytest.raises(typer.Exit) as ended:  # at the stream's first state: no waiting
        cli.follow_job(client, job, epochs=3)
    assert ended.value.exit_code == cli.UNSCHEDULABLE != 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"job {job} cannot start: unschedulable: needs 1 worker x {{CPU: 1, GPU: 1}}" in printed
    assert f"recu cancel {job}" in printed
