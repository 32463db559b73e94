"""Fair share and wide-job reservations in the claim, on SQLite and PostgreSQL (the real
queue, the clock driven through ``now``)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from recu_core.jobspec import JobSpec, Resources
from recu_db import fairshare, queue
from recu_db.engine import make_sessionmaker
from recu_db.fairshare import FIFO, ClaimPolicy
from recu_db.models import Job, User
from recu_db.states import JobState
from recu_db.tokens import ensure_user
from service.pending import pending_reasons

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
POLICY = ClaimPolicy(half_life_s=3600.0, reserve_after_s=None)


def _gpus(n: int, seed: int = 0) -> JobSpec:
    return JobSpec(seed=seed, resources=Resources(num_workers=n, use_gpu=True, gpus_per_worker=1))


def _usage(db, user_id: int, now: datetime, policy: ClaimPolicy) -> float:
    with make_sessionmaker(db.kw["bind"])() as session:
        return fairshare.usage_now(session.connection(), now, policy).get(user_id, 0.0)


@pytest.fixture
def users(db):
    return ensure_user(db, "alice").user_id, ensure_user(db, "bob").user_id


def test_the_user_with_less_recent_usage_goes_first_whatever_the_priority(db, users):
    alice, bob = users
    queue.submit(db, _gpus(1), user_id=alice, now=T0)
    ran = queue.claim(db, "w", lease_s=60, policy=POLICY, now=T0)
    assert ran is not None
    assert queue.finish(db, ran, JobState.SUCCEEDED, policy=POLICY, now=T0 + HOUR)
    # alice used 1 GPU for an hour: her usage is the integral of the decayed rate
    expected = 3600.0 / math.log(2) * (1 - 0.5)
    assert _usage(db, alice, T0 + HOUR, POLICY) == pytest.approx(expected, rel=1e-9)

    older, _ = queue.submit(db, _gpus(1, 1), user_id=alice, priority=9, now=T0 + HOUR)
    newer, _ = queue.submit(db, _gpus(1, 2), user_id=bob, priority=0, now=T0 + 2 * HOUR)
    now = T0 + 2 * HOUR
    first = queue.claim(db, "w", lease_s=60, policy=POLICY, now=now)
    assert first is not None
    assert first.job_id == newer.id  # bob has used nothing
    second = queue.claim(db, "w", lease_s=60, policy=POLICY, now=now)
    assert second is not None
    assert second.job_id == older.id


def test_without_fair_share_priority_then_age_decides(db, users):
    alice, bob = users
    queue.submit(db, _gpus(1), user_id=alice, now=T0)
    ran = queue.claim(db, "w", lease_s=60, policy=FIFO, now=T0)
    assert ran is not None
    queue.finish(db, ran, JobState.SUCCEEDED, policy=FIFO, now=T0 + HOUR)
    older, _ = queue.submit(db, _gpus(1, 1), user_id=alice, priority=9, now=T0 + HOUR)
    queue.submit(db, _gpus(1, 2), user_id=bob, now=T0 + HOUR)
    first = queue.claim(db, "w", lease_s=60, policy=FIFO, now=T0 + 2 * HOUR)
    assert first is not None
    assert first.job_id == older.id


def test_running_work_counts_and_priority_orders_a_users_own_jobs(db, users):
    alice, bob = users
    queue.submit(db, _gpus(4), user_id=alice, now=T0)
    running = queue.claim(db, "w", lease_s=7200, policy=POLICY, now=T0)
    assert running is not None
    later = T0 + HOUR
    assert _usage(db, alice, later, POLICY) == pytest.approx(4 * 3600 / math.log(2) * 0.5)
    queue.submit(db, _gpus(1, 1), user_id=alice, now=later)
    low, _ = queue.submit(db, _gpus(1, 2), user_id=bob, priority=0, now=later)
    high, _ = queue.submit(db, _gpus(1, 3), user_id=bob, priority=5, now=later)
    order = [queue.claim(db, "w", lease_s=60, policy=POLICY, now=later) for _ in range(2)]
    assert [lease.job_id for lease in order if lease] == [high.id, low.id]


def test_usage_halves_every_half_life_and_ends_add_up(db, users):
    alice, _ = users
    for seed in range(2):
        queue.submit(db, _gpus(2, seed), user_id=alice, now=T0)
    leases = [queue.claim(db, f"w{i}", lease_s=7200, policy=POLICY, now=T0) for i in range(2)]
    for lease in leases:
        assert lease is not None
        assert queue.finish(db, lease, JobState.SUCCEEDED, policy=POLICY, now=T0 + HOUR)
    at_end = _usage(db, alice, T0 + HOUR, POLICY)
    assert at_end == pytest.approx(2 * 2 * 3600 / math.log(2) * 0.5)
    assert _usage(db, alice, T0 + 2 * HOUR, POLICY) == pytest.approx(at_end / 2)
    assert _usage(db, alice, T0 + 4 * HOUR, POLICY) == pytest.approx(at_end / 8)
    with db() as session:
        stored = session.scalars(select(User.usage).where(User.id == alice)).one()
    assert stored == pytest.approx(at_end)


WIDE = ClaimPolicy(half_life_s=3600.0, reserve_after_s=600.0, reservation_s=120.0)
CLUSTER = (64.0, 8.0)  # one worker's cluster: 64 CPUs, 8 GPUs


def test_a_wide_job_that_waited_is_reserved_and_its_worker_drains_for_it(db, users):
    alice, bob = users
    wide, _ = queue.submit(db, _gpus(8), user_id=alice, now=T0)
    for seed in range(3):
        queue.submit(db, _gpus(1, seed + 1), user_id=bob, now=T0)
    free = (60.0, 2.0)  # 6 GPUs busy
    # before reserve_after_s a small job backfills
    early = queue.claim(db, "w1", lease_s=60, free=free, total=CLUSTER, policy=WIDE, now=T0)
    assert early is not None
    assert early.job_id != wide.id
    # then w1 reserves the wide job and starts nothing more (its cluster drains) ...
    late = T0 + timedelta(seconds=601)
    assert (
        queue.claim(db, "w1", lease_s=60, free=free, total=CLUSTER, policy=WIDE, now=late) is None
    )
    with db() as session:
        held = session.get(Job, wide.id)
        assert held is not None
        assert (held.reserved_by, held.state) == ("w1", JobState.QUEUED)
        why = pending_reasons(session, [held], now=late)[wide.id]
        assert why.startswith("reserved by worker w1: its cluster starts nothing else")
    assert (
        queue.claim(db, "w1", lease_s=60, free=free, total=CLUSTER, policy=WIDE, now=late) is None
    )
    # ... while another worker goes on backfilling small jobs
    other = queue.claim(db, "w2", lease_s=60, free=(64.0, 2.0), policy=WIDE, now=late)
    assert other is not None
    assert other.job_id != wide.id
    # once 8 GPUs are free on w1's cluster, w1 claims the wide job
    ready = queue.claim(
        db, "w1", lease_s=60, free=(64.0, 8.0), total=CLUSTER, policy=WIDE, now=late
    )
    assert ready is not None
    assert ready.job_id == wide.id
    with db() as session:
        started = session.get(Job, wide.id)
        assert started is not None
        assert (started.reserved_by, started.state) == (None, JobState.RUNNING)


def test_a_reserved_job_starts_on_any_worker_where_it_fits_and_its_reserver_resumes(db, users):
    alice, bob = users
    wide, _ = queue.submit(db, _gpus(8), user_id=alice, now=T0)
    small, _ = queue.submit(db, _gpus(1, 1), user_id=bob, now=T0)
    late = T0 + timedelta(seconds=601)
    busy = (60.0, 2.0)
    assert (
        queue.claim(db, "w1", lease_s=60, free=busy, total=CLUSTER, policy=WIDE, now=late) is None
    )
    elsewhere = queue.claim(db, "w2", lease_s=60, free=(64.0, 8.0), policy=WIDE, now=late)
    assert elsewhere is not None
    assert elsewhere.job_id == wide.id  # it fits on w2 now: it need not wait for w1's drain
    resumed = queue.claim(db, "w1", lease_s=60, free=busy, total=CLUSTER, policy=WIDE, now=late)
    assert resumed is not None
    assert resumed.job_id == small.id  # w1 holds no reservation any more


def test_a_reservation_is_dropped_when_the_cluster_can_no_longer_hold_the_job(db, users):
    alice, bob = users
    wide, _ = queue.submit(db, _gpus(8), user_id=alice, now=T0)
    small, _ = queue.submit(db, _gpus(1, 1), user_id=bob, now=T0)
    late = T0 + timedelta(seconds=601)
    full = (60.0, 2.0)
    assert (
        queue.claim(db, "w1", lease_s=60, free=full, total=CLUSTER, policy=WIDE, now=late) is None
    )
    shrunk = (48.0, 6.0)  # a node left: 6 GPUs in all
    lease = queue.claim(db, "w1", lease_s=60, free=(44.0, 2.0), total=shrunk, policy=WIDE, now=late)
    assert lease is not None
    assert lease.job_id == small.id
    with db() as session:
        assert session.get(Job, wide.id).reserved_by is None


def test_a_reservation_lapses_when_its_worker_stops_claiming(db, users):
    alice, _ = users
    wide, _ = queue.submit(db, _gpus(8), user_id=alice, now=T0)
    late = T0 + timedelta(seconds=601)
    small = (64.0, 1.0)
    assert (
        queue.claim(db, "w1", lease_s=60, free=small, total=CLUSTER, policy=WIDE, now=late) is None
    )
    # w2's cluster can hold it too; while w1's reservation is live w2 cannot take it over
    assert (
        queue.claim(db, "w2", lease_s=60, free=small, total=CLUSTER, policy=WIDE, now=late) is None
    )
    with db() as session:
        assert session.get(Job, wide.id).reserved_by == "w1"
    gone = late + timedelta(seconds=121)  # w1 died: its reservation lapsed
    assert (
        queue.claim(db, "w2", lease_s=60, free=small, total=CLUSTER, policy=WIDE, now=gone) is None
    )
    with db() as session:
        assert session.get(Job, wide.id).reserved_by == "w2"


def test_a_job_no_cluster_of_this_worker_could_hold_is_not_reserved(db, users):
    alice, bob = users
    queue.submit(db, _gpus(16), user_id=alice, now=T0)  # more than the 8 GPUs there are
    small, _ = queue.submit(db, _gpus(1, 1), user_id=bob, now=T0)
    late = T0 + timedelta(seconds=601)
    lease = queue.claim(
        db, "w1", lease_s=60, free=(64.0, 2.0), total=CLUSTER, policy=WIDE, now=late
    )
    assert lease is not None
    assert lease.job_id == small.id


def test_a_job_that_waited_age_s_goes_first_whatever_its_owners_usage(db, users):
    alice, bob = users
    aging = ClaimPolicy(half_life_s=3600.0, age_s=1800.0, reserve_after_s=None)
    queue.submit(db, _gpus(8), user_id=alice, now=T0)
    ran = queue.claim(db, "w", lease_s=7200, policy=aging, now=T0)
    assert ran is not None
    queue.finish(db, ran, JobState.SUCCEEDED, policy=aging, now=T0 + HOUR)
    old, _ = queue.submit(db, _gpus(1, 1), user_id=alice, now=T0 + HOUR)
    fresh = T0 + HOUR + timedelta(seconds=1799)
    young, _ = queue.submit(db, _gpus(1, 2), user_id=bob, now=fresh)
    # alice's job has waited 1799 s: bob (no usage) still goes first ...
    first = queue.claim(db, "w", lease_s=60, policy=aging, now=fresh)
    assert first is not None
    assert first.job_id == young.id
    queue.submit(db, _gpus(1, 3), user_id=bob, now=fresh)
    # ... and once it has waited 1800 s it goes before bob's newer job
    aged = queue.claim(db, "w", lease_s=60, policy=aging, now=T0 + HOUR + timedelta(seconds=1800))
    assert aged is not None
    assert aged.job_id == old.id


def test_the_claim_order_matches_its_definition_on_a_large_mixed_queue(db, users):
    """Over 200 queued jobs (more than the claim's 64 candidates per owner) of owners with
    and without usage and of no owner, in four priorities, some aged, some too wide for
    the free GPUs: claiming until nothing fits takes exactly the fitting jobs, in the
    order (-1 if aged else the owner's usage, priority DESC, id)."""
    import random

    alice, bob = users
    carol = ensure_user(db, "carol").user_id
    policy = ClaimPolicy(half_life_s=3600.0, age_s=1800.0, reserve_after_s=None)
    for owner, gpus in ((alice, 4), (bob, 1)):  # alice used 4 GPU-hours, bob 1
        queue.submit(db, _gpus(gpus), user_id=owner, now=T0)
        ran = queue.claim(db, "w", lease_s=7200, policy=policy, now=T0)
        assert ran is not None
        queue.finish(db, ran, JobState.SUCCEEDED, policy=policy, now=T0 + HOUR)
    now = T0 + 3 * HOUR
    rng = random.Random(7)
    queued = []
    for i in range(200):
        owner = rng.choice([alice, alice, bob, carol, None])
        created = now - timedelta(seconds=rng.choice([60, 600, 1799, 1801, 7000]))
        wide = rng.random() < 0.1
        job, _ = queue.submit(
            db,
            _gpus(4 if wide else 1, seed=i),
            user_id=owner,
            priority=rng.randrange(4),
            now=created,
        )
        queued.append((job.id, owner, job.priority, created, wide))
    with make_sessionmaker(db.kw["bind"])() as session:
        usage = fairshare.usage_now(session.connection(), now, policy)
    assert usage[alice] > usage[bob] > 0
    assert policy.age_s is not None
    aged_before = now - timedelta(seconds=policy.age_s)

    def key(job: tuple) -> tuple:
        job_id, owner, priority, created, _wide = job
        first = -1.0 if created <= aged_before else usage.get(owner, 0.0)
        return (first, -priority, job_id)

    expected = [job[0] for job in sorted(queued, key=key) if not job[4]]
    claimed = []
    while lease := queue.claim(db, "w", lease_s=60, free=(64, 2), policy=policy, now=now):
        claimed.append(lease.job_id)
    assert claimed == expected
