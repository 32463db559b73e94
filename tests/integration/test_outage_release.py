"""A run that ends on a database outage gives its job back; it never fails it (before its
last attempt). Real queue code on real databases; the run itself is a real database call
against a server that is not there (a closed port): a real transient error, without Ray.
The Ray path, with a real PostgreSQL server stopped and started: tests/e2e/test_outages.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from ray.train.v2.api.exceptions import WorkerGroupError
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from recu_cli.local_service import free_port
from recu_core.jobspec import JobSpec
from recu_core.settings import WorkerSettings
from recu_db import queue, reads
from recu_db.models import Job
from recu_db.states import JobState
from workers import loop
from workers.capacity import Capacity
from workers.failures import Cause, DatabaseOutageError, cause_of, is_outage

SPEC = JobSpec.model_validate({"dataset": {"name": "digits"}, "epochs": 1})


def _outage() -> OperationalError:
    """A real transient error: a query to a PostgreSQL port nothing listens on."""
    engine = create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
        connect_args={"connect_timeout": 2},
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except OperationalError as err:
        return err
    finally:
        engine.dispose()
    raise AssertionError("a closed port answered")


def _job(db: queue.Db, job_id: int) -> Job:
    with db() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _events(db: queue.Db, job_id: int) -> list[tuple[str, int, str]]:
    with db() as session:
        return [(e.to_state, e.attempt, e.reason) for e in reads.events(session, job_id)]


def test_release_requeues_keeping_the_count_and_fails_on_the_last_attempt(db) -> None:
    job, _ = queue.submit(db, SPEC, max_attempts=2)
    first = queue.claim(db, "w", lease_s=30)
    assert first is not None
    assert first.attempt == 1
    assert queue.release(db, first, "database unavailable") == JobState.QUEUED
    row = _job(db, job.id)
    assert (row.state, row.attempt, row.owner, row.error) == ("queued", 1, None, None)
    assert queue.release(db, first, "again") is None  # fenced: no longer ours
    second = queue.claim(db, "w", lease_s=30)
    assert second is not None
    assert second.attempt == 2
    assert queue.release(db, second, "database unavailable") == JobState.FAILED
    row = _job(db, job.id)
    assert (row.state, row.owner) == ("failed", None)
    assert row.error == "database unavailable, on attempt 2 of 2"
    assert _events(db, job.id) == [
        ("queued", 0, "submitted"),
        ("running", 1, "claimed by w"),
        ("queued", 1, "database unavailable; requeued"),
        ("running", 2, "claimed by w"),
        ("failed", 2, "database unavailable, on attempt 2 of 2"),
    ]


def test_release_of_a_job_being_cancelled_ends_it_cancelled(db) -> None:
    job, _ = queue.submit(db, SPEC)
    lease = queue.claim(db, "w", lease_s=30)
    assert lease is not None
    assert queue.cancel(db, job.id) == JobState.CANCELLING
    assert queue.release(db, lease, "database unavailable") == JobState.CANCELLED
    assert _job(db, job.id).state == "cancelled"


def test_a_hand_back_on_shutdown_requeues_at_no_cost_even_on_the_last_attempt(db) -> None:
    """A worker stopping (SIGTERM) gives its job back: requeued with one more attempt
    allowed, so the attempt it was on is not counted; the attempt number still grows, so
    the old lease stays fenced off; a job being cancelled ends cancelled."""
    job, _ = queue.submit(db, SPEC, max_attempts=1)
    lease = queue.claim(db, "w", lease_s=30)
    assert lease is not None
    assert queue.hand_back(db, lease, "worker w stopping (SIGTERM)") == JobState.QUEUED
    row = _job(db, job.id)
    assert (row.state, row.attempt, row.max_attempts, row.owner) == ("queued", 1, 2, None)
    assert queue.hand_back(db, lease, "again") is None  # fenced: no longer ours
    second = queue.claim(db, "w", lease_s=30)
    assert second is not None
    assert second.attempt == 2
    assert queue.heartbeat(db, lease, lease_s=30) is None  # the old lease stays fenced
    assert _events(db, job.id)[-2] == (
        "queued",
        1,
        "worker w stopping (SIGTERM); handed back to the queue (no attempt counted)",
    )
    assert queue.cancel(db, job.id) == JobState.CANCELLING
    assert queue.hand_back(db, second, "worker w stopping (SIGTERM)") == JobState.CANCELLED
    assert _job(db, job.id).max_attempts == 2  # a cancelled job is not given an attempt


class _FixedCapacity(Capacity):
    """The cluster's side of a claim (Ray's free resources) fixed: no Ray here."""

    def free(self) -> tuple[float, float]:
        return (64.0, 0.0)


def _run_one(monkeypatch, url: str, db: queue.Db, run: Any) -> None:
    monkeypatch.setattr(loop.cluster_view, "nodes", lambda: [{"CPU": 64.0, "GPU": 0.0}])
    monkeypatch.setattr(loop, "run_job", run)
    # the driver of a Ray Train run (run_job) replaced; a warm rank's run keeps the same
    # contract (DatabaseOutageError after its restarts), with real Ray in
    # tests/e2e/test_outages.py
    settings = WorkerSettings(database_url=url, lease_s=1.0, name="w", warm_ranks=False)
    assert loop.run_one(settings, db, _FixedCapacity())


def test_a_run_ending_on_an_outage_gives_the_job_back_up_to_max_attempts(
    monkeypatch, sqlite_database
) -> None:
    """The decision in workers/loop.py: a transient database error out of the run (as
    run_job raises it after its restarts) requeues the job, attempt after attempt, and
    only the last attempt fails it, saying why: the documented bound."""
    url, db = sqlite_database.url, sqlite_database.db
    job, _ = queue.submit(db, SPEC, max_attempts=3)
    error = _outage()

    def run(lease: queue.Lease, **_: Any) -> None:
        raise error

    for attempt in (1, 2):
        _run_one(monkeypatch, url, db, run)
        row = _job(db, job.id)
        assert (row.state, row.attempt, row.error) == ("queued", attempt, None)
    _run_one(monkeypatch, url, db, run)
    row = _job(db, job.id)
    assert (row.state, row.attempt) == ("failed", 3)
    assert row.error == "database unavailable (OperationalError), on attempt 3 of 3"
    assert [(s, a) for s, a, _ in _events(db, job.id)] == [
        ("queued", 0),
        ("running", 1),
        ("queued", 1),
        ("running", 2),
        ("queued", 2),
        ("running", 3),
        ("failed", 3),
    ]


def test_a_run_whose_ranks_gave_up_on_the_database_gives_the_job_back(
    monkeypatch, sqlite_database
) -> None:
    """Ray Train's form of it: rank 0 raised the outage, rank 1 broke with it."""
    url, db = sqlite_database.url, sqlite_database.db
    job, _ = queue.submit(db, SPEC)
    failures: dict[int, Exception] = {0: _outage(), 1: _DistBackendError("peer gone")}

    def run(lease: queue.Lease, **_: Any) -> None:
        raise WorkerGroupError("rank 0 lost the database", failures)

    _run_one(monkeypatch, url, db, run)
    assert (_job(db, job.id).state, _job(db, job.id).attempt) == ("queued", 1)


