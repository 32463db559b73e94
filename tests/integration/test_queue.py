"""The SQL job queue on SQLite and PostgreSQL: states, fencing, leases, idempotency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from recu_core.jobspec import JobSpec, Resources
from recu_db import queue
from recu_db.migrate import is_current
from recu_db.models import EpochMetric, Job, JobEvent
from recu_db.states import JobState, TransitionError, check_transition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = 30.0


def _job(db, job_id):
    with db.begin() as session:
        return session.get(Job, job_id)


def _events(db, job_id):
    with db.begin() as session:
        rows = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        )
        return [(e.from_state, e.to_state, e.reason) for e in rows]


def test_migrations_are_current(engine):
    assert is_current(engine)


def test_claim_order_and_full_lifecycle(db):
    low, _ = queue.submit(db, JobSpec(seed=1), priority=0, now=T0)
    high, _ = queue.submit(db, JobSpec(seed=2), priority=5, now=T0)
    lease = queue.claim(db, "w1", lease_s=LEASE, now=T0)
    assert (lease.job_id, lease.attempt, lease.spec) == (high.id, 1, JobSpec(seed=2))
    assert queue.record_epoch(db, lease, 1, {"test_acc": 0.5}, now=T0)
    assert queue.finish(db, lease, JobState.SUCCEEDED, now=T0)
    job = _job(db, high.id)
    assert (job.state, job.current_epoch, job.owner) == ("succeeded", 1, None)
    assert [e[:2] for e in _events(db, high.id)] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    assert queue.claim(db, "w1", lease_s=LEASE, now=T0).job_id == low.id
    assert queue.claim(db, "w1", lease_s=LEASE, now=T0) is None


def test_stale_worker_cannot_write_after_reclaim(db):
    job, _ = queue.submit(db, JobSpec(), now=T0)
    stale = queue.claim(db, "dead", lease_s=LEASE, now=T0)
    assert queue.reap(db, now=T0 + timedelta(seconds=LEASE + 1)) == [(job.id, JobState.QUEUED)]
    fresh = queue.claim(db, "alive", lease_s=LEASE, now=T0 + timedelta(seconds=40))
    assert fresh.attempt == 2

    assert not queue.record_epoch(db, stale, 3, {"test_acc": 0.9})
    assert queue.heartbeat(db, stale, lease_s=LEASE) is None
    assert not queue.finish(db, stale, JobState.FAILED, error="late")
    assert queue.record_epoch(db, fresh, 1, {"test_acc": 0.1})
    with db.begin() as session:
        rows = session.scalars(select(EpochMetric).where(EpochMetric.job_id == job.id)).all()
        assert [(r.epoch, r.attempt) for r in rows] == [(1, 2)]
    job_row = _job(db, job.id)
    assert (job_row.state, job_row.owner, job_row.error) == ("running", "alive", None)


def test_metrics_are_idempotent_per_epoch(db):
    queue.submit(db, JobSpec(), now=T0)
    lease = queue.claim(db, "w", lease_s=LEASE, now=T0)
    assert queue.record_epoch(db, lease, 1, {"loss": 2.0})
    assert queue.record_epoch(db, lease, 1, {"loss": 1.5})
    with db.begin() as session:
        rows = session.scalars(select(EpochMetric)).all()
        assert [(r.epoch, r.metrics) for r in rows] == [(1, {"loss": 1.5})]


def test_reaper_keeps_live_leases_and_respects_max_attempts(db):
    job, _ = queue.submit(db, JobSpec(), max_attempts=2, now=T0)
    lease = queue.claim(db, "w", lease_s=LEASE, now=T0)
    for i in range(1, 5):  # a long job renewing its lease outlives several lease periods
        now = T0 + timedelta(seconds=i * 20)
        assert queue.heartbeat(db, lease, lease_s=LEASE, now=now) == JobState.RUNNING
        assert queue.reap(db, now=now + timedelta(seconds=LEASE - 1)) == []
    expired = T0 + timedelta(seconds=200)
    assert queue.reap(db, now=expired) == [(job.id, JobState.QUEUED)]
    queue.claim(db, "w2", lease_s=LEASE, now=expired)
    assert queue.reap(db, now=expired + timedelta(seconds=LEASE + 1)) == [(job.id, JobState.FAILED)]
    row = _job(db, job.id)
    assert row.state == "failed"
    assert row.error == "lease expired on attempt 2 of 2"


def test_cancel_queued_running_twice_and_finished(db):
    queued, _ = queue.submit(db, JobSpec(), now=T0)
    assert queue.cancel(db, queued.id) == JobState.CANCELLED
    assert queue.cancel(db, queued.id) == JobState.CANCELLED  # twice: unchanged
    assert queue.claim(db, "w", lease_s=LEASE) is None

    running, _ = queue.submit(db, JobSpec(), now=T0)
    lease = queue.claim(db, "w", lease_s=LEASE, now=T0)
    assert queue.cancel(db, running.id) == JobState.CANCELLING
    assert queue.heartbeat(db, lease, lease_s=LEASE, now=T0) == JobState.CANCELLING
    assert queue.finish(db, lease, JobState.SUCCEEDED, now=T0)
    assert _job(db, running.id).state == "cancelled"
    assert queue.cancel(db, running.id) == JobState.CANCELLED
    assert queue.cancel(db, 10_000) is None


def test_idempotent_submit_under_20_concurrent_requests(db):
    """One job per (owner, key) under a race; another owner's same key is its own job."""
    from recu_db.tokens import ensure_user

    alice, bob = ensure_user(db, "alice").user_id, ensure_user(db, "bob").user_id

    def submit(i):
        user = alice if i < 20 else bob
        job, created = queue.submit(db, JobSpec(), idempotency_key="same-key", user_id=user)
        return job.id, created

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(submit, range(22)))
    assert len({job_id for job_id, _ in results[:20]}) == 1
    assert len({job_id for job_id, _ in results[20:]}) == 1
    assert results[0][0] != results[20][0]
    assert sum(created for _, created in results) == 2
    with db.begin() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 2
    with pytest.raises(ValueError, match="needs an owner"):
        queue.submit(db, JobSpec(), idempotency_key="k")


