"""Export jobs on the real database (SQLite and PostgreSQL): one job per checkpoint under
concurrent requests, a new one after a failure, the export deleted with its checkpoint,
and the worker's packing of a stored checkpoint (inline, no Ray)."""

from __future__ import annotations

import io
import threading

import pytest
from sqlalchemy import delete, func, select

from recu_core.export.bnn_file import read_bnn
from recu_core.jobspec import JobSpec
from recu_db import queue, results
from recu_db.models import Checkpoint, Export, Job
from recu_db.states import JobKind, JobState
from workers.export import run_export
from workers.trainer import TrainingCodeError


def _checkpoint(db, data: bytes = b"not a checkpoint"):
    queue.submit(db, JobSpec.model_validate({"epochs": 2}))
    lease = queue.claim(db, "w", lease_s=60)
    return lease, results.store_checkpoint(db, lease, 1, {}, io.BytesIO(data), keep=1)


def test_concurrent_requests_for_one_checkpoint_queue_one_export_job(db):
    _, ckpt = _checkpoint(db)
    barrier, answers = threading.Barrier(8), []

    def request():
        barrier.wait()
        answers.append(queue.submit_export(db, ckpt.id))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(created for _, _, created in answers) == 1
    assert len({job.id for _, job, _ in answers}) == 1
    with db() as session:
        count = session.scalar(select(func.count()).where(Job.kind == JobKind.EXPORT))
    assert count == 1


def test_a_failed_export_lets_a_later_request_queue_a_new_one_and_bad_bytes_fail_it(db):
    _, ckpt = _checkpoint(db)
    _, first, _ = queue.submit_export(db, ckpt.id)
    lease = queue.claim(db, "w", lease_s=60)
    assert lease.job_id == first.id
    assert lease.export.checkpoint_id == ckpt.id
    with pytest.raises(TrainingCodeError, match=f"cannot export checkpoint {ckpt.id}"):
        run_export(lease, db)
    assert queue.finish(db, lease, JobState.FAILED, error="bad")
    _, second, created = queue.submit_export(db, ckpt.id)
    assert created
    assert second.id != first.id


def test_the_worker_packs_and_stores_the_export_which_goes_with_its_checkpoint(
    db, trained_checkpoint
):
    train, ckpt = _checkpoint(db, trained_checkpoint.read_bytes())
    _, job, _ = queue.submit_export(db, ckpt.id)
    lease = queue.claim(db, "w", lease_s=60)
    run_export(lease, db)
    stored = results.read_export(db, ckpt.id)
    assert stored.job_id == job.id
    assert stored.size == len(stored.data)
    assert read_bnn(stored.data)[1]["source_sha256"] == ckpt.sha256
    again, none, created = queue.submit_export(db, ckpt.id)
    assert again.sha256 == stored.sha256
    assert none is None
    assert not created
    # keep=1: the next checkpoint prunes this one, and its export with it
    results.store_checkpoint(db, train, 2, {}, io.BytesIO(b"x"), keep=1)
    assert results.read_export(db, ckpt.id) is None
    # and a checkpoint deleted by any other path takes its export along (ON DELETE CASCADE)
    newer = results.store_checkpoint(db, train, 3, {}, io.BytesIO(b"y"), keep=5)
    _, job2, _ = queue.submit_export(db, newer.id)
    lease2 = queue.claim(db, "w", lease_s=60)
    assert lease2.job_id == job2.id
    assert results.store_export(db, lease2, newer.id, b"packed") is not None
    with db.begin() as session:
        session.execute(delete(Checkpoint).where(Checkpoint.id == newer.id))
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Export)) == 0