class _DistBackendError(RuntimeError):
    """Named as torch.distributed's: what surviving ranks raise when a peer dies."""


_DistBackendError.__name__ = "DistBackendError"


@pytest.mark.parametrize(
    "error",
    [ValueError("bad input"), ProgrammingError("select nonsense", None, Exception("syntax"))],
    ids=["code", "non-transient-database-error"],
)
def test_a_run_ending_on_any_other_error_still_fails_the_job(
    monkeypatch, sqlite_database, error: Exception
) -> None:
    url, db = sqlite_database.url, sqlite_database.db
    job, _ = queue.submit(db, SPEC)

    def run(lease: queue.Lease, **_: Any) -> None:
        raise error

    _run_one(monkeypatch, url, db, run)
    row = _job(db, job.id)
    assert (row.state, row.attempt) == ("failed", 1)
    assert row.error is not None
    assert type(error).__name__ in row.error


def test_what_counts_as_an_outage() -> None:
    outage = _outage()
    lost = _DistBackendError("peer gone")
    assert is_outage(outage)
    assert is_outage(DatabaseOutageError("sweep"))
    assert is_outage(WorkerGroupError("", {0: outage}))
    assert is_outage(WorkerGroupError("", {0: outage, 1: lost}))
    assert not is_outage(WorkerGroupError("", {0: outage, 1: ValueError("code")}))
    assert not is_outage(WorkerGroupError("", {0: lost}))
    assert not is_outage(ValueError("code"))
    programming = ProgrammingError("select nonsense", None, Exception("syntax"))
    assert isinstance(programming, DBAPIError)
    assert not is_outage(programming)
    # inside run_job an outage counts as a lost worker: a fresh group waits it out
    assert cause_of(WorkerGroupError("", {0: outage})) == Cause.INFRASTRUCTURE


class _Trial:
    """What Tune's callbacks read of a trial: its config, last result and error text."""

    def __init__(self, error: str | None = None) -> None:
        self.config, self.last_result, self.error_file = {"trial": "0"}, {"epoch": 1}, None
        self._error = error

    def get_error(self) -> str | None:
        return self._error


def test_a_sweep_meeting_an_outage_fails_no_trial(sqlite_database) -> None:
    """workers/sweep.py: the stopper rides an outage out, a trial end that cannot be
    written or a trial that ended on the outage leaves the trial open and marks the sweep
    for giving back (SweepOutageError, an outage for the worker loop)."""
    from recu_core.sweepspec import SweepSpec
    from workers.sweep import RecordTrialEnds, StopWhenSweepEnds, SweepOutageError

    db = sqlite_database.db
    sweep = SweepSpec.model_validate(
        {
            "base": {"dataset": {"name": "digits"}, "epochs": 1},
            "space": {"seed": {"kind": "grid", "values": [1, 2]}},
        }
    )
    queue.submit(db, sweep, trials=[SPEC, SPEC])
    lease = queue.claim(db, "w", lease_s=30)
    assert lease is not None
    away = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"  # nothing listens
    stopper = StopWhenSweepEnds(away, lease, every_s=0.0)
    assert stopper.stop_all() is False  # a failed read stops nothing
    ends = RecordTrialEnds(away, lease, retry_s=0.0)
    ends.on_trial_complete(0, [], _Trial())
    assert ends.outage
    here = RecordTrialEnds(sqlite_database.url, lease, retry_s=0.0)
    here.on_trial_error(0, [], _Trial("Traceback ...\nTrialOutageError: trial 0: database"))
    assert here.outage
    with db() as session:  # the trial the outage ended is left as it was
        assert [c.state for c in reads.children(session, lease.job_id)] == ["queued", "queued"]
    assert is_outage(SweepOutageError("sweep 1: trials left open"))
    for handle in (stopper.db, ends.db, here.db):
        handle.close()
