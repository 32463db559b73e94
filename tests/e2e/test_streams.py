"""Live streams (GET /jobs/{id}/stream, server-sent events) against a real uvicorn server
and a real database: what a job does arrives in order and once, a stream resumes after
its Last-Event-ID, `recu logs --follow` re-attaches across an API restart, and open
streams take no admission slot."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from recu_cli.local_service import (
    create_local_token,
    free_port,
    local_service,
    process,
    wait_ready,
)
from recu_db import queue, results, trials
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.migrate import upgrade
from recu_db.states import JobState
from tests.helpers import START_S, wait_until

JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}
RECU = str(Path(sys.executable).with_name("recu"))


Seen = list[tuple[str, str, Any]]


def _read(
    http: httpx.Client, job_id: int, last_id: str | None = None, into: Seen | None = None
) -> Seen:
    """Every (event, id, data) of one connection to the stream, until it ends, appended to
    ``into`` as each arrives."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    seen: Seen = [] if into is None else into
    with connect_sse(http, "GET", f"/jobs/{job_id}/stream", headers=headers) as source:
        assert source.response.status_code == 200
        seen.extend((sse.event, sse.id, sse.json()) for sse in source.iter_sse())
    return seen


def _by_kind(seen: Seen) -> dict[str, list[Any]]:
    """Each kind's data in the order sent (one read sends its rows kind after kind, so
    kinds interleave differently from one connection to the next; each kind's order and
    count are the stream's promise)."""
    kinds: dict[str, list[Any]] = {}
    for kind, _id, data in seen:
        kinds.setdefault(kind, []).append(data)
    return kinds


def _not_state(seen: Seen) -> Seen:
    return [item for item in seen if item[0] != "state"]


@pytest.fixture
def service(tmp_path):
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with local_service(tmp_path / "service", database_url=url, workers=0) as running:
        engine = make_engine(url)
        yield running, make_sessionmaker(engine)
        engine.dispose()


def test_a_job_streams_live_in_order_once_to_its_end_and_resumes_after_last_event_id(service):
    running, db = service
    with running.client() as http:
        job_id = http.post("/jobs", json=JOB).json()["id"]
        lease = queue.claim(db, "w", lease_s=600)
        assert lease is not None
        followed: Seen = []
        reader = threading.Thread(target=_read, args=(http, job_id), kwargs={"into": followed})
        reader.start()
        wait_until(lambda: followed, timeout=START_S, message="the stream's first event")
        for epoch in (1, 2, 3):  # written while the client follows
            assert results.append_logs(db, lease, [f"epoch {epoch} started"])
            assert queue.record_epoch(db, lease, epoch, {"test_acc": epoch / 10})
            time.sleep(0.3)
        assert queue.finish(db, lease, JobState.SUCCEEDED)
        reader.join(timeout=START_S)
        assert not reader.is_alive()

        kinds = [kind for kind, _id, _data in followed]
        assert kinds[0] in ("event", "state")
        assert kinds[-1] == "end"
        assert followed[-1][2] == {"state": "succeeded"}
        states = [data["state"] for kind, _id, data in followed if kind == "state"]
        assert states[0] == "running"
        assert states[-1] == "succeeded"
        transitions = [d["to_state"] for k, _i, d in followed if k == "event"]
        assert transitions == ["queued", "running", "succeeded"]
        assert [d["epoch"] for k, _i, d in followed if k == "epoch"] == [1, 2, 3]
        lines = [d["line"] for k, _i, d in followed if k == "log"]
        assert lines == ["epoch 1 started", "epoch 2 started", "epoch 3 started"]

        # a client that had everything up to epoch 2 gets the rest, and nothing twice
        items = _not_state(followed)
        at = next(i for i, (k, _id, d) in enumerate(items) if k == "epoch" and d["epoch"] == 2)
        resumed = _not_state(_read(http, job_id, last_id=items[at][1]))
        assert _by_kind(resumed) == _by_kind(items[at + 1 :])
        # from the start, a finished job's stream is its whole history
        assert _by_kind(_not_state(_read(http, job_id))) == _by_kind(items)


def test_a_stream_is_refused_without_a_token_for_another_users_job_and_for_a_bad_cursor(
    service,
):
    running, db = service
    with running.client() as http:
        job_id = http.post("/jobs", json=JOB).json()["id"]
        assert httpx.get(f"{running.api}/jobs/{job_id}/stream").status_code == 401
        other = create_local_token(str(db.kw["bind"].url), user="mallory")
        foreign = http.get(f"/jobs/{job_id}/stream", headers={"Authorization": f"Bearer {other}"})
        assert foreign.status_code == 404
        bad = http.get(f"/jobs/{job_id}/stream", headers={"Last-Event-ID": "1.2.x"})
        assert bad.status_code == 400
        assert "E.M.L.C" in bad.json()["detail"]


def test_open_streams_take_no_admission_slot(tmp_path, monkeypatch):
    monkeypatch.setenv("RECU_API_MAX_IN_FLIGHT", "1")
    monkeypatch.setenv("RECU_API_ADMISSION_WAIT_S", "0")  # a request beyond 1 is refused
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with (
        local_service(tmp_path / "service", database_url=url, workers=0) as running,
        running.client() as http,
    ):
        job_id = http.post("/jobs", json=JOB).json()["id"]
        opened = threading.Barrier(4)
        stop = threading.Event()

        def hold() -> None:
            with connect_sse(http, "GET", f"/jobs/{job_id}/stream") as source:
                events = source.iter_sse()
                next(events)  # open, its first event read
                opened.wait(timeout=START_S)
                stop.wait(timeout=START_S)

        holders = [threading.Thread(target=hold) for _ in range(3)]
        for holder in holders:
            holder.start()
        opened.wait(timeout=START_S)
        try:
            assert http.post("/jobs", json=JOB).status_code == 201
            assert http.get(f"/jobs/{job_id}").status_code == 200
        finally:
            stop.set()
            for holder in holders:
                holder.join(timeout=START_S)


