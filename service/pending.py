"""Why a queued or waiting job has not started: its ``pending_reason``, computed on read.

A waiting job (it names other jobs: ``recu_db.dependencies``) says ``waiting for job 3
(running), job 5 (queued) to succeed``. A queued one's reason comes from what the live
workers published (``recu_db.cluster``: rows seen in the last
``LIVE_S`` seconds), in this order:

- ``no worker is connected to the queue ...``: no worker has published recently;
- ``unschedulable: needs N workers x {CPU: c, GPU: g}; the largest node has ...; the
  cluster has ...``: no live worker's cluster can ever place the job, because one Ray
  Train worker fits on no node, or the nodes cannot hold N of them together;
- ``waiting for resources: needs {...}, free now {...}``: it fits the cluster, not what
  is free now (other jobs hold it);
- ``reserved by worker W: ...``: it waited ``RECU_RESERVE_AFTER_S`` without fitting, and
  worker W drains its cluster for it;
- ``waiting for a worker to claim it``: it fits what is free (a claim is due, or jobs of
  users with less recent usage, or of higher priority, go first).

A sweep's demand is its trials run at once (the row's cpus/gpus); a queued trial waits
for its sweep. With ``reject_unschedulable`` set, a submit the cluster can never place is
refused with 422 (once at least one worker has published).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from recu_core.jobspec import Resources
from recu_db import cluster, dependencies
from recu_db.models import Worker
from recu_db.queue import Db, utcnow
from recu_db.states import JobKind, JobState

#: A worker that has not published for this long (seconds) counts as gone. Workers
#: publish every RECU_WORKER_POLL_S (at least 1 s apart); 60 s rides out a busy database.
LIVE_S = 60.0
UNSCHEDULABLE = "unschedulable"
NO_WORKER = f"no worker is connected to the queue (none has reported in {LIVE_S:.0f} s)"
CLAIMABLE = "waiting for a worker to claim it"
RESERVED = (
    "reserved by worker {worker}: its cluster starts nothing else until this job fits "
    "(it waited RECU_RESERVE_AFTER_S)"
)
_EPS = 1e-9


@dataclass(frozen=True)
class Demand:
    """``workers`` Ray Train workers of ``per_worker`` resources each."""

    per_worker: dict[str, float]
    workers: int

    @property
    def total(self) -> dict[str, float]:
        return {r: self.workers * self.per_worker.get(r, 0.0) for r in ("CPU", "GPU")}

    @classmethod
    def of(cls, resources: Resources, cpus: float) -> Demand:
        """The demand of ``cpus`` CPUs in workers shaped like ``resources``' (a job: its
        num_workers; a sweep: num_workers x its trials at once)."""
        per = resources.per_worker
        return cls(per, max(1, round(cpus / per["CPU"])))


def fmt(resources: dict[str, float]) -> str:
    """{CPU: 2, GPU: 0}"""
    return "{" + ", ".join(f"{r}: {resources.get(r, 0.0):g}" for r in ("CPU", "GPU")) + "}"


def _room(nodes: Sequence[dict[str, float]], per_worker: dict[str, float]) -> int:
    """How many workers of ``per_worker`` the nodes hold together (identical bundles: each
    node holds as many as its scarcest resource allows)."""
    return sum(
        min(math.floor(node.get(r, 0.0) / need + _EPS) for r, need in per_worker.items() if need)
        for node in nodes
    )


def _size(resources: dict[str, float]) -> tuple[float, float]:
    return resources.get("GPU", 0.0), resources.get("CPU", 0.0)


def _placing(demand: Demand, workers: Sequence[Worker]) -> list[Worker]:
    """The workers whose cluster can place every Ray Train worker of ``demand`` at once."""
    return [w for w in workers if _room(w.nodes, demand.per_worker) >= demand.workers]


def unschedulable(demand: Demand, workers: Sequence[Worker]) -> str | None:
    """The reason no live worker's cluster can ever place ``demand``; None when one can
    (or none has published)."""
    if not workers or _placing(demand, workers):
        return None
    return _never(demand, workers)


def _never(demand: Demand, workers: Sequence[Worker]) -> str:
    """``unschedulable: needs ...; the largest node has ...; the cluster has ...``"""
    nodes = [node for w in workers for node in w.nodes]
    largest = max(nodes, key=_size, default={})
    biggest = max(workers, key=lambda w: _size(_sum(w.nodes)))
    room = _room(biggest.nodes, demand.per_worker)
    n, count = demand.workers, len(biggest.nodes)
    return (
        f"{UNSCHEDULABLE}: needs {n} worker{'s' if n != 1 else ''} x {fmt(demand.per_worker)}; "
        f"the largest node has {fmt(largest)}; the cluster has {fmt(_sum(biggest.nodes))} in "
        f"{count} node{'s' if count != 1 else ''}"
        + (f" (room for {room} such worker{'s' if room != 1 else ''})" if room else "")
    )


def _sum(nodes: Sequence[dict[str, float]]) -> dict[str, float]:
    return {r: sum(node.get(r, 0.0) for node in nodes) for r in ("CPU", "GPU")}


def _fits(free: dict[str, float], need: dict[str, float]) -> bool:
    return all(free.get(r, 0.0) + _EPS >= amount for r, amount in need.items())


def reason(demand: Demand, workers: Sequence[Worker]) -> str:
    """Why a queued job of ``demand`` has not started, given the live workers."""
    if not workers:
        return NO_WORKER
    placing = _placing(demand, workers)
    if not placing:
        return _never(demand, workers)
    need = demand.total
    if any(_fits(w.free, need) for w in placing):
        return CLAIMABLE
    free = max((w.free for w in placing), key=_size)
    return f"waiting for resources: needs {fmt(need)}, free now {fmt(free)}"


class QueuedRow(Protocol):
    """What a pending reason reads of a job: a Job or a view row (``recu_db.reads``)."""

    id: int
    kind: str
    state: str
    parent_id: int | None
    cpus: float
    worker_cpus: float
    worker_gpus: float
    reserved_by: str | None
    reserved_until: datetime | None
    spec: dict[str, Any]


def demand_of(job: QueuedRow) -> Demand:
    """A job's or a sweep's demand from its row: ``cpus`` in Ray Train workers of
    (``worker_cpus``, ``worker_gpus``) each, stored at submit from the spec's resources
    (no parse of the stored spec on the read path)."""
    per = {"CPU": job.worker_cpus, "GPU": job.worker_gpus}
    return Demand(per, max(1, round(job.cpus / job.worker_cpus)))


def pending_reasons(
    session: Session, jobs: Iterable[QueuedRow], now: datetime | None = None
) -> dict[int, str]:
    """The pending reason of each queued or waiting job among ``jobs`` (one read of the
    workers; one of the waiting jobs' dependencies)."""
    jobs = list(jobs)
    out = _waiting_reasons(session, [j for j in jobs if j.state == JobState.WAITING])
    queued = [j for j in jobs if j.state == JobState.QUEUED]
    if not queued:
        return out
    now = now or utcnow()
    workers = cluster.live_workers(session, now, LIVE_S)
    for job in queued:
        if job.kind == JobKind.TRIAL:
            out[job.id] = f"waiting for its sweep (#{job.parent_id}) to start it"
        elif job.reserved_by is not None and job.reserved_until and job.reserved_until > now:
            out[job.id] = RESERVED.format(worker=job.reserved_by)
        else:
            out[job.id] = reason(demand_of(job), workers)
    return out


def _waiting_reasons(session: Session, waiting: Sequence[QueuedRow]) -> dict[int, str]:
    """``waiting for job 3 (running), job 5 (queued) to succeed`` per waiting job."""
    if not waiting:
        return {}
    wanted = {j.id: dependencies.dependencies_of(j.kind, j.spec) for j in waiting}
    ids = sorted({i for deps in wanted.values() for i in deps})
    states = dependencies.states_of(session, ids)
    out = {}
    for job_id, deps in wanted.items():
        open_ = [i for i in deps if states.get(i) != JobState.SUCCEEDED]
        out[job_id] = (
            "waiting for "
            + ", ".join(f"job {i} ({states.get(i, 'deleted')})" for i in open_)
            + " to succeed"
            if open_
            else "its dependencies succeeded: the next worker poll queues it"
        )
    return out


class _Settings(Protocol):
    reject_unschedulable: bool


def refuse_unschedulable(
    db: Db,
    settings: _Settings,
    resources: Resources,
    loc: tuple[str, ...],
    cpus: float | None = None,
) -> None:
    """With ``settings.reject_unschedulable``, a 422 at ``loc`` when no live worker's
    cluster can ever place workers shaped like ``resources`` (``cpus`` CPUs of them: a
    sweep's trials at once; default the job's)."""
    if not settings.reject_unschedulable:
        return
    with db() as session:
        workers = cluster.live_workers(session, max_age_s=LIVE_S)
    demand = Demand.of(resources, resources.demand[0] if cpus is None else cpus)
    blocked = unschedulable(demand, workers)
    if blocked:
        msg = f"{blocked} (this service refuses such jobs: RECU_REJECT_UNSCHEDULABLE)"
        raise RequestValidationError(
            [{"type": "value_error", "loc": loc, "msg": msg, "input": resources.per_worker}]
        )
