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
from collections.abc import Callable
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


@dataclass(frozen=True)
class _Source:
    """One kind of row a stream sends: its kind, the ordered column its cursor position
    holds (``Cursor`` field ``field``), and the row as the event's data."""

    kind: str
    model: Any
    position: Any
    field: str
    data: Callable[[Any], dict[str, Any]]


_SOURCES = (
    _Source(
        "event",
        JobEvent,
        JobEvent.id,
        "event",
        lambda e: {
            "at": e.at,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "attempt": e.attempt,
            "reason": e.reason,
        },
    ),
    _Source(
        "epoch",
        EpochMetric,
        EpochMetric.epoch,
        "epoch",
        lambda m: {
            "epoch": m.epoch,
            "attempt": m.attempt,
            "metrics": m.metrics,
            "recorded_at": m.recorded_at,
        },
    ),
    _Source(
        "log",
        LogLine,
        LogLine.id,
        "log",
        lambda line: {"attempt": line.attempt, "at": line.at, "line": line.line},
    ),
    _Source(
        "checkpoint",
        Checkpoint,
        Checkpoint.id,
        "checkpoint",
        lambda c: {
            "id": c.id,
            "epoch": c.epoch,
            "attempt": c.attempt,
            "size": c.size,
            "sha256": c.sha256,
            "metrics": c.metrics,
        },
    ),
)


def changes(session: Session, job_id: int, cursor: Cursor) -> tuple[list[Item], bool]:
    """The job's rows after ``cursor``, in the order they are sent (events, epochs, log
    lines, checkpoints), each with the cursor after it; and whether more remain beyond
    this read's batch."""
    items: list[Item] = []
    more = False
    for source in _SOURCES:
        rows = (
            session.execute(
                select(source.model)
                .where(
                    source.model.job_id == job_id,
                    source.position > getattr(cursor, source.field),
                )
                .order_by(source.position)
                .limit(BATCH)
            )
            .scalars()
            .all()
        )
        more = more or len(rows) == BATCH
        for row in rows:
            cursor = replace(cursor, **{source.field: getattr(row, source.position.key)})
            items.append(Item(source.kind, source.data(row), cursor))
    return items, more
