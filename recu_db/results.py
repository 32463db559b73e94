"""What a running job writes back (telemetry, logs, checkpoints) and how it is read.

Writes are fenced by the worker's lease exactly like ``queue.record_epoch``: a stale
worker's write changes nothing. A checkpoint is written in one transaction, chunk by
chunk from a stream (never whole in memory), with its size and sha256 computed on the
way; the keep-K policy deletes the job's older checkpoints in the same transaction, so
a crash leaves either the old set or the new one, never a half-written checkpoint.

A checkpoint is read back whole from one snapshot (``read_checkpoint``: one transaction,
REPEATABLE READ on PostgreSQL, a WAL read transaction on SQLite), checked against its
sha256, into a file the caller gives: a prune that commits meanwhile changes nothing the
reader sees, so the API sends headers only for a body it already holds complete.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import IO, Any, BinaryIO

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from recu_db.models import (
    Checkpoint,
    CheckpointChunk,
    EpochTelemetry,
    Export,
    Job,
    LogLine,
    RunManifestRow,
)
from recu_db.queue import Db, Lease, fence, utcnow

CHUNK_BYTES = 1 << 20


def _owned(session: Session, lease: Lease, now: datetime) -> bool:
    row = session.execute(
        update(Job)
        .where(*fence(lease))
        .values(updated_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    return row is not None


def record_telemetry(
    db: Db, lease: Lease, epoch: int, telemetry: dict[str, Any], *, now: datetime | None = None
) -> bool:
    """Upsert one epoch's weight telemetry; False (nothing written) if the lease is stale."""
    now = now or utcnow()
    with db.begin() as session:
        if not _owned(session, lease, now):
            return False
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(EpochTelemetry).values(
            job_id=lease.job_id, epoch=epoch, telemetry=telemetry
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["job_id", "epoch"], set_={"telemetry": telemetry}
            )
        )
    return True


def append_logs(db: Db, lease: Lease, lines: Sequence[str], *, now: datetime | None = None) -> bool:
    """Append training output lines; False (nothing written) if the lease is stale."""
    now = now or utcnow()
    with db.begin() as session:
        if not _owned(session, lease, now):
            return False
        session.add_all(
            LogLine(job_id=lease.job_id, attempt=lease.attempt, at=now, line=line) for line in lines
        )
    return True


def record_manifest(
    db: Db, lease: Lease, manifest: dict[str, Any], *, now: datetime | None = None
) -> bool:
    """Store the attempt's reproducibility manifest (again: replaced, as a retried write
    may repeat it); False (nothing written) if the lease is stale."""
    now = now or utcnow()
    with db.begin() as session:
        if not _owned(session, lease, now):
            return False
        session.merge(
            RunManifestRow(
                job_id=lease.job_id, attempt=lease.attempt, recorded_at=now, manifest=manifest
            )
        )
    return True


def store_checkpoint(
    db: Db,
    lease: Lease,
    epoch: int,
    metrics: dict[str, Any],
    stream: BinaryIO,
    *,
    keep: int,
    best_epoch: int | None = None,
    now: datetime | None = None,
) -> Checkpoint | None:
    """Store a checkpoint read from ``stream`` in CHUNK_BYTES chunks; keep the newest
    ``keep`` of the job's checkpoints (the last stored, by id) and the one of ``best_epoch``
    (the run's best so far, which the worker always stores). None (nothing written) if the
    lease is stale. The checkpoint just stored is always kept, so the table's highest id
    is never deleted and SQLite, which numbers a new row max(id) + 1, never gives a pruned
    checkpoint's id to another one."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    now = now or utcnow()
    with db.begin() as session:
        if not _owned(session, lease, now):
            return None
        ckpt = Checkpoint(
            job_id=lease.job_id,
            epoch=epoch,
            attempt=lease.attempt,
            size=0,
            sha256="",
            metrics=metrics,
            created_at=now,
        )
        session.add(ckpt)
        session.flush()
        digest = hashlib.sha256()
        size = 0
        for seq, chunk in enumerate(iter(lambda: stream.read(CHUNK_BYTES), b"")):
            digest.update(chunk)
            size += len(chunk)
            session.add(CheckpointChunk(checkpoint_id=ckpt.id, seq=seq, data=chunk))
            session.flush()
            session.expunge_all()  # drop the chunk from the identity map: bounded memory
            session.add(ckpt)
        ckpt.size = size
        ckpt.sha256 = digest.hexdigest()
        stale = (
            select(Checkpoint.id, Checkpoint.epoch)
            .where(Checkpoint.job_id == lease.job_id)
            .order_by(Checkpoint.id.desc())
            .offset(keep)
        )
        old_ids = [row.id for row in session.execute(stale) if row.epoch != best_epoch]
        if old_ids:
            session.execute(
                delete(CheckpointChunk).where(CheckpointChunk.checkpoint_id.in_(old_ids))
            )
            # ON DELETE CASCADE does this too; explicit, so it holds whatever the pragmas
            session.execute(delete(Export).where(Export.checkpoint_id.in_(old_ids)))
            session.execute(delete(Checkpoint).where(Checkpoint.id.in_(old_ids)))
    return ckpt


class CheckpointCorruptError(RuntimeError):
    """A checkpoint's stored chunks do not add up to its recorded size and sha256."""


