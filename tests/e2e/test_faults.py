"""Fault injection with real processes, real Ray and real databases (no mocks).

Queue workers and the API run as subprocesses (a worker as ``python -m workers`` runs,
with the lease it is given); the workers join the session's Ray instance (``local_ray``)
through its GCS address, so no test pays for a Ray start. Each test kills something for
real (a worker process, a Ray Train worker, the API, the PostgreSQL server) and checks
exact outcomes: states, attempts, the (epoch, attempt) pairs of the metrics history and
the job's events.

No wait has a deadline fixed by how fast a machine is expected to be. A wait for a job
fails only when the job made no progress (no new state, attempt or epoch) for START_S
(tests/helpers.py: the longest a start takes on a loaded machine), so it stretches with
a slow machine by itself; the one wait for a single epoch with no start in it allows a
multiple of the slowest epoch this job was measured at.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

ray = pytest.importorskip("ray", reason="ray is installed by `make install`")
# the Ray tests share one test process (`--dist loadgroup`, tests/conftest.py)
pytestmark = pytest.mark.xdist_group("ray")

from recu_cli.local_service import free_port, process, wait_ready  # noqa: E402
from recu_core.jobspec import JobSpec  # noqa: E402
from recu_db import queue, reads  # noqa: E402
from recu_db.engine import make_read_sessionmaker  # noqa: E402
from recu_db.models import Job  # noqa: E402
from recu_db.states import TERMINAL  # noqa: E402
from tests.db_fixtures import migrated_database  # noqa: E402
from tests.helpers import START_S, assert_ray_cpus_released, ray_actors, wait_until  # noqa: E402

TINY: dict[str, Any] = {  # ResNet-20 on 128 digits images: about 0.1 s of compute an epoch
    "dataset": {"name": "digits", "num_train": 128, "num_test": 64},
    "batch_size": 64,
    "kernels": "eager",
    "resources": {"num_workers": 1},
}
POLL_S = 0.2  # how often an idle worker slot reaps and looks for a job
WORKER_MAIN = (  # `python -m workers`, with the lease and name this test gives it
    "import sys\n"
    "from workers.loop import WorkerSettings, serve\n"
    "serve(WorkerSettings(name=sys.argv[1], lease_s=float(sys.argv[2]), "
    f"concurrency=int(sys.argv[3]), poll_s={POLL_S}))\n"
)


def _spec(**overrides: Any) -> JobSpec:
    return JobSpec.model_validate({**TINY, **overrides})


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name}: no log)"
    return f"--- {path.name} ---\n" + "\n".join(
        path.read_text(errors="replace").splitlines()[-lines:]
    )


def _tails(logs: tuple[Path, ...]) -> Callable[[], str]:
    return lambda: "\n".join(_tail(p) for p in logs)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> Any:
    """A subprocess logging to ``log``, SIGKILLed (if still alive) when the block ends."""
    return process(args, env, log, grace_s=0)


def _env(database_url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RECU_DATABASE_URL": database_url,
        "RECU_RUNS_DIR": str(workdir / "ray-runs"),
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,  # the session's instance
        "RECU_AUTH_DISABLED": "true",  # for the API; the workers talk to the database
    }


def _worker(
    workdir: Path,
    database_url: str,
    name: str,
    *,
    lease_s: float,
    concurrency: int = 1,
    warm_ranks: bool = True,
) -> tuple[list[str], dict[str, str], Path]:
    args = [sys.executable, "-c", WORKER_MAIN, name, str(lease_s), str(concurrency)]
    env = {**_env(database_url, workdir), "RECU_WORKER_WARM_RANKS": str(warm_ranks).lower()}
    return args, env, workdir / f"{name}.log"


def _api(
    workdir: Path, database_url: str, port: int, log: str
) -> tuple[list[str], dict[str, str], Path]:
    args = [sys.executable, "-m", "service", "--port", str(port)]
    return args, _env(database_url, workdir), workdir / log


def _job(engine: Engine, job_id: int) -> Job:
    with make_read_sessionmaker(engine)() as session:
        job = session.get(Job, job_id)
    assert job is not None
    return job


def _history(engine: Engine, job_id: int) -> list[tuple[int, int]]:
    with make_read_sessionmaker(engine)() as session:
        return [(m.epoch, m.attempt) for m in reads.metrics_history(session, job_id)]


def _events(engine: Engine, job_id: int) -> list[tuple[str | None, str, int, str]]:
    with make_read_sessionmaker(engine)() as session:
        return [
            (e.from_state, e.to_state, e.attempt, e.reason) for e in reads.events(session, job_id)
        ]


def _progress(engine: Engine, job_id: int) -> tuple[str, int, int]:
    """What changes while a job gets on: its state, attempt and epoch."""
    row = _job(engine, job_id)
    return row.state, row.attempt, row.current_epoch


# A wait for one more epoch, with no start in it, allows this many times the slowest
# epoch of the job so far (its recorded_at gaps: training, evaluation and the writes).
EPOCHS_ALLOWED = 20


def _one_epoch_allowance(engine: Engine, job_id: int) -> float:
    """EPOCHS_ALLOWED times the longest gap between two consecutive epochs of one attempt
    of the job (at least one second), as recorded; START_S before there is such a gap."""
    with make_read_sessionmaker(engine)() as session:
        history = reads.metrics_history(session, job_id)
    gaps = [
        (b.recorded_at - a.recorded_at).total_seconds()
        for a, b in itertools.pairwise(history)
        if a.attempt == b.attempt
    ]
    return EPOCHS_ALLOWED * max(1.0, *gaps) if gaps else START_S


def _checkpoints(engine: Engine, job_id: int) -> list[tuple[int, int]]:
    """(epoch, attempt) of the job's stored checkpoints, oldest first."""
    with make_read_sessionmaker(engine)() as session:
        return [(c.epoch, c.attempt) for c in reads.job_checkpoints(session, job_id)]


