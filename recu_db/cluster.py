"""What the queue workers' Ray clusters have, as the workers publish it.

Each worker writes one ``workers`` row (its name) every poll: the totals of every alive
node of its Ray cluster and what it could give a new job now. The API reads the rows seen
recently to say why a queued job has not started (``service/pending.py``); a worker that
stops cleanly withdraws its row, one that dies goes stale and is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from recu_db.models import Worker
from recu_db.queue import Db, utcnow

Resources = dict[str, float]  # {"CPU": c, "GPU": g}


def publish(
    db: Db,
    name: str,
    nodes: Sequence[Resources],
    free: Resources,
    now: datetime | None = None,
) -> None:
    """Record what worker ``name``'s cluster has now (insert or overwrite its row)."""
    now = now or utcnow()
    with db.begin() as session:
        row = session.get(Worker, name, with_for_update=True)
        if row is None:
            session.add(Worker(name=name, seen_at=now, nodes=list(nodes), free=dict(free)))
        else:
            row.seen_at, row.nodes, row.free = now, list(nodes), dict(free)


def withdraw(db: Db, name: str) -> None:
    """Remove worker ``name``'s row (it stopped: it will claim nothing more)."""
    with db.begin() as session:
        session.execute(delete(Worker).where(Worker.name == name))


def live_workers(
    session: Session, now: datetime | None = None, max_age_s: float = 60
) -> list[Worker]:
    """The workers seen in the last ``max_age_s`` seconds, by name."""
    since = (now or utcnow()) - timedelta(seconds=max_age_s)
    return list(
        session.scalars(select(Worker).where(Worker.seen_at >= since).order_by(Worker.name))
    )
