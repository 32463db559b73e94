"""Live streams under load: ``--streams`` clients each follow a job of their own on
``GET /jobs/{id}/stream`` against a real uvicorn server (auth on), while a writer appends a
log line to a random job every ``--every-ms`` through the queue's own fenced write (as a
worker does). Each line carries the time just before its write began; a client's latency
for it is its arrival time minus that (an upper bound on commit-to-client). Prints the
latency quantiles, what was lost or duplicated, and the API's CPU; never a pass/fail test.

    .venv/bin/python -m bench.streams [--streams 100] [--seconds 20] [--every-ms 50]
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
from recu_db import queue, results
from recu_db.engine import make_engine, make_sessionmaker

JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 3}


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


def _write(db, leases, seconds: float, every_s: float, sent: list[tuple[int, str]]) -> None:
    rng = random.Random(0)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        lease = rng.choice(leases)
        line = f"{n} {time.time():.6f}"
        results.append_logs(db, lease, [line])
        sent.append((lease.job_id, line))
        n += 1
        time.sleep(every_s)


async def _run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'api.db'}"
        with local_service(Path(tmp) / "service", database_url=url, workers=0) as running:
            engine = make_engine(url)
            db = make_sessionmaker(engine)
            with running.client() as http:
                ids = [http.post("/jobs", json=JOB).json()["id"] for _ in range(args.streams)]
            leases = [queue.claim(db, "bench", lease_s=3600) for _ in ids]
            got: list[tuple[int, str, float]] = []
            followers = [
                asyncio.create_task(_follow(running.api, running.token, job_id, got))
                for job_id in ids
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
    print(f"# {args.streams} streams, a log line every {args.every_ms} ms for {args.seconds} s")
    print(
        "| streams | lines sent | received | lost | duplicated | p50 ms | p99 ms | max ms "
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
    args = parser.parse_args()
    os.environ.setdefault("RECU_MAX_QUEUED_PER_USER", str(args.streams + 10))
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
