"""Why a Ray Train run failed: the job's own code, a stop on request, or the cluster.

Ray Train counts every worker error against ``max_failures``, so a job whose own code
raises would be run again for nothing. The driver runs Ray Train with no retries of its
own and decides here instead: the run is retried (from the newest stored checkpoint) only
when a worker was lost (its process or node died, a collective broke with it); an error
raised by the training code fails the job at once, with its traceback; a stop on request
(cancel, lease lost) ends it without an error. A database outage longer than the writes'
retries counts as a lost worker: a fresh worker group waits out the rest of it under
the same lease. A run that still ends on the outage (``is_outage``) is no failure of the
job: the worker loop gives the job back to the queue (``queue.release``).
"""

from __future__ import annotations

from enum import StrEnum

from ray.exceptions import RayError
from ray.train.v2._internal.exceptions import RayTrainError
from ray.train.v2.api.exceptions import WorkerGroupError
from sqlalchemy.exc import DBAPIError

from recu_db.retry import is_transient
from workers.stops import JobStoppedError

# torch.distributed raises these on the surviving ranks when a peer process dies (gloo's
# transport also raises a plain RuntimeError naming its source file).
_COLLATERAL = ("DistBackendError", "DistNetworkError", "DistStoreError")
_GLOO_TRANSPORT = "gloo/transport"


def is_collateral(error: BaseException | None) -> bool:
    """Whether ``error`` is what a surviving rank raises because a peer died."""
    if error is None:
        return False
    return any(t.__name__ in _COLLATERAL for t in type(error).__mro__) or (
        isinstance(error, RuntimeError) and _GLOO_TRANSPORT in str(error)
    )


class Cause(StrEnum):
    STOPPED = "stopped"  # cancelled, or the lease is no longer ours
    USER = "user"  # the training code raised: running it again fails again
    INFRASTRUCTURE = "infrastructure"  # a worker process or node was lost: retry


def raised_by_code(error: BaseException) -> BaseException | None:
    """The exception the training function raised (as Ray Train hands it back, or wrapped
    in its UserExceptionWithTraceback); None for a lost worker: one of Ray's own errors
    (actor died, failed health check, node lost)."""
    base = getattr(error, "_base_exc", None)
    if isinstance(base, BaseException):
        return base
    return None if isinstance(error, RayError | RayTrainError) else error


def _database_unreachable(error: BaseException) -> bool:
    """A database outage that outlasted the writes' retries: not the code's fault."""
    return isinstance(error, DBAPIError) and is_transient(error)


def cause_of(error: BaseException) -> Cause:
    """Classify a failed ``trainer.fit()``."""
    if isinstance(error, JobStoppedError):
        return Cause.STOPPED
    if not isinstance(error, WorkerGroupError):
        return Cause.INFRASTRUCTURE  # the controller failed (Ray itself): worth a retry
    raised = [raised_by_code(e) for e in error.worker_failures.values()]
    if any(isinstance(e, JobStoppedError) for e in raised):
        return Cause.STOPPED
    lost = [e is None or _database_unreachable(e) for e in raised]
    collateral = [is_collateral(e) for e in raised]
    if any(lost) or all(collateral):
        return Cause.INFRASTRUCTURE
    return Cause.USER


class DatabaseOutageError(RuntimeError):
    """A run (a sweep, a trial) ended on a database outage it could not wait out."""


def is_outage(error: BaseException) -> bool:
    """Whether a run ended because the database was out of reach (and for nothing else):
    a transient DBAPIError or a DatabaseOutageError, raised by the driver or by the
    training function on every rank that raised (the other ranks lost or broken with
    it)."""
    if _database_unreachable(error) or isinstance(error, DatabaseOutageError):
        return True
    if not isinstance(error, WorkerGroupError):
        return False
    raised = [raised_by_code(e) for e in error.worker_failures.values()]
    collateral = [is_collateral(e) for e in raised]
    unreachable = [e is not None and _database_unreachable(e) for e in raised]
    return any(unreachable) and all(
        u or c or e is None for u, c, e in zip(unreachable, collateral, raised, strict=True)
    )


def describe(error: BaseException) -> tuple[str, str]:
    """(one-line error, full text) of a failure, naming the training code's exception."""
    if isinstance(error, WorkerGroupError):
        for rank, failure in sorted(error.worker_failures.items()):
            raised = raised_by_code(failure)
            if raised is not None and not isinstance(raised, JobStoppedError):
                # Ray Train's message holds each failed rank's traceback
                text = getattr(error, "_error_message", "") or str(error)
                return f"{type(raised).__name__}: {raised} (rank {rank})", text
    return f"{type(error).__name__}: {error}", str(error)


def failure_summary(error: BaseException) -> str:
    """Each rank's failure, by type: ``rank 0: ValueError, rank 1: ActorDiedError``."""
    if not isinstance(error, WorkerGroupError):
        return type(error).__name__
    parts = []
    for rank, failure in sorted(error.worker_failures.items()):
        raised = raised_by_code(failure)
        parts.append(f"rank {rank}: {type(raised or failure).__name__}")
    return ", ".join(parts)