def _train_workers() -> dict[str, tuple[int, str]]:
    """Every actor that trained a rank (a Ray Train worker or a warm rank)."""
    return ray_actors("RayTrainWorker", "WarmRank")


def _reap_while(
    db: Any, engine: Engine, job_id: int, until: Callable[[Job], bool], what: str, logs
) -> Job:
    """Reap every 0.1 s, asserting each time that nothing is reaped, until ``until(job)``;
    fail if the job makes no progress for START_S."""

    def reaped_nothing_and_done() -> Job | None:
        assert queue.reap(db) == [], "a live lease was reaped"
        row = _job(engine, job_id)
        return row if until(row) else None

    return wait_until(
        reaped_nothing_and_done,
        timeout=START_S,
        progress=lambda: _progress(engine, job_id),
        message=what,
        details=_tails(logs),
    )


def test_a_job_outlives_its_worker_process_and_its_ray_train_worker(
    tmp_path, local_ray, sqlite_database
):
    """Guarantees 3, 1 and 2 on one job (one rank, a 3 s lease): A runs it on a warm rank,
    B (warm ranks off) on Ray Train.

    3: worker A's job outlives four lease periods while worker B's idle slot and this test
    reap all along: it stays running on attempt 1, never requeued.
    1: A is SIGKILLed mid-job, past a checkpoint and before the next. Its lease expires,
    B requeues and claims the job, and attempt 2 starts at the epoch after A's last
    checkpoint: every epoch exactly once, at most one checkpoint interval redone.
    2: B's Ray Train worker is SIGKILLed mid-epoch: Ray Train's FailureConfig (the queue
    worker's ``max_failures``, 1) starts a new worker group, which resumes from the last
    checkpoint under the same lease; meanwhile the lease is still never reaped, and the
    job succeeds on attempt 2."""
    url, engine, db = sqlite_database.url, sqlite_database.engine, sqlite_database.db
    # enough epochs to outlast four lease periods on a fast machine (a warm rank starts and
    # trains with no per-epoch Ray Train report: about 0.5 s an epoch here)
    lease_s, epochs, every = 3.0, 48, 2
    job, _ = queue.submit(
        db, _spec(epochs=epochs, checkpoint={"every_epochs": every, "keep": epochs})
    )
    logs = (tmp_path / "worker-a.log", tmp_path / "worker-b.log")
    before = set(_train_workers())
    with _spawn(*_worker(tmp_path, url, "worker-a", lease_s=lease_s)) as a:
        wait_until(
            lambda: _job(engine, job.id).owner == "worker-a",
            timeout=START_S,  # a process start
            message="worker-a's claim",
            details=_tails(logs),
        )
        claimed = time.monotonic()
        with _spawn(*_worker(tmp_path, url, "worker-b", lease_s=lease_s, warm_ranks=False)):
            # 3: kill A only once it has held the job four lease periods and is past a
            # checkpoint and before the next
            def mid_interval(row: Job) -> bool:
                assert (row.state, row.attempt, row.owner) == ("running", 1, "worker-a")
                assert row.current_epoch < epochs, "the job ended before A could be killed"
                stored = _checkpoints(engine, job.id)
                return (
                    time.monotonic() - claimed > 4 * lease_s
                    and bool(stored)
                    and row.current_epoch > stored[-1][0]
                )

            at_kill = _reap_while(db, engine, job.id, mid_interval, "A mid-interval", logs)
            a.send_signal(signal.SIGKILL)  # 1
            a.wait()
            wait_until(  # A's lease expiring, B's claim, B's Ray Train group starting
                lambda: any(attempt == 2 for _, attempt in _history(engine, job.id)),
                timeout=START_S,
                progress=lambda: _progress(engine, job.id),
                message="an epoch of attempt 2",
                details=_tails(logs),
            )
            group = [
                pid
                for actor, (pid, state) in _train_workers().items()
                if actor not in before and state == "ALIVE"
            ]
            assert len(group) == 1, group  # B's; A's died with A
            os.kill(group[0], signal.SIGKILL)  # 2
            assert _job(engine, job.id).current_epoch < epochs, "the job ended before the kill"
            _reap_while(  # a new worker group starting, then the remaining epochs
                db, engine, job.id, lambda row: row.state in TERMINAL, "the job to end", logs
            )
    row = _job(engine, job.id)
    assert (row.state, row.attempt, row.owner) == ("succeeded", 2, None), row.error
    assert _events(engine, job.id) == [
        (None, "queued", 0, "submitted"),
        ("queued", "running", 1, "claimed by worker-a"),
        ("running", "queued", 1, "lease expired (owner worker-a); requeued"),
        ("queued", "running", 2, "claimed by worker-b"),
        ("running", "succeeded", 2, "succeeded"),
    ]
    first = [epoch for epoch, attempt in _checkpoints(engine, job.id) if attempt == 1]
    last = max(first)
    with make_read_sessionmaker(engine)() as session:
        best = {m.epoch: m.metrics["best_epoch"] for m in reads.metrics_history(session, job.id)}
    # A checkpointed by the job's policy: every `every` epochs, and each new best epoch. (A
    # slow machine may kill A between an epoch's record and its checkpoint, so A's last
    # checkpoint need not be a due one.) An epoch's checkpoint is written before the next
    # epoch is recorded, so at most one interval of what A had recorded is redone.
    assert all(epoch % every == 0 or best[epoch] == epoch for epoch in first), (first, best)
    assert at_kill.current_epoch - every <= last < epochs
    # 1: every epoch exactly once; attempt 2 began right after A's last checkpoint
    assert _history(engine, job.id) == [(e, 1) for e in range(1, last + 1)] + [
        (e, 2) for e in range(last + 1, epochs + 1)
    ]
    with make_read_sessionmaker(engine)() as session:
        lines = reads.log_lines(session, job.id, offset=0, limit=1000)
    second = [ln.line for ln in lines if ln.attempt == 2]
    assert second[0].startswith("data loader: memory")  # each attempt says what feeds it
    assert second[1].startswith(f"epoch {last + 1}/")
    # 2: three actors ran the job: A's warm rank, B's first Ray Train worker and its
    # replacement
    assert len(set(_train_workers()) - before) == 3
    assert_ray_cpus_released()


