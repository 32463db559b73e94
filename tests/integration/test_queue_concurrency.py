"""Several worker processes claim from one queue at once (a no-op job runner): every job
is claimed and finished exactly once, none is lost, and no "database is locked" errors."""

from __future__ import annotations

import multiprocessing as mp

from sqlalchemy import select

from recu_core.jobspec import JobSpec
from recu_db import queue
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.models import Job, JobEvent
from recu_db.states import JobState

JOBS = 120
WORKERS = 4


def _worker(url: str, name: str) -> tuple[list[int], list[str]]:
    engine = make_engine(url)
    db = make_sessionmaker(engine)
    done: list[int] = []
    errors: list[str] = []
    while True:
        try:
            lease = queue.claim(db, name, lease_s=60)
            if lease is None:
                engine.dispose()
                return done, errors
            queue.record_epoch(db, lease, 1, {"ok": True})
            assert queue.finish(db, lease, JobState.SUCCEEDED)
            done.append(lease.job_id)
        except Exception as err:  # recorded, then the test fails naming it
            errors.append(f"{type(err).__name__}: {err}")
            if len(errors) > 5:
                return done, errors


def test_many_workers_claim_each_job_exactly_once(database_url, engine):
    db = make_sessionmaker(engine)
    for i in range(JOBS):
        queue.submit(db, JobSpec(seed=i))
    with mp.get_context("spawn").Pool(WORKERS) as pool:
        results = pool.starmap(_worker, [(database_url, f"w{i}") for i in range(WORKERS)])
    claimed = [job_id for done, _ in results for job_id in done]
    errors = [e for _, errs in results for e in errs]
    assert errors == []
    assert sorted(claimed) == list(range(1, JOBS + 1))
    with db.begin() as session:
        states = session.scalars(select(Job.state)).all()
        claims = session.scalars(select(JobEvent).where(JobEvent.to_state == "running")).all()
    assert set(states) == {"succeeded"}
    assert len(states) == JOBS
    assert len(claims) == JOBS
    assert sum(1 for done, _ in results if done) > 1  # the work really was shared
