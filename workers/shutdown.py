"""A clean stop of the worker on SIGTERM or SIGINT: claim nothing more, hand every running
job back to the queue, let its run stop, exit.

The first signal sets ``stopping`` (each slot ends after its job) and hands the running
jobs back (``queue.hand_back``: requeued, no attempt counted), on a thread of its own: a
signal handler must not wait on the database. A run whose job was handed back stops the
way a cancelled one does (its stop watch sees the lease is no longer ours, within about a
second plus the current step), and its end is fenced off; the next worker resumes it from
its newest checkpoint. A second signal exits at once: the leases then lapse and the reaper
requeues the jobs (each costing an attempt), as after a crash.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from recu_db import queue
from recu_db.fairshare import ClaimPolicy
from recu_db.queue import Lease
from recu_db.retry import retry_transient

log = logging.getLogger("recu.worker")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    """The worker's running leases, and what a stop signal does with them."""

    def __init__(
        self,
        db: queue.Db,
        policy: ClaimPolicy,
        lease_s: float,
        stopping: threading.Event | None = None,
    ) -> None:
        self.db, self.policy, self.lease_s = db, policy, lease_s
        self.stopping = stopping or threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, Lease] = {}
        self._handed_back: set[int] = set()

    def started(self, lease: Lease) -> bool:
        """Note a claimed job as running; False (hand it back now) when already stopping."""
        with self._lock:
            self._running[lease.job_id] = lease
        if self.stopping.is_set():
            self._hand_back(lease)
            return False
        return True

    def ended(self, lease: Lease) -> None:
        with self._lock:
            self._running.pop(lease.job_id, None)

    def handed_back(self, lease: Lease) -> bool:
        """Whether the job was given back to the queue by the stop (its run's end is not
        its own)."""
        with self._lock:
            return lease.job_id in self._handed_back

    def request(self, why: str) -> None:
        """Stop: claim no more, hand every running job back (on a thread of its own)."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        with self._lock:
            leases = list(self._running.values())
        log.info("%s: handing back %d running job(s), then exiting", why, len(leases))
        for lease in leases:
            threading.Thread(
                target=self._hand_back, args=(lease, why), name="recu-hand-back", daemon=True
            ).start()

    def _hand_back(self, lease: Lease, why: str = "worker stopping") -> None:
        with self._lock:
            self._handed_back.add(lease.job_id)
        reason = f"worker {lease.owner} stopping ({why})"
        try:
            state = retry_transient(
                lambda: queue.hand_back(self.db, lease, reason, policy=self.policy),
                seconds=self.lease_s,
            )
        except Exception as err:  # the lease lapses instead; the reaper requeues the job
            log.warning("job %d: not handed back (%s); its lease lapses", lease.job_id, err)
            return
        log.info("job %d: handed back to the queue: %s", lease.job_id, state or "no longer ours")

    def install(self) -> Callable[[], None]:
        """Handle SIGTERM and SIGINT in this process (call from the main thread); returns
        what puts the handlers before back (a host process, pytest, keeps its own)."""
        previous = {number: signal.getsignal(number) for number in SIGNALS}

        def on_signal(number: int, _frame: FrameType | None) -> None:
            name = signal.Signals(number).name
            if self.stopping.is_set():
                log.warning("%s again: exiting now; running jobs' leases will lapse", name)
                os._exit(128 + number)
            self.request(name)

        for number in SIGNALS:
            signal.signal(number, on_signal)

        def restore() -> None:
            for number, handler in previous.items():
                signal.signal(number, handler)

        return restore
