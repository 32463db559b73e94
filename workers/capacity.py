"""What the Ray cluster can still take, as seen by one worker process.

free = min(Ray's available resources + what this process's idle warm ranks hold,
cluster total - what this process's jobs hold). Ray's figure covers other worker
processes on the same cluster; the local ledger covers this process's jobs in the seconds
before their placement groups show up in Ray's; an idle warm rank (``workers.warm_rank``)
is reserved in Ray but this process's to reuse or give up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from workers.warm_rank import WarmRanks


class Capacity:
    def __init__(self, warm_limit: int = 1) -> None:
        self.lock = threading.Lock()  # held around "look, claim, hold" so slots never overbook
        self._held: dict[int, tuple[float, float]] = {}
        self.warm = WarmRanks(warm_limit)  # taken and kept with ``lock`` held

    def free(self) -> tuple[float, float]:
        """(cpus, gpus) a newly claimed job may use now."""
        total, available = ray.cluster_resources(), ray.available_resources()
        held_cpus = sum(c for c, _ in self._held.values())
        held_gpus = sum(g for _, g in self._held.values())
        idle_cpus, idle_gpus = self.warm.idle_resources()
        return (
            max(
                0.0,
                min(available.get("CPU", 0.0) + idle_cpus, total.get("CPU", 0.0) - held_cpus),
            ),
            max(
                0.0,
                min(available.get("GPU", 0.0) + idle_gpus, total.get("GPU", 0.0) - held_gpus),
            ),
        )

    def hold(self, job_id: int, demand: tuple[float, float]) -> None:
        """Count ``demand`` as taken; call with ``lock`` held, in the same critical
        section as the claim, so no other slot sees the claimed resources as free."""
        self._held[job_id] = demand

    @contextmanager
    def releasing(self, job_id: int) -> Iterator[None]:
        """Give the job's resources back when the block ends."""
        try:
            yield
        finally:
            with self.lock:
                self._held.pop(job_id, None)

    def running(self) -> int:
        with self.lock:
            return len(self._held)