def read_checkpoint(
    db: Db, checkpoint_id: int, into: IO[bytes], *, user_id: int | None = None
) -> Checkpoint | None:
    """Write the checkpoint's bytes to ``into`` from one consistent snapshot and return its
    metadata; None (``into`` untouched) when it does not exist, or (``user_id`` given) is
    not a job of that user's. Memory stays at one chunk; the bytes are checked against the
    stored size and sha256 (``CheckpointCorruptError`` if they differ: not a race, which
    the snapshot excludes, but damaged storage)."""
    with db.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            # both statements below see the same snapshot (READ COMMITTED would give each
            # its own, and a prune committed between them would leave no chunks)
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        query = select(Checkpoint).where(Checkpoint.id == checkpoint_id)
        if user_id is not None:
            query = query.join(Job, Job.id == Checkpoint.job_id).where(Job.user_id == user_id)
        ckpt = session.scalar(query)
        if ckpt is None:
            return None
        chunks = session.execute(
            select(CheckpointChunk.data)
            .where(CheckpointChunk.checkpoint_id == checkpoint_id)
            .order_by(CheckpointChunk.seq)
            .execution_options(yield_per=1)
        )
        digest, size = hashlib.sha256(), 0
        for (data,) in chunks:
            digest.update(data)
            size += len(data)
            into.write(data)
    if size != ckpt.size or digest.hexdigest() != ckpt.sha256:
        raise CheckpointCorruptError(
            f"checkpoint {checkpoint_id}: {size} bytes stored, sha256 {digest.hexdigest()}; "
            f"recorded {ckpt.size} bytes, sha256 {ckpt.sha256}"
        )
    return ckpt


def iter_checkpoint_bytes(db: Db, checkpoint_id: int) -> Iterator[bytes]:
    """The checkpoint's bytes, one chunk per query: memory stays at one chunk. Each chunk
    is its own transaction, so a prune committed meanwhile ends the iteration early: only
    for a reader that owns the job's lease (no prune can race it); the API reads with
    ``read_checkpoint``."""
    seq = 0
    while True:
        with db.begin() as session:
            data = session.scalar(
                select(CheckpointChunk.data).where(
                    CheckpointChunk.checkpoint_id == checkpoint_id, CheckpointChunk.seq == seq
                )
            )
        if data is None:
            return
        yield bytes(data)
        seq += 1


def store_export(
    db: Db, lease: Lease, checkpoint_id: int, data: bytes, *, now: datetime | None = None
) -> Export | None:
    """Store the ``.bnn`` bytes of the checkpoint's export (one per checkpoint: an earlier
    one is replaced); None (nothing written) if the lease is stale or the checkpoint is
    gone (pruned meanwhile)."""
    now = now or utcnow()
    with db.begin() as session:
        if not _owned(session, lease, now):
            return None
        if session.get(Checkpoint, checkpoint_id) is None:
            return None
        session.execute(delete(Export).where(Export.checkpoint_id == checkpoint_id))
        export = Export(
            checkpoint_id=checkpoint_id,
            job_id=lease.job_id,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            data=data,
            created_at=now,
        )
        session.add(export)
    return export


def read_export(db: Db, checkpoint_id: int) -> Export | None:
    """The checkpoint's stored export (metadata and bytes), None when none is stored."""
    with db.begin() as session:
        return session.scalars(select(Export).where(Export.checkpoint_id == checkpoint_id)).first()
