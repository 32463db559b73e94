"""The outage matrix: no database outage fails a job (real PostgreSQL, Ray, worker loop).

A private PostgreSQL server (tests/helpers.py ``PrivatePostgres``) is stopped for 0.5x,
1x, 1.5x and 3x the worker's lease while one worker process (the real ``serve`` loop,
joined to the session's Ray instance) runs a tiny job: a checkpoint due every 3 epochs,
9 epochs. Each duration is one round, one job, three outages, each timed against the
job's measured progress (never a fixed schedule): the server is stopped right after the
job records

- epoch 2: ``training`` (mid-interval: no checkpoint due, the next epoch's writes fail);
- epoch 6: ``checkpoint write`` (a checkpoint is due: its write meets the outage);
- epoch 9: ``end`` (its last checkpoint and its finish are still to be written).

The job must end ``succeeded`` with every epoch exactly once in its history (epochs
1..9, contiguous, attempts never going back) and within the documented bound: an outage
shorter than the lease costs nothing (attempt 1, one worker group, no epoch re-run); a
longer one costs at most one attempt, however long it lasts (nothing can claim while the
database is away), so a job outlives ``max_attempts - 1`` of them: these jobs meet three
and are given ``max_attempts=4``. What each outage cost is printed (``-s``): the
figures of docs/reliability.md. Waits fail only when the job made no progress for
START_S.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

ray = pytest.importorskip("ray", reason="ray is installed by `make install`")
# the Ray tests share one test process (`--dist loadgroup`, tests/conftest.py)
pytestmark = pytest.mark.xdist_group("ray")

from recu_cli.local_service import process  # noqa: E402
from recu_core.jobspec import JobSpec  # noqa: E402
from recu_db import queue, reads  # noqa: E402
from recu_db.engine import make_read_sessionmaker  # noqa: E402
from recu_db.models import Job  # noqa: E402
from recu_db.states import TERMINAL  # noqa: E402
from tests.db_fixtures import migrated_database  # noqa: E402
from tests.helpers import START_S, PrivatePostgres, assert_ray_cpus_released, wait_until  # noqa: E402

LEASE_S = 4.0  # short, so that outages of several leases fit in the CI budget
# In leases. CI runs one outage at the lease and one of three leases (about 3 minutes on a
# loaded 2-core machine); RECU_TEST_OUTAGES=0.5,1,1.5,3 runs the whole matrix (6-7 minutes
# there; its figures are in docs/reliability.md). An outage under a lease is also covered
# by tests/e2e/test_faults.py (PostgreSQL restarted mid-job: nothing lost, no new attempt).
OUTAGES = tuple(float(x) for x in os.environ.get("RECU_TEST_OUTAGES", "1,3").split(","))
TINY: dict[str, Any] = {  # ResNet-20 on 128 digits images: about 0.1 s of compute an epoch
    "dataset": {"name": "digits", "num_train": 128, "num_test": 64},
    "batch_size": 64,
    "kernels": "eager",
    "resources": {"num_workers": 1},
}
EPOCHS, EVERY = 9, 3
PHASES = {2: "training", 6: "checkpoint write", 9: "end"}  # the epoch that starts each
MAX_ATTEMPTS = len(PHASES) + 1  # the bound: each outage costs at most one attempt
WORKER_MAIN = (
    "import sys\n"
    "from workers.loop import WorkerSettings, serve\n"
    "serve(WorkerSettings(name='outage-worker', lease_s=float(sys.argv[1]), "
    "concurrency=1, poll_s=0.2))\n"
)


@dataclass(frozen=True)
class Cost:
    """What one outage cost the job."""

    outage: float  # leases
    down_s: float  # measured, the server's stop and start included
    phase: str
    attempts: int  # attempts it cost (0: none)
    groups: int  # Ray Train worker groups it cost (0: no restart, no new attempt)
    rerun: int  # epochs trained again after it


def _job(engine: Engine, job_id: int) -> Job:
    with make_read_sessionmaker(engine)() as session:
        job = session.get(Job, job_id)
    assert job is not None
    return job


def _tail(log: Path, lines: int = 60) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _down(pg: PrivatePostgres, outage: float) -> float:
    """The server away for ``outage`` leases; returns how long it was (stop and start
    included)."""
    began = time.monotonic()
    pg.stop()
    try:
        time.sleep(max(0.0, outage * LEASE_S - (time.monotonic() - began)))
    finally:
        pg.start()
    return time.monotonic() - began


@dataclass
class _Seen:
    """The job at one moment: its attempt, the worker groups started (one "data loader"
    line each), the epochs trained in order (one "epoch k/N" line each)."""

    attempt: int
    groups: int
    trained: list[int]


def _seen(engine: Engine, job_id: int) -> _Seen:
    with make_read_sessionmaker(engine)() as session:
        lines = [ln.line for ln in reads.log_lines(session, job_id, offset=0, limit=10_000)]
    return _Seen(
        _job(engine, job_id).attempt,
        sum(line.startswith("data loader:") for line in lines),
        [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("epoch ")],
    )


def _round(pg: PrivatePostgres, engine: Engine, db: Any, outage: float, log: Path) -> list[Cost]:
    """One job through the three outages of ``outage`` leases, to its end."""
    spec = JobSpec.model_validate(
        {**TINY, "epochs": EPOCHS, "checkpoint": {"every_epochs": EVERY, "keep": 1}}
    )
    job_id = queue.submit(db, spec, max_attempts=MAX_ATTEMPTS)[0].id
    costs, moments = [], []

    def progress() -> tuple[str, int, int]:
        row = _job(engine, job_id)
        return row.state, row.attempt, row.current_epoch

    for epoch, phase in PHASES.items():

        def landed(epoch: int = epoch) -> bool:
            state, _, current = progress()
            assert state not in TERMINAL, f"the job ended before the outage at epoch {epoch}"
            return state == "running" and current >= epoch  # 9 is the last: == 9

        wait_until(
            landed,
            timeout=START_S,  # a start, a new worker group or a new attempt may come first
            progress=progress,
            message=f"epoch {epoch} of job {job_id}",
            interval=0.02,  # the outage must begin before the epoch's next writes
            details=lambda: _tail(log),
        )
        moments.append((phase, _down(pg, outage), _seen(engine, job_id)))
    wait_until(
        lambda: progress()[0] in TERMINAL,
        timeout=START_S,
        progress=progress,
        message=f"job {job_id} to end",
        details=lambda: _tail(log),
    )
    _check(engine, job_id, outage)
    ends = [seen for _, _, seen in moments[1:]] + [_seen(engine, job_id)]
    for (phase, down_s, before), after, epoch in zip(moments, ends, PHASES, strict=True):
        again = [k for k in after.trained[len(before.trained) :] if k <= epoch]
        late = 0 if epoch in before.trained else 1  # its own line came after the outage
        costs.append(
            Cost(
                outage,
                round(down_s, 1),
                phase,
                after.attempt - before.attempt,
                after.groups - before.groups,
                len(again) - late,
            )
        )
    return costs


def _check(engine: Engine, job_id: int, outage: float) -> None:
    """The guarantees, on the ended job."""
    row = _job(engine, job_id)
    with make_read_sessionmaker(engine)() as session:
        history = [(m.epoch, m.attempt) for m in reads.metrics_history(session, job_id)]
        events = [(e.to_state, e.attempt, e.reason) for e in reads.events(session, job_id)]
    seen = _seen(engine, job_id)
    where = (outage, row.error, events)
    assert (row.state, row.error) == ("succeeded", None), where
    assert [epoch for epoch, _ in history] == list(range(1, EPOCHS + 1)), where
    by_epoch = [attempt for _, attempt in history]
    assert by_epoch == sorted(by_epoch), where  # a later attempt never precedes an earlier
    assert row.attempt <= 1 + len(PHASES), where  # at most one attempt an outage
    assert "failed" not in [state for state, _, _ in events], where
    if outage < 1:  # shorter than a lease: it costs nothing
        assert (seen.attempt, seen.groups) == (1, 1), where
        assert seen.trained == list(range(1, EPOCHS + 1)), where


# Every wait in the matrix is bounded by progress (wait_until's progress=), so only a hang
# should meet the per-test cap: 600 s, the suite's default, was met on a 2-core machine
# loaded by a benchmark beside the suite (the whole suite 3x slower) while the job was
# still advancing; 1800 s keeps it a hang guard there too.
@pytest.mark.timeout(1800)
def test_no_database_outage_fails_a_job(tmp_path, local_ray, private_postgres) -> None:
    pg: PrivatePostgres = private_postgres
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "RECU_DATABASE_URL": pg.url,
        "RECU_RUNS_DIR": str(tmp_path / "ray-runs"),
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,  # the session's instance
    }
    costs: list[Cost] = []
    with ExitStack() as stack:
        database = stack.enter_context(migrated_database(pg.url))
        worker = stack.enter_context(
            process([sys.executable, "-c", WORKER_MAIN, str(LEASE_S)], env, log, grace_s=0)
        )
        for outage in OUTAGES:
            costs += _round(pg, database.engine, database.db, outage, log)
        assert worker.poll() is None, "the worker process died"
    assert "Exception in thread" not in log.read_text(), _tail(log)
    for cost in costs:
        print(cost)
    assert_ray_cpus_released()
