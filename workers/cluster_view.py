"""What this worker's Ray cluster has, published to the queue for the API to read.

``nodes()`` is the totals of every alive node; ``publish_until`` writes them with what the
worker could give a new job (``Capacity.free``) every ``every_s`` seconds (at least 1 s
apart) until ``stopping`` is set, then withdraws the row. A database outage skips a
publication: the next one tries again.
"""

from __future__ import annotations

import logging
import threading

import ray
from sqlalchemy.exc import DBAPIError

from recu_db import cluster
from recu_db.queue import Db
from recu_db.retry import is_transient
from workers.capacity import Capacity

log = logging.getLogger("recu.worker")


def nodes() -> list[dict[str, float]]:
    """{"CPU": c, "GPU": g} totals of each alive node of the Ray cluster."""
    return [
        {"CPU": float(n["Resources"].get("CPU", 0)), "GPU": float(n["Resources"].get("GPU", 0))}
        for n in ray.nodes()
        if n.get("Alive")
    ]


def largest_node(alive: list[dict[str, float]]) -> tuple[float, float]:
    """(cpus, gpus): the most CPUs and the most GPUs any one of the ``alive`` nodes has
    (taken per resource, so a worker needing both may still find no single node: Ray
    then waits)."""
    alive = alive or [{"CPU": 0.0, "GPU": 0.0}]
    return max(n["CPU"] for n in alive), max(n["GPU"] for n in alive)


def total(alive: list[dict[str, float]]) -> tuple[float, float]:
    """(cpus, gpus) of the ``alive`` nodes together."""
    return sum(n["CPU"] for n in alive), sum(n["GPU"] for n in alive)


def publish_until(
    db: Db, name: str, capacity: Capacity, every_s: float, stopping: threading.Event
) -> None:
    """Publish the cluster every ``every_s`` (>= 1) seconds until ``stopping``; withdraw."""
    while True:
        try:
            with capacity.lock:  # the ledger is read as the claims leave it
                cpus, gpus = capacity.free()
            cluster.publish(db, name, nodes(), {"CPU": cpus, "GPU": gpus})
        except DBAPIError as err:  # out of reach: the next publication tries again
            if not is_transient(err):
                raise
            log.warning("cluster not published: database unavailable")
        if stopping.wait(max(1.0, every_s)):
            break
    try:
        cluster.withdraw(db, name)
    except DBAPIError as err:  # the row goes stale instead
        if not is_transient(err):
            raise
