"""A hypothesis state machine drives the real queue code on a real (SQLite) database
with random interleavings of submit, claim, heartbeat, time passing, reap, record, cancel,
release (a job given back after a database outage) and finish, against a model of what
each job's state must be. After every step: each job's state is the model's, a lease that
is no longer current writes nothing, and every recorded transition is one the state
machine allows."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule
from sqlalchemy import select

from recu_core.jobspec import JobSpec
from recu_db import queue
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.migrate import upgrade
from recu_db.models import Job, JobEvent
from recu_db.states import TERMINAL, JobState, check_transition

LEASE_S = 30.0
MAX_ATTEMPTS = 2


@settings(max_examples=60, stateful_step_count=40, deadline=None)
class QueueLifecycle(RuleBasedStateMachine):
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.engine = make_engine(f"sqlite:///{self._tmp.name}/q.db")
        upgrade(self.engine)
        self.db = make_sessionmaker(self.engine)
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.expected: dict[int, JobState] = {}
        self.current: dict[int, queue.Lease] = {}  # the lease that may write, per job
        self.expires: dict[int, datetime] = {}

    def teardown(self) -> None:
        self.engine.dispose()
        self._tmp.cleanup()

    def _owned(self, lease: queue.Lease) -> bool:
        return self.current.get(lease.job_id) == lease and self.expected[lease.job_id] in (
            JobState.RUNNING,
            JobState.CANCELLING,
        )

    @rule()
    def submit(self) -> None:
        job, created = queue.submit(
            self.db, JobSpec(seed=len(self.expected)), max_attempts=MAX_ATTEMPTS, now=self.now
        )
        assert created
        self.expected[job.id] = JobState.QUEUED

    @rule(target=leases, worker=st.sampled_from(["a", "a", "b"]))
    def claim(self, worker: str) -> object:
        lease = queue.claim(self.db, worker, lease_s=LEASE_S, now=self.now)
        queued = sorted(j for j, s in self.expected.items() if s == JobState.QUEUED)
        if not queued:
            assert lease is None
            return multiple()
        assert lease is not None
        assert lease.job_id == queued[0]  # same priority: the oldest first
        self.expected[lease.job_id] = JobState.RUNNING
        self.current[lease.job_id] = lease
        self.expires[lease.job_id] = self.now + timedelta(seconds=LEASE_S)
        return lease

    @rule(seconds=st.sampled_from([5, 20]))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def workers_die(self) -> None:
        """Every live lease expires (its worker stopped heartbeating); the reaper runs."""
        self.now += timedelta(seconds=LEASE_S + 1)
        self.reap()

    @rule(lease=leases)
    def heartbeat(self, lease: queue.Lease) -> None:
        state = queue.heartbeat(self.db, lease, lease_s=LEASE_S, now=self.now)
        if self._owned(lease):
            assert state == self.expected[lease.job_id]
            self.expires[lease.job_id] = self.now + timedelta(seconds=LEASE_S)
        else:
            assert state is None

    @rule(lease=leases, epoch=st.integers(1, 5))
    def record_epoch(self, lease: queue.Lease, epoch: int) -> None:
        written = queue.record_epoch(self.db, lease, epoch, {"test_acc": 0.5}, now=self.now)
        assert written == self._owned(lease)

    @rule(lease=leases, state=st.sampled_from([JobState.SUCCEEDED, JobState.FAILED]))
    def finish(self, lease: queue.Lease, state: JobState) -> None:
        owned = self._owned(lease)
        assert queue.finish(self.db, lease, state, now=self.now) == owned
        if owned:
            cancelling = self.expected[lease.job_id] == JobState.CANCELLING
            self.expected[lease.job_id] = JobState.CANCELLED if cancelling else state
            del self.current[lease.job_id]

    @rule(lease=leases)
    def release(self, lease: queue.Lease) -> None:
        """A run ended on a database outage: the worker gives the job back (fenced)."""
        owned = self._owned(lease)
        state = queue.release(self.db, lease, "database unavailable", now=self.now)
        if not owned:
            assert state is None
            return
        if self.expected[lease.job_id] == JobState.CANCELLING:
            want = JobState.CANCELLED
        elif lease.attempt < MAX_ATTEMPTS:
            want = JobState.QUEUED
        else:
            want = JobState.FAILED
        assert state == want
        self.expected[lease.job_id] = want
        del self.current[lease.job_id]

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        if not self.expected:
            return
        job_id = data.draw(st.sampled_from(sorted(self.expected)))
        before = self.expected[job_id]
        after = queue.cancel(self.db, job_id, now=self.now)
        want = {JobState.QUEUED: JobState.CANCELLED, JobState.RUNNING: JobState.CANCELLING}
        self.expected[job_id] = want.get(before, before)
        assert after == self.expected[job_id]

    @rule()
    def reap(self) -> None:
        changed = dict(queue.reap(self.db, now=self.now))
        for job_id, state in self.expected.items():
            live = state in (JobState.RUNNING, JobState.CANCELLING)
            if not (live and self.expires[job_id] < self.now):
                assert job_id not in changed
                continue
            attempt = self.current[job_id].attempt
            if state == JobState.CANCELLING:
                want = JobState.CANCELLED
            elif attempt < MAX_ATTEMPTS:
                want = JobState.QUEUED
            else:
                want = JobState.FAILED
            assert changed[job_id] == want
            self.expected[job_id] = want
            del self.current[job_id]

    @invariant()
    def states_match_the_model_and_transitions_are_legal(self) -> None:
        with self.db() as session:
            rows = {j.id: j for j in session.scalars(select(Job))}
            events = session.scalars(select(JobEvent).order_by(JobEvent.id)).all()
        assert {j: JobState(r.state) for j, r in rows.items()} == self.expected
        for row in rows.values():
            if JobState(row.state) in TERMINAL or row.state == JobState.QUEUED:
                assert row.owner is None
        last: dict[int, JobState | None] = {}
        for event in events:
            previous = last.get(event.job_id)
            assert (None if event.from_state is None else JobState(event.from_state)) == previous
            if previous is not None:
                check_transition(previous, JobState(event.to_state))
            last[event.job_id] = JobState(event.to_state)


test_queue_lifecycle_state_machine = QueueLifecycle.TestCase
