"""One-rank jobs on a warm, long-lived Ray actor instead of a fresh TorchTrainer per job.

A TorchTrainer starts a controller actor, a worker-group actor (a new process that imports
torch) and a process group for every job: about 6 s before the first epoch of a one-rank
job, whatever its length. A ``WarmRank`` is one Ray actor holding one rank's resources
(its CPUs, its GPU) that runs ``run_training`` for one job after another, so torch, the
datasets decoded in memory and CUDA stay loaded between jobs. Jobs with more than one
rank (DDP) keep Ray Train; a sweep's multi-worker trials run on a warm DDP group
(``workers.peer_group``).

The semantics are the TorchTrainer path's (``workers.trainer``): the actor reports how the
run ended as a value (``Ended``) rather than by raising across Ray, and the driver maps it:
a stop on request ends the job, an error of the training code fails it at once, a lost
actor (its process or node died) or a database outage that outlasted the writes' retries
starts a fresh actor, resuming from the newest stored checkpoint, up to ``max_failures``
times. Idle actors stay reserved in Ray; ``Capacity`` counts them as free for this worker's
next claim, and ``WarmRanks.take`` gives up those of another shape before a job needs the
room.
"""

from __future__ import annotations

import gc
import logging
import threading
import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayActorError
from sqlalchemy.exc import DBAPIError

from recu_db.queue import Lease
from recu_db.retry import is_transient
from workers.failures import DatabaseOutageError
from workers.stops import JobStoppedError
from workers.train_loop import RankJob, run_training
from workers.trainer import TrainingCodeError

log = logging.getLogger("recu.worker")

#: A rank's Ray resources, as a hashable key: (("CPU", 2.0), ("GPU", 1.0)).
Shape = tuple[tuple[str, float], ...]


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    STOPPED = "stopped"  # cancelled, or the lease is no longer ours
    CODE_ERROR = "code_error"  # the training code raised: running it again fails again
    OUTAGE = "outage"  # the database stayed out of reach longer than the writes' retries


@dataclass(frozen=True)
class Ended:
    """How one run on the actor ended: the outcome, a one-line message and the text."""

    outcome: Outcome
    message: str = ""
    details: str = ""


def shape_of(lease: Lease) -> Shape:
    return tuple(sorted(lease.job.resources.per_worker.items()))


def run_rank(job: RankJob, rank: int = 0) -> Ended:
    """Run one rank of the job in this process; how it ended, as a value (never raises)."""
    try:
        run_training(
            job.lease,
            database_url=job.database_url,
            lease_s=job.lease_s,
            rank=rank,
            report=lambda _metrics: None,  # the database is the record; nobody else listens
        )
        return Ended(Outcome.SUCCEEDED)
    except JobStoppedError as err:
        return Ended(Outcome.STOPPED, str(err))
    except DBAPIError as err:
        text = "".join(traceback.format_exception(err))
        if is_transient(err):
            return Ended(Outcome.OUTAGE, f"{type(err).__name__}: {err.orig}", text)
        return Ended(Outcome.CODE_ERROR, f"{type(err).__name__}: {err} (rank {rank})", text)
    except Exception as err:
        text = "".join(traceback.format_exception(err))
        return Ended(Outcome.CODE_ERROR, f"{type(err).__name__}: {err} (rank {rank})", text)
    finally:
        gc.collect()
        _release_device_memory()


def _release_device_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@ray.remote(max_restarts=0)  # a lost actor is replaced by run_warm, not by Ray
class WarmRank:
    """The actor: runs one job's rank 0 at a time in this long-lived process."""

    def run(self, job: RankJob) -> Ended:
        return run_rank(job)


def _start(shape: Shape) -> ActorHandle:
    resources = dict(shape)
    cpus = resources.pop("CPU", 1.0)
    gpus = resources.pop("GPU", 0.0)
    threads = str(max(1, int(cpus)))
    return WarmRank.options(  # type: ignore[attr-defined]  # ray.remote makes it an ActorClass
        num_cpus=cpus,
        num_gpus=gpus,
        resources=resources or None,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": threads}},  # torch's intra-op threads
    ).remote()