def _get(url: str) -> httpx.Response:
    # an answer takes milliseconds, a 503 in the outage included; 30 s only a hang exceeds
    return httpx.get(url, timeout=30)


def test_database_restart_and_api_restart_mid_job_lose_nothing(
    tmp_path, local_ray, private_postgres
):
    """Guarantees 4 and 5, on PostgreSQL, around one running job.

    4: the database server restarts mid-job. Meanwhile the API answers 503 with
    Retry-After (never a 500, a hang or a crash) and it serves again once the server is
    back. The worker process rides the outage out: its heartbeat thread and its idle slot
    (which reaps) survive it, the job's rank (a warm rank) retries its writes rather than
    fail (no restart spent on it) and the lease holds (attempt 1, no requeue).
    5: then the API is SIGKILLed while the job runs; the worker trains on (epochs are
    recorded while no API runs), and the restarted API shows the job and its epochs.
    The job succeeds on attempt 1 with every epoch exactly once."""
    pg = private_postgres
    epochs, lease_s = 12, 9.0
    outage_s = lease_s / 3 + 0.5  # long enough for a heartbeat of the worker to fail
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    worker_log = tmp_path / "worker-w.log"
    logs = (worker_log, tmp_path / "api-1.log", tmp_path / "api-2.log")
    before = set(_train_workers())
    with ExitStack() as stack:
        engine = stack.enter_context(migrated_database(pg.url)).engine
        # two slots: one runs the job, the other idles and reaps every POLL_S
        worker = stack.enter_context(
            _spawn(*_worker(tmp_path, pg.url, "worker-w", lease_s=lease_s, concurrency=2))
        )
        first_api = stack.enter_context(_spawn(*_api(tmp_path, pg.url, port, "api-1.log")))
        wait_ready(api, START_S)  # a process start
        body = {**TINY, "epochs": epochs, "checkpoint": {"every_epochs": 5, "keep": 1}}
        created = httpx.post(f"{api}/jobs", json=body, timeout=30)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        wait_until(  # the worker's claim, its warm rank starting, an epoch
            lambda: _get(f"{api}/jobs/{job_id}").json()["current_epoch"] >= 1,
            timeout=START_S,
            progress=lambda: _progress(engine, job_id),
            message="the first epoch",
            details=_tails(logs),
        )

        # 4. The database server restarts mid-job.
        assert _job(engine, job_id).current_epoch < epochs, "the job ended before the outage"
        pg.stop()
        try:
            during = {
                "GET /jobs/{id}": _get(f"{api}/jobs/{job_id}"),
                "GET /jobs": _get(f"{api}/jobs"),
                "POST /jobs": httpx.post(f"{api}/jobs", json=body, timeout=30),
                "GET /readyz": _get(f"{api}/readyz"),
            }
            time.sleep(outage_s)  # the outage itself: the worker's writes and beats fail
        finally:
            pg.start()
        assert first_api.poll() is None, "the API died in the outage"
        for request, response in during.items():
            assert response.status_code == 503, (request, response.status_code, response.text)
            if request != "GET /readyz":
                assert int(response.headers["Retry-After"]) > 0
        after = _get(f"{api}/jobs/{job_id}")
        assert after.status_code == 200, after.text
        assert after.json()["state"] == "running"

        # 5. The API dies while the job runs; the worker does not need it.
        first_api.kill()
        first_api.wait()
        seen = _job(engine, job_id).current_epoch
        assert seen < epochs, "the job ended before the API could be killed"
        wait_until(
            lambda: _job(engine, job_id).current_epoch > seen,
            timeout=_one_epoch_allowance(engine, job_id),
            message="an epoch recorded while no API runs",
            details=_tails(logs),
        )
        stack.enter_context(_spawn(*_api(tmp_path, pg.url, port, "api-2.log")))
        wait_ready(api, START_S)
        shown = _get(f"{api}/jobs/{job_id}").json()
        assert shown["state"] in {"running", "succeeded"}
        assert shown["current_epoch"] > seen
        assert [j["id"] for j in _get(f"{api}/jobs").json()["items"]] == [job_id]
        history = _get(f"{api}/jobs/{job_id}/metrics").json()
        assert len(history) > seen
        assert [(m["epoch"], m["attempt"]) for m in history] == [
            (e, 1) for e in range(1, len(history) + 1)
        ]

        wait_until(
            lambda: _get(f"{api}/jobs/{job_id}").json()["state"] in TERMINAL,
            timeout=START_S,
            progress=lambda: _progress(engine, job_id),
            message="the job to end",
            details=_tails(logs),
        )
        assert worker.poll() is None, "the worker process died"
        final = _get(f"{api}/jobs/{job_id}").json()
        assert (final["state"], final["attempt"]) == ("succeeded", 1), final["error"]
        history = _get(f"{api}/jobs/{job_id}/metrics").json()
        assert [(m["epoch"], m["attempt"]) for m in history] == [
            (e, 1) for e in range(1, epochs + 1)
        ]
        events = _get(f"{api}/jobs/{job_id}/events").json()
        assert [(e["to_state"], e["attempt"]) for e in events] == [
            ("queued", 0),
            ("running", 1),
            ("succeeded", 1),
        ]
        assert _get(f"{api}/jobs").json()["total"] == 1  # the POST in the outage made none
    # no thread of the worker died of the outage, and the rank was never restarted
    assert "Exception in thread" not in worker_log.read_text(), _tail(worker_log, 60)
    assert len(set(_train_workers()) - before) == 1
    assert_ray_cpus_released()


