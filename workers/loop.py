"""The queue consumer: claim a job, keep its lease alive, run it on Ray, record the end.

A heartbeat thread renews the lease every lease/3 seconds while the job runs; the
reaper runs before each claim, so a job whose worker died is requeued (or failed after
its attempts) by whichever worker looks next.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from recu_db import queue, results
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.queue import Lease
from recu_db.states import JobState
from workers.trainer import run_job


def _env(name: str, default: str | None = None) -> Callable[[], Any]:
    return lambda: os.environ.get(name, default)


@dataclass
class WorkerSettings:
    """Read from the environment when constructed: RECU_DATABASE_URL, RAY_ADDRESS,
    RECU_RUNS_DIR (Ray's own storage for the runs)."""

    database_url: str = field(default_factory=_env("RECU_DATABASE_URL", "sqlite:///var/recu.db"))
    ray_address: str | None = field(default_factory=_env("RAY_ADDRESS"))
    runs_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("RECU_RUNS_DIR", "var/ray-runs"))
    )
    lease_s: float = 60.0
    poll_s: float = 1.0
    max_failures: int = 1
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")


def _heartbeat(db: queue.Db, lease: Lease, lease_s: float, stop: threading.Event) -> None:
    while not stop.wait(lease_s / 3):
        if queue.heartbeat(db, lease, lease_s=lease_s) is None:
            return


def run_one(settings: WorkerSettings) -> bool:
    """Claim and run one job; False when the queue was empty."""
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    try:
        queue.reap(db)
        lease = queue.claim(db, settings.name, lease_s=settings.lease_s)
        if lease is None:
            return False
        stop = threading.Event()
        beat = threading.Thread(
            target=_heartbeat, args=(db, lease, settings.lease_s, stop), daemon=True
        )
        beat.start()
        try:
            run_job(
                lease,
                database_url=settings.database_url,
                lease_s=settings.lease_s,
                runs_dir=settings.runs_dir,
                max_failures=settings.max_failures,
            )
            queue.finish(db, lease, JobState.SUCCEEDED)
        except Exception as err:  # the job failed: record why, and go on with the next
            text = "".join(traceback.format_exception(err))
            results.append_logs(db, lease, text.splitlines())
            queue.finish(db, lease, JobState.FAILED, error=f"{type(err).__name__}: {err}")
        finally:
            stop.set()
            beat.join()
        return True
    finally:
        engine.dispose()


def serve(settings: WorkerSettings, *, exit_when_idle: bool = False) -> None:
    """Connect to Ray (RAY_ADDRESS, or a local instance) and consume the queue."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False)
    while True:
        if not run_one(settings) and exit_when_idle:
            return
        time.sleep(0 if exit_when_idle else settings.poll_s)
