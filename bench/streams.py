"""Live streams under load: ``--streams`` clients each follow a job of their own on
``GET /jobs/{id}/stream`` against a real uvicorn server (auth on), while a writer appends a
log line to a random job every ``--every-ms`` through the queue's own fenced write (as a
worker does). Each line carries the time just before its write began; a client's latency
for it is its arrival time minus that (an upper bound on commit-to-client). Prints the
latency quantiles, what was lost or duplicated, and the API's CPU; never a pass/fail test.

With ``--sweeps`` the clients follow sweeps of ``TRIALS`` running trials each on
``GET /sweeps/{id}/stream``, and the writer records an epoch of a random trial (its time
in the epoch's metrics); a client counts an epoch when a ``sweep`` event first shows it.

    .venv/bin/python -m bench.streams [--streams 100] [--seconds 20] [--every-ms 50] [--sweeps]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from httpx_sse import aconnect_sse

from bench.common import environment
from bench.stats import quantile_ms
from recu_cli.local_service import local_service
from recu_db import queue, results, trials
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.states import JobKind

JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}
TRIALS = 4
SWEEP = {
    "base": {**JOB, "epochs": 10_000},
    "space": {"seed": {"kind": "grid", "values": list(range(TRIALS))}},
    "search": "grid",
    "scheduler": {"kind": "none"},
}


async def _follow(api: str, token: str, job_id: int, got: list[tuple[int, str, float]]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(30.0, read=None)
    async with (
        httpx.AsyncClient(base_url=api, headers=headers, timeout=timeout) as client,
        aconnect_sse(client, "GET", f"/jobs/{job_id}/stream") as source,
    ):
        async for sse in source.aiter_sse():
            if sse.event == "log":  # each kept as it arrives (the task ends cancelled)
                got.append((job_id, sse.json()["line"], time.time()))  # noqa: PERF401


async def _follow_sweep(
    api: str, token: str, sweep_id: int, got: list[tuple[int, str, float]]
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(30.0, read=None)
    seen: set[tuple[int, int]] = set()
    async with (
        httpx.AsyncClient(base_url=api, headers=headers, timeout=timeout) as client,
        aconnect_sse(client, "GET", f"/sweeps/{sweep_id}/stream") as source,
    ):
        async for sse in source.aiter_sse():
            if sse.event != "sweep":
                continue
            now = time.time()
            for trial in sse.json()["trials"]:
                for row in trial["metrics"]:
                    key = (trial["id"], row["epoch"])
                    if key not in seen and "sent_at" in row:
                        seen.add(key)
                        got.append((trial["id"], f"{row['epoch']} {row['sent_at']:.6f}", now))


def _write(db, leases, seconds: float, every_s: float, sent: list[tuple[int, str]]) -> None:
    """A log line (jobs) or an epoch (trials) to a random lease every ``every_s``."""
    rng = random.Random(0)
    end = time.monotonic() + seconds
    epochs = dict.fromkeys((lease.job_id for lease in leases), 0)
    n = 0
    while time.monotonic() < end:
        lease = rng.choice(leases)
        at = time.time()
        if lease.kind == JobKind.TRIAL:
            epochs[lease.job_id] += 1
            line = f"{epochs[lease.job_id]} {at:.6f}"
            queue.record_epoch(db, lease, epochs[lease.job_id], {"test_acc": 0.5, "sent_at": at})
        else:
            line = f"{n} {at:.6f}"
            results.append_logs(db, lease, [line])
        sent.append((lease.job_id, line))
        n += 1
        time.sleep(every_s)


def _sweep_leases(db, http: httpx.Client, count: int) -> tuple[list[int], list]:
    """``count`` running sweeps and the leases of their running trials."""
    ids = [http.post("/sweeps", json=SWEEP).json()["id"] for _ in range(count)]
    leases = []
    for _ in ids:
        sweep = queue.claim(db, "bench", lease_s=3600)
        leases += [trials.start_trial(db, sweep, str(key)) for key in range(TRIALS)]
    return ids, leases


async def _run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'api.db'}"
        with local_service(Path(tmp) / "service", database_url=url, workers=0) as running:
            engine = make_engine(url)
            db = make_sessionmaker(engine)
            with running.client() as http:
                if args.sweeps:
                    ids, leases = _sweep_leases(db, http, args.streams)
                else:
                    ids = [http.post("/jobs", json=JOB).json()["id"] for _ in range(args.streams)]
                    leases = [queue.claim(db, "bench", lease_s=3600) for _ in ids]
            got: list[tuple[int, str, float]] = []
            follow = _follow_sweep if args.sweeps else _follow
            followers = [
                asyncio.create_task(follow(running.api, running.token, item, got)) for item in ids
            ]
            await asyncio.sleep(3.0)  # every stream open and idle
            api = psutil.Process(running.api_pid)
            cpu0 = sum(api.cpu_times()[:2])
            sent: list[tuple[int, str]] = []
            writer = threading.Thread(
                target=_write, args=(db, leases, args.seconds, args.every_ms / 1000, sent)
            )
            writer.start()
            while writer.is_alive():
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # the last lines arrive
            cpu = sum(api.cpu_times()[:2]) - cpu0
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            engine.dispose()
    latencies = [at - float(line.split()[1]) for _job, line, at in got]
    received = {(job, line) for job, line, _at in got}
    print(f"# {environment()}")
    what = f"sweeps of {TRIALS} trials, an epoch" if args.sweeps else "jobs, a log line"
    print(f"# {args.streams} streams of {what} every {args.every_ms} ms for {args.seconds} s")
    print(
        "| streams | rows sent | received | lost | duplicated | p50 ms | p99 ms | max ms "
        "| API CPU (cores) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.streams} | {len(sent)} | {len(got)} | {len(set(sent) - received)} | "
        f"{len(got) - len(received)} | {quantile_ms(latencies, 0.5):.0f} | "
        f"{quantile_ms(latencies, 0.99):.0f} | {max(latencies) * 1000:.0f} | "
        f"{cpu / (args.seconds + 2.0):.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--every-ms", type=float, default=50.0)
    parser.add_argument("--sweeps", action="store_true", help="follow sweeps, not jobs")
    args = parser.parse_args()
    os.environ.setdefault("RECU_MAX_QUEUED_PER_USER", str(args.streams * (TRIALS + 1) + 10))
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