def test_state_machine_rejects_illegal_transitions():
    check_transition(JobState.QUEUED, JobState.RUNNING)
    with pytest.raises(TransitionError, match="cannot go from succeeded to running; allowed: none"):
        check_transition(JobState.SUCCEEDED, JobState.RUNNING)
    with pytest.raises(TransitionError, match="allowed: cancelled, failed, running"):
        check_transition(JobState.QUEUED, JobState.SUCCEEDED)


def _resources(num_workers, cpus=1.0, use_gpu=False):
    return JobSpec(
        resources=Resources(num_workers=num_workers, cpus_per_worker=cpus, use_gpu=use_gpu)
    )


def test_claim_takes_only_a_job_that_fits_in_the_free_resources(db):
    big, _ = queue.submit(db, _resources(4, cpus=2.0), priority=9, now=T0)  # 8 CPUs
    gpu, _ = queue.submit(db, _resources(1, use_gpu=True), priority=5, now=T0)  # 1 CPU, 1 GPU
    small, _ = queue.submit(db, _resources(2), priority=0, now=T0)  # 2 CPUs
    assert (_job(db, big.id).cpus, _job(db, big.id).gpus) == (8.0, 0.0)
    assert (_job(db, gpu.id).cpus, _job(db, gpu.id).gpus) == (1.0, 1.0)
    assert queue.claim(db, "w", lease_s=LEASE, free=(1.5, 0.0), now=T0) is None
    # the small job backfills past the two higher-priority ones that do not fit
    leases = [
        queue.claim(db, "w", lease_s=LEASE, free=free, now=T0)
        for free in ((2.0, 0.0), (7.0, 1.0), (8.0, 0.0))
    ]
    assert [lease.job_id for lease in leases] == [small.id, gpu.id, big.id]
    # each lease carries its job's demand: what the worker holds while the job runs
    assert [(lease.cpus, lease.gpus) for lease in leases] == [(2.0, 0.0), (1.0, 1.0), (8.0, 0.0)]


def test_migration_fills_in_the_demand_of_jobs_queued_before_it(engine):
    from alembic import command
    from sqlalchemy import text

    from recu_db.migrate import alembic_config, upgrade

    command.downgrade(alembic_config(engine), "20261126_results")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (state, spec, priority, attempt, max_attempts, current_epoch, "
                "created_at, updated_at) VALUES ('queued', :spec, 0, 0, 3, 0, :t, :t)"
            ),
            {"spec": '{"resources": {"num_workers": 3, "cpus_per_worker": 2}}', "t": T0},
        )
    upgrade(engine)
    assert is_current(engine)
    with engine.begin() as connection:
        assert connection.execute(text("SELECT cpus, gpus FROM jobs")).one() == (6.0, 0.0)
        per_worker = text("SELECT worker_cpus, worker_gpus FROM jobs")
        assert connection.execute(per_worker).one() == (2.0, 0.0)