def test_sigterm_hands_the_running_job_back_at_no_cost_and_the_worker_exits_cleanly(
    tmp_path, local_ray, sqlite_database
):
    """A worker told to stop (SIGTERM, as systemd, Kubernetes and docker stop do) hands its
    running job back to the queue at once, costing no attempt, logs it, and exits 0 with no
    traceback; another worker resumes the job from its newest checkpoint. The lease is 10
    minutes long, so only the hand-back (not a lapse) can requeue the job in time."""
    url, engine, db = sqlite_database.url, sqlite_database.engine, sqlite_database.db
    epochs, every = 24, 2  # the job still runs when the signal comes after epoch 2
    job, _ = queue.submit(
        db, _spec(epochs=epochs, checkpoint={"every_epochs": every, "keep": epochs})
    )
    logs = (tmp_path / "worker-a.log", tmp_path / "worker-b.log")
    with _spawn(*_worker(tmp_path, url, "worker-a", lease_s=600)) as a:
        wait_until(
            lambda: bool(_checkpoints(engine, job.id)),
            timeout=START_S,
            progress=lambda: _progress(engine, job.id),
            message="worker-a's first checkpoint",
            details=_tails(logs),
        )
        a.send_signal(signal.SIGTERM)
        assert a.wait(timeout=START_S) == 0, _tails(logs)()
    row = _job(engine, job.id)
    assert row.state == "queued", _tails(logs)()
    assert (row.attempt, row.max_attempts, row.owner) == (1, 4, None)
    reason = "worker worker-a stopping (SIGTERM); handed back to the queue (no attempt counted)"
    assert _events(engine, job.id)[-1] == ("running", "queued", 1, reason)
    log = logs[0].read_text(errors="replace")
    assert f"job {job.id} claimed: train resnet20 on digits, {epochs} epochs, attempt 1" in log
    assert "SIGTERM: handing back 1 running job(s), then exiting" in log
    assert f"job {job.id}: handed back to the queue: queued" in log
    assert "Traceback" not in log
    assert "Fatal Python error" not in log
    handed_back_at = _job(engine, job.id).current_epoch
    stored = [epoch for epoch, _attempt in _checkpoints(engine, job.id)]

    with _spawn(*_worker(tmp_path, url, "worker-b", lease_s=600)):
        _reap_while(db, engine, job.id, lambda r: r.state in TERMINAL, "the job to end", logs)
    row = _job(engine, job.id)
    assert (row.state, row.attempt) == ("succeeded", 2), row.error
    history = _history(engine, job.id)
    second = [epoch for epoch, attempt in history if attempt == 2]
    assert second[0] == max(stored) + 1  # resumed after the newest checkpoint
    assert second[-1] == epochs
    assert max(stored) <= handed_back_at
    assert f"job {job.id} succeeded" in logs[1].read_text(errors="replace")
    assert_ray_cpus_released()
