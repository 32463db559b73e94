"""Submit throughput and latency: POST /jobs against a real uvicorn server on loopback,
load from a second process (this one), bounded in requests and time, on SQLite and on
PostgreSQL (a fresh schema of the local server, skipped when none answers).

    .venv/bin/python -m bench.submit_load [--requests 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from bench.common import environment
from recu_cli.local_service import local_service

POSTGRES_URL = os.environ.get(
    "RECU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 30}


async def _load(api: str, requests: int, concurrency: int, max_s: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + max_s
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors, sent
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                start = time.perf_counter()
                try:
                    response = await client.post("/jobs", json=JOB)
                    if response.status_code != 201:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=60)
    args = parser.parse_args()
    print(f"# POST /jobs, {args.concurrency} connections, at most {args.requests} requests")
    print(f"# {environment()}; one uvicorn process, loopback")
    targets = {}
    with tempfile.TemporaryDirectory() as tmp:
        targets["SQLite"] = f"sqlite:///{tmp}/load.db"
        schema = f"load_{uuid.uuid4().hex[:8]}"
        admin = create_engine(POSTGRES_URL)
        try:
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            targets["PostgreSQL"] = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        except Exception as err:  # no server: report and go on with SQLite
            print(f"PostgreSQL skipped: {type(err).__name__}")
        print("| database | requests | req/s | p50 ms | p99 ms | errors |")
        print("|---|---|---|---|---|---|")
        for name, url in targets.items():
            with local_service(Path(tmp) / name, database_url=url, workers=0) as api:
                r = asyncio.run(_load(api, args.requests, args.concurrency, args.max_seconds))
            print(
                f"| {name} | {r['requests']:.0f} | {r['rps']:.0f} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['errors']:.0f} |"
            )
        if "PostgreSQL" in targets:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