def test_the_models_match_the_migrations(engine):
    """Alembic's autogenerate finds nothing to add: the ORM models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from recu_db.models import Base

    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_api_replicas_starting_together_migrate_once(database_url):
    """Six processes upgrade an empty database at the same moment (as API replicas do at
    start-up): the migration lock lets one migrate; the others find the schema current."""
    import subprocess
    import sys

    from alembic import command
    from sqlalchemy import inspect

    from recu_db.engine import make_engine
    from recu_db.migrate import alembic_config

    setup = make_engine(database_url)
    command.downgrade(alembic_config(setup), "base")
    assert "jobs" not in inspect(setup).get_table_names()
    code = (
        "import sys; from recu_db.engine import make_engine; from recu_db.migrate import upgrade; "
        "upgrade(make_engine(sys.argv[1]))"
    )
    replicas = [
        subprocess.Popen([sys.executable, "-c", code, database_url], stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in replicas]
    assert [p.returncode for p in replicas] == [0] * 6, errors
    assert is_current(setup)
    setup.dispose()


def test_the_queue_cap_holds_under_20_concurrent_submits(db):
    """Exactly ``cap`` of 20 racing submits of one owner are queued; the rest are refused,
    and another owner is not affected."""
    from recu_db.tokens import ensure_user

    alice, bob = ensure_user(db, "alice").user_id, ensure_user(db, "bob").user_id

    def submit(_):
        try:
            queue.submit(db, JobSpec(), user_id=alice, max_queued=5)
        except queue.QueueFullError as err:
            return err.cap
        return None

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(submit, range(20)))
    assert outcomes.count(None) == 5
    assert outcomes.count(5) == 15
    assert queue.submit(db, JobSpec(), user_id=bob, max_queued=5)[1]


def test_a_claim_parses_the_spec_once_and_fails_a_job_it_cannot_read(db):
    """The lease carries the typed spec; a stored spec this version cannot read fails the
    job at its claim, naming the field, instead of reaching a worker."""
    from sqlalchemy import update

    good, _ = queue.submit(db, JobSpec(epochs=7), now=T0)
    bad, _ = queue.submit(db, JobSpec(), priority=1, now=T0)
    with db.begin() as session:
        session.execute(update(Job).where(Job.id == bad.id).values(spec={"epochs": "many"}))
    assert queue.claim(db, "w", lease_s=30, now=T0) is None  # the unreadable one, failed
    with db() as session:
        row = session.get(Job, bad.id)
        assert (row.state, row.owner) == (JobState.FAILED, None)
        assert "epochs" in row.error
        assert "cannot be read" in row.error
    lease = queue.claim(db, "w", lease_s=30, now=T0)
    assert lease.job_id == good.id
    assert isinstance(lease.spec, JobSpec)
    assert lease.job.epochs == 7
    with pytest.raises(TypeError, match="not a sweep"):
        _ = lease.sweep


def test_a_claim_skips_a_job_whose_worker_no_node_can_hold(db):
    """8 CPUs free in all, but no node has more than 4: a job of one 6-CPU worker stays
    queued (a claim would wait for a placement that never comes); 2 x 3 CPUs is taken."""
    wide, _ = queue.submit(db, JobSpec(resources=Resources(cpus_per_worker=6.0)), priority=5)
    split, _ = queue.submit(
        db, JobSpec(resources=Resources(num_workers=2, cpus_per_worker=3.0)), priority=0
    )
    lease = queue.claim(db, "w", lease_s=30, free=(8.0, 0.0), largest_node=(4.0, 0.0))
    assert lease.job_id == split.id
    assert queue.claim(db, "w", lease_s=30, free=(8.0, 0.0), largest_node=(4.0, 0.0)) is None
    assert queue.claim(db, "w", lease_s=30, free=(8.0, 0.0), largest_node=(8.0, 0.0)).job_id == (
        wide.id
    )
