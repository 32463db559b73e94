"""Why a run ends early without being a failure, and how rank 0 notices it.

A cancelled job (state ``cancelling``) or one whose lease is no longer ours (re-claimed,
finished) must stop training within about a second plus the current step. Rank 0 runs a
``StopWatch`` thread that reads the job's state every ``every_s`` seconds (a read, not a
lease renewal: the worker loop's heartbeat is the one renewer); ``train`` asks it before
every step, and raises ``TrainingStoppedError`` when it says so.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import DBAPIError

from recu_db import queue
from recu_db.queue import Lease
from recu_db.retry import is_transient
from recu_db.states import JobState

log = logging.getLogger("recu.worker")


class JobStoppedError(RuntimeError):
    """The job was cancelled or is no longer ours to run: stop writing, stop training."""


class StopWatch:
    """Polls the job's state on a daemon thread; ``requested()`` is a plain flag read."""

    def __init__(self, db: queue.Db, lease: Lease, *, every_s: float = 1.0) -> None:
        self.db, self.lease, self.every_s = db, lease, every_s
        self.reason: str | None = None
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="recu-stop-watch", daemon=True)

    def __enter__(self) -> StopWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ended.set()
        self._thread.join()

    def requested(self) -> bool:
        return self._stop.is_set()

    def _poll(self) -> None:
        while not self._ended.wait(self.every_s):
            try:
                state = queue.state_if_ours(self.db, self.lease)
            except DBAPIError as err:  # out of reach: the fenced writes decide, look again
                if not is_transient(err):
                    raise
                continue
            if state != JobState.RUNNING:
                self.reason = "cancelled" if state == JobState.CANCELLING else "lease lost"
                log.info("job %d: stop requested (%s)", self.lease.job_id, self.reason)
                self._stop.set()
                return