def _demand(shape: Shape) -> tuple[float, float]:
    resources = dict(shape)
    return resources.get("CPU", 0.0), resources.get("GPU", 0.0)


class WarmRanks:
    """This worker process's idle warm actors, oldest first, at most ``limit`` of them
    (the worker's concurrency). Every method is called with the worker's
    ``Capacity.lock`` held, so a claim never counts an actor another slot took."""

    def __init__(self, limit: int = 1) -> None:
        self.limit = limit
        self._idle: list[tuple[Shape, ActorHandle]] = []

    def idle_resources(self) -> tuple[float, float]:
        """(cpus, gpus) the idle actors hold: free to this worker's next claim."""
        demands = [_demand(shape) for shape, _ in self._idle]
        return sum(c for c, _ in demands), sum(g for _, g in demands)

    def make_room(self, need: tuple[float, float]) -> None:
        """Kill idle actors, oldest first, until what Ray has available and what they
        held together cover ``need`` (cpus, gpus): a claimed job that counted on their
        room gets it (Ray frees it within moments; the job's actors wait for it)."""
        if not self._idle:
            return
        available = ray.available_resources()
        cpus, gpus = available.get("CPU", 0.0), available.get("GPU", 0.0)
        while self._idle and (cpus < need[0] or gpus < need[1]):
            shape, actor = self._idle.pop(0)
            ray.kill(actor)
            freed = _demand(shape)
            cpus, gpus = cpus + freed[0], gpus + freed[1]

    def take(self, shape: Shape) -> ActorHandle:
        """The newest idle actor of ``shape`` (warm), or a new one, with room made."""
        for i in range(len(self._idle) - 1, -1, -1):
            if self._idle[i][0] == shape:
                return self._idle.pop(i)[1]
        self.make_room(_demand(shape))
        return _start(shape)

    def keep(self, shape: Shape, actor: ActorHandle) -> None:
        """Keep the actor for the next job of its shape; beyond ``limit``, the oldest
        idle one goes."""
        self._idle.append((shape, actor))
        while len(self._idle) > self.limit:
            ray.kill(self._idle.pop(0)[1])

    def close(self) -> None:
        while self._idle:
            ray.kill(self._idle.pop()[1])


def run_warm(
    lease: Lease,
    warm: WarmRanks,
    lock: threading.Lock,
    *,
    database_url: str,
    lease_s: float,
    max_failures: int,
) -> None:
    """Train the one-rank job on a warm actor; returns when it succeeded. Raises what
    ``workers.trainer.run_job`` raises: JobStoppedError when it was stopped on request,
    TrainingCodeError when its code raised, and, after ``max_failures`` restarts, the lost
    actor's RayActorError or a DatabaseOutageError (the worker loop gives the job back).
    ``lock`` is the worker's ``Capacity.lock``, held while an actor is taken or kept."""
    job = RankJob(lease=lease, database_url=database_url, lease_s=lease_s)
    shape = shape_of(lease)
    for restart in range(max_failures + 1):
        with lock:
            actor = warm.take(shape)
        kept = False
        try:
            ended = cast(Ended, ray.get(actor.run.remote(job)))
            if ended.outcome != Outcome.CODE_ERROR:  # a process the code broke is not reused
                with lock:
                    warm.keep(shape, actor)
                kept = True
        except RayActorError as err:  # its process or node died
            if restart == max_failures:
                raise
            log.warning(
                "job %d: its warm rank was lost (%s); restart %d of %d from the newest checkpoint",
                lease.job_id,
                type(err).__name__,
                restart + 1,
                max_failures,
            )
            continue
        finally:
            if not kept:
                ray.kill(actor)  # a no-op for a dead one
        if ended.outcome == Outcome.SUCCEEDED:
            return
        if ended.outcome == Outcome.STOPPED:
            raise JobStoppedError(ended.message)
        if ended.outcome == Outcome.CODE_ERROR:
            raise TrainingCodeError(ended.message, ended.details)
        if restart == max_failures:
            raise DatabaseOutageError(ended.message)
        log.warning(
            "job %d: the database was out of reach (%s); restart %d of %d from the newest "
            "checkpoint",
            lease.job_id,
            ended.message,
            restart + 1,
            max_failures,
        )
