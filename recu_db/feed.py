"""What happened to a job since a cursor: its state changes, epochs, log lines and
checkpoints, for the live stream (``GET /jobs/{id}/stream``).

A cursor is four positions, written ``E.M.L.C``: the last job event id, the last epoch
number, the last log line id and the last checkpoint id a client has seen. It is the
stream's event id, so a client that reconnects with ``Last-Event-ID`` resumes exactly
after what it had. Each epoch number is sent once: an epoch re-run after a restart
updates the stored history (``GET /jobs/{id}/metrics``), not the stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recu_db.models import Checkpoint, EpochMetric, JobEvent, LogLine

_CURSOR = re.compile(r"^(\d{1,18})\.(\d{1,18})\.(\d{1,18})\.(\d{1,18})$")
#: Rows of one kind read per call: a long backlog comes over several reads.
BATCH = 500


class BadCursorError(ValueError):
    """A Last-Event-ID that is not a cursor of this stream."""


@dataclass(frozen=True)
class Cursor:
    event: int = 0
    epoch: int = 0
    log: int = 0
    checkpoint: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        """The cursor a client sent (None or empty: the start)."""
        if not text:
            return cls()
        found = _CURSOR.match(text.strip())
        if found is None:
            raise BadCursorError(
                f"Last-Event-ID {text[:40]!r} is not a cursor of this stream: four integers "
                "E.M.L.C (event, epoch, log line, checkpoint), as the stream's ids are"
            )
        return cls(*(int(part) for part in found.groups()))

    def __str__(self) -> str:
        return f"{self.event}.{self.epoch}.{self.log}.{self.checkpoint}"


@dataclass(frozen=True)
class Item:
    """One stream event: its kind, its data, and the cursor just after it."""

    kind: str  # "event" | "epoch" | "log" | "checkpoint"
    data: dict[str, Any]
    cursor: Cursor


def changes(session: Session, job_id: int, cursor: Cursor) -> tuple[list[Item], bool]:
    """The job's rows after ``cursor``, in the order they are sent (events, epochs, log
    lines, checkpoints), each with the cursor after it; and whether more remain beyond
    this read's batch."""
    items: list[Item] = []
    data: dict[str, Any]
    events = session.execute(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.id > cursor.event)
        .order_by(JobEvent.id)
        .limit(BATCH)
    ).scalars()
    for e in events:
        cursor = replace(cursor, event=e.id)
        data = {"at": e.at, "from_state": e.from_state, "to_state": e.to_state}
        items.append(Item("event", data | {"attempt": e.attempt, "reason": e.reason}, cursor))
    epochs = session.execute(
        select(EpochMetric)
        .where(EpochMetric.job_id == job_id, EpochMetric.epoch > cursor.epoch)
        .order_by(EpochMetric.epoch)
        .limit(BATCH)
    ).scalars()
    for m in epochs:
        cursor = replace(cursor, epoch=m.epoch)
        data = {"epoch": m.epoch, "attempt": m.attempt, "metrics": m.metrics}
        items.append(Item("epoch", data | {"recorded_at": m.recorded_at}, cursor))
    lines = session.execute(
        select(LogLine)
        .where(LogLine.job_id == job_id, LogLine.id > cursor.log)
        .order_by(LogLine.id)
        .limit(BATCH)
    ).scalars()
    for line in lines:
        cursor = replace(cursor, log=line.id)
        data = {"attempt": line.attempt, "at": line.at, "line": line.line}
        items.append(Item("log", data, cursor))
    checkpoints = session.execute(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.id > cursor.checkpoint)
        .order_by(Checkpoint.id)
        .limit(BATCH)
    ).scalars()
    for c in checkpoints:
        cursor = replace(cursor, checkpoint=c.id)
        data = {"id": c.id, "epoch": c.epoch, "attempt": c.attempt, "size": c.size}
        items.append(Item("checkpoint", data | {"sha256": c.sha256, "metrics": c.metrics}, cursor))
    kinds = [item.kind for item in items]
    return items, any(kinds.count(kind) == BATCH for kind in set(kinds))
