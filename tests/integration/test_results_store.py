"""Telemetry, logs and chunked checkpoints in the database, fenced like every write."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from recu_core.jobspec import JobSpec
from recu_db import queue, reads, results
from recu_db.engine import make_sessionmaker
from recu_db.models import Checkpoint, CheckpointChunk, EpochTelemetry, LogLine

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(engine):
    return make_sessionmaker(engine)


@pytest.fixture
def lease(db):
    queue.submit(db, JobSpec(), now=T0)
    return queue.claim(db, "w", lease_s=30, now=T0)


def test_checkpoint_streams_in_chunks_and_round_trips(db, lease, monkeypatch):
    monkeypatch.setattr(results, "CHUNK_BYTES", 1000)
    payload = os.urandom(4500)
    ckpt = results.store_checkpoint(db, lease, 1, {"test_acc": 0.5}, io.BytesIO(payload), keep=2)
    assert ckpt.size == 4500
    assert ckpt.sha256 == hashlib.sha256(payload).hexdigest()
    chunks = list(results.iter_checkpoint_bytes(db, ckpt.id))
    assert [len(c) for c in chunks] == [1000, 1000, 1000, 1000, 500]
    assert b"".join(chunks) == payload


def test_keep_k_deletes_older_checkpoints_and_their_chunks(db, lease):
    ids = [
        results.store_checkpoint(db, lease, epoch, {}, io.BytesIO(bytes([epoch]) * 10), keep=2).id
        for epoch in (1, 2, 3)
    ]
    with db.begin() as session:
        kept = session.scalars(select(Checkpoint.epoch).order_by(Checkpoint.epoch)).all()
        orphans = session.scalar(
            select(func.count())
            .select_from(CheckpointChunk)
            .where(CheckpointChunk.checkpoint_id == ids[0])
        )
    assert kept == [2, 3]
    assert orphans == 0
    assert list(results.iter_checkpoint_bytes(db, ids[0])) == []


def test_stale_lease_writes_nothing(db, lease):
    queue.reap(db, now=T0 + timedelta(seconds=31))
    queue.claim(db, "other", lease_s=30, now=T0 + timedelta(seconds=32))
    assert results.store_checkpoint(db, lease, 1, {}, io.BytesIO(b"x"), keep=1) is None
    assert not results.record_telemetry(db, lease, 1, {"layers": {}})
    assert not results.append_logs(db, lease, ["late"])
    with db.begin() as session:
        for table in (Checkpoint, CheckpointChunk, EpochTelemetry, LogLine):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table


def test_telemetry_upserts_and_logs_append(db, lease):
    assert results.record_telemetry(db, lease, 1, {"v": 1})
    assert results.record_telemetry(db, lease, 1, {"v": 2})
    assert results.append_logs(db, lease, ["a", "b"])
    assert results.append_logs(db, lease, ["c"])
    with db.begin() as session:
        assert session.scalars(select(EpochTelemetry.telemetry)).all() == [{"v": 2}]
        assert session.scalars(select(LogLine.line).order_by(LogLine.id)).all() == ["a", "b", "c"]


def test_keep_must_be_positive(db, lease):
    with pytest.raises(ValueError, match="keep must be >= 1, got 0"):
        results.store_checkpoint(db, lease, 1, {}, io.BytesIO(b""), keep=0)


def test_a_resumed_job_uses_only_a_checkpoint_that_matches_its_sha256(
    db, lease, database_url, tmp_path
):
    """The worker's resume reads the newest stored checkpoint whose bytes hash to the stored
    sha256; a corrupted newest one is skipped for the older good one, none good: None."""
    pytest.importorskip("ray", reason="the worker's resume lives in workers/ (ray)")
    from sqlalchemy import update

    from workers.train_loop import latest_checkpoint

    older, newer = os.urandom(3000), os.urandom(3000)
    first = results.store_checkpoint(db, lease, 1, {}, io.BytesIO(older), keep=5, now=T0)
    second = results.store_checkpoint(db, lease, 2, {}, io.BytesIO(newer), keep=5, now=T0)
    assert first is not None
    assert second is not None
    resumed = latest_checkpoint(db, lease.job_id, tmp_path)
    assert resumed is not None
    assert resumed.read_bytes() == newer

    with db.begin() as session:  # a flipped byte in storage
        session.execute(
            update(CheckpointChunk)
            .where(CheckpointChunk.checkpoint_id == second.id)
            .values(data=b"\x00" + newer[1:])
        )
    resumed = latest_checkpoint(db, lease.job_id, tmp_path)
    assert resumed is not None
    assert resumed.read_bytes() == older

    with db.begin() as session:
        session.execute(
            update(CheckpointChunk)
            .where(CheckpointChunk.checkpoint_id == first.id)
            .values(data=b"\x00" + older[1:])
        )
    assert latest_checkpoint(db, lease.job_id, tmp_path) is None


def test_a_pruned_checkpoints_id_is_never_given_to_another(db, lease):
    """Keep-K keeps the last stored (by id), whatever its epoch: a checkpoint of a lower
    epoch stored after a higher one (a run resumed from an older checkpoint) is kept, and
    no id is reused on SQLite (which numbers a new row max(id) + 1) for other bytes."""
    high = results.store_checkpoint(db, lease, 9, {}, io.BytesIO(b"epoch 9"), keep=1, now=T0)
    low = results.store_checkpoint(db, lease, 3, {}, io.BytesIO(b"epoch 3"), keep=1, now=T0)
    with db() as session:
        assert [c.id for c in reads.job_checkpoints(session, lease.job_id)] == [low.id]
    later = results.store_checkpoint(db, lease, 4, {}, io.BytesIO(b"epoch 4"), keep=1, now=T0)
    assert high.id < low.id < later.id
    assert results.read_checkpoint(db, low.id, io.BytesIO()) is None  # pruned, not reused
    into = io.BytesIO()
    assert results.read_checkpoint(db, later.id, into).epoch == 4
    assert into.getvalue() == b"epoch 4"