def test_logs_follow_re_attaches_across_an_api_restart_and_prints_each_line_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'api.db'}"
    engine = make_engine(url)
    upgrade(engine)
    db = make_sessionmaker(engine)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RECU_DATABASE_URL": url}
    server = [sys.executable, "-m", "service", "--port", str(port)]
    with process(server, env, tmp_path / "api-1.log") as first:
        wait_ready(api, START_S)
        token = create_local_token(url)
        headers = {"Authorization": f"Bearer {token}"}
        job_id = httpx.post(f"{api}/jobs", json=JOB, headers=headers).json()["id"]
        lease = queue.claim(db, "w", lease_s=600)
        assert lease is not None
        results.append_logs(db, lease, ["line 1", "line 2"])
        follower = subprocess.Popen(
            [RECU, "logs", str(job_id), "--follow", "--api", api],
            env={**env, "RECU_API_TOKEN": token},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        printed: list[str] = []
        reader = threading.Thread(target=lambda: printed.extend(follower.stdout or []))
        reader.start()
        wait_until(lambda: len(printed) >= 2, timeout=START_S, message="the first two lines")
        first.terminate()
        first.wait(timeout=START_S)
    results.append_logs(db, lease, ["line 3"])  # written while the API is down
    with process(server, env, tmp_path / "api-2.log"):
        wait_ready(api, START_S)
        results.append_logs(db, lease, ["line 4"])
        queue.finish(db, lease, JobState.SUCCEEDED)
        assert follower.wait(timeout=START_S) == 0
        reader.join(timeout=START_S)
    engine.dispose()
    assert follower.stdout is not None
    assert follower.stderr is not None
    follower.stdout.close()
    with follower.stderr:
        said = follower.stderr.read()
    assert printed == ["line 1\n", "line 2\n", "line 3\n", "line 4\n"]
    assert "lost the service" in said
    assert f"re-attached to job {job_id}" in said


def _read_sweep(http: httpx.Client, sweep_id: int, into: Seen) -> None:
    with connect_sse(http, "GET", f"/sweeps/{sweep_id}/stream") as source:
        assert source.response.status_code == 200
        into.extend((sse.event, sse.id, sse.json()) for sse in source.iter_sse())


def test_a_sweep_streams_its_whole_view_on_every_change_and_ends_when_terminal(service):
    """Each ``sweep`` event is what GET /sweeps/{id}?max_points=200 shows at that moment:
    a trial starting, an epoch landing and a trial ending each send one; nothing changing
    sends nothing; the stream ends with the sweep."""
    running, db = service
    space = {"tau.tau_s": {"kind": "grid", "values": [0.85, 0.9]}}
    body = {"base": JOB, "space": space, "search": "grid", "scheduler": {"kind": "none"}}
    with running.client() as http:
        sweep_id = http.post("/sweeps", json=body).json()["id"]
        lease = queue.claim(db, "w", lease_s=600)
        assert lease is not None
        assert lease.job_id == sweep_id
        seen: Seen = []
        reader = threading.Thread(target=_read_sweep, args=(http, sweep_id, seen))
        reader.start()
        wait_until(lambda: seen, timeout=START_S, message="the sweep stream's first event")
        assert seen[0][0] == "sweep"
        assert seen[0][2]["state"] == "running"
        assert [t["state"] for t in seen[0][2]["trials"]] == ["queued", "queued"]

        def wait_for_one_more(before: int, message: str) -> None:
            wait_until(lambda: len(seen) > before, timeout=START_S, message=message)

        for key in ("0", "1"):
            before = len(seen)
            trial = trials.start_trial(db, lease, key)
            assert trial is not None
            wait_for_one_more(before, "the trial's start")
            before = len(seen)
            assert queue.record_epoch(db, trial, 1, {"test_acc": 0.5, "best_test_acc": 0.5})
            wait_for_one_more(before, "the trial's epoch")
            assert trials.end_trial(db, lease, key, JobState.SUCCEEDED, "trial done")
        time.sleep(2)  # four polls of nothing new: nothing is sent
        quiet = len(seen)
        time.sleep(2)
        assert len(seen) == quiet
        assert queue.finish(db, lease, JobState.SUCCEEDED)
        reader.join(timeout=START_S)
        assert not reader.is_alive()

        assert seen[-1][0] == "end"
        assert seen[-1][2] == {"state": "succeeded"}
        last = seen[-2]
        assert last[0] == "sweep"
        assert last[2] == http.get(f"/sweeps/{sweep_id}", params={"max_points": 200}).json()
        assert [t["metrics"][0]["test_acc"] for t in last[2]["trials"]] == [0.5, 0.5]
        ids = [int(item_id) for _kind, item_id, _data in seen]
        assert ids == sorted(ids)
        assert http.get("/sweeps/999999/stream").status_code == 404
        job_id = last[2]["trials"][0]["id"]
        assert http.get(f"/sweeps/{job_id}/stream").status_code == 404  # a trial is no sweep
        other = create_local_token(str(db.kw["bind"].url), user="mallory")
        foreign = {"Authorization": f"Bearer {other}"}
        assert http.get(f"/sweeps/{sweep_id}/stream", headers=foreign).status_code == 404
