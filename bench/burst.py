"""A burst against one API process: ``--posts`` concurrent POST /jobs (each with its own
Idempotency-Key) and ``--gets`` concurrent GET /jobs, all sent at once, against a real
uvicorn server (one process, started by ``local_service``, no queue worker) on a SQLite
file and on a fresh schema of the local PostgreSQL (skipped, with the reason, when none
answers). Prints figures; the pass/fail checks of the same burst are
tests/e2e/test_burst.py.

    .venv/bin/python -m bench.burst [--posts 200] [--gets 300] [--rounds 3]

Every request has its own connection (a bare asyncio client in this process) and a
client time-out of ``--timeout`` seconds; latencies count from the burst's start.
Reported per database and kind: how many were answered 201/200, 503 (with Retry-After),
anything else or not at all, latency percentiles over every answer, and the rows stored
against the 201s (by Idempotency-Key: a row whose POST got no 201 is "stored
unanswered").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from bench.stats import quantile_ms
from recu_cli.local_service import local_service
from recu_db.engine import make_engine, make_read_sessionmaker
from recu_db.models import Job
from recu_db.scratch import scratch_schema

POSTGRES_URL = os.environ.get(
    "RECU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BURST_JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 1}
# What a burst's API runs with: the per-user queue cap (100) would answer most POSTs 429,
# and an access-log line per request costs CPU the burst needs.
BURST_ENV = {"RECU_MAX_QUEUED_PER_USER": str(10**9), "RECU_API_ACCESS_LOG": "false"}


@dataclass(frozen=True)
class Answer:
    """One request of the burst: what it was, what came back, and after how long."""

    kind: str  # "POST" or "GET"
    key: str | None  # the POST's Idempotency-Key
    status: int | None  # None: no answer (the error says why)
    retry_after: str | None
    seconds: float
    job_id: int | None = None
    error: str | None = None
    detail: str | None = None  # the body's "detail" of a 4xx/5xx


async def _exchange(host: str, port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own (``Connection: close``): status, headers
    (lower-case names), body. A bare asyncio client: httpx's pool costs seconds of client
    CPU with 500 connections open at once, which would be measured as server latency."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(head[0].split()[1]), headers, body
    finally:
        writer.close()


def _request(method: str, path: str, netloc: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def burst(
    api: str, token: str, *, posts: int, gets: int, timeout: float, tag: str | None = None
) -> list[Answer]:
    """Send ``posts`` POST /jobs and ``gets`` GET /jobs at once, each on a connection of
    its own; every request's answer (latency from the moment the burst starts)."""
    tag = tag or uuid.uuid4().hex[:8]
    url = urlsplit(api)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    auth = {"Authorization": f"Bearer {token}"}
    job = json.dumps(BURST_JOB).encode()
    begin = time.perf_counter()

    async def one(kind: str, key: str | None) -> Answer:
        if kind == "POST":
            assert key is not None
            raw = _request("POST", "/jobs", url.netloc, {**auth, "Idempotency-Key": key}, job)
        else:
            raw = _request("GET", "/jobs?limit=50", url.netloc, auth, b"")
        try:
            status, headers, body = await asyncio.wait_for(_exchange(host, port, raw), timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
            return Answer(kind, key, None, None, time.perf_counter() - begin, None, repr(err))
        seconds = time.perf_counter() - begin
        answer = json.loads(body) if body else {}
        job_id = answer["id"] if kind == "POST" and status == 201 else None
        detail = str(answer.get("detail")) if status >= 400 else None
        retry_after = headers.get("retry-after")
        return Answer(kind, key, status, retry_after, seconds, job_id, None, detail)

    requests = [("POST", f"burst-{tag}-{i}") for i in range(posts)]
    requests += [("GET", None)] * gets
    # interleaved, so POSTs and GETs arrive mixed rather than one kind first
    order = sorted(range(len(requests)), key=lambda i: (i * 7919) % len(requests))
    return list(await asyncio.gather(*(one(*requests[i]) for i in order)))


def stored_keys(database_url: str, prefix: str = "burst-") -> Counter[str]:
    """Idempotency-Keys of the stored jobs that start with ``prefix``, with their count."""
    engine = make_engine(database_url)
    try:
        with make_read_sessionmaker(engine)() as session:
            keys = session.scalars(
                select(Job.idempotency_key).where(Job.idempotency_key.like(f"{prefix}%"))
            ).all()
    finally:
        engine.dispose()
    return Counter(k for k in keys if k is not None)


def percentile_ms(seconds: list[float], q: float) -> str:
    return "-" if not seconds else f"{quantile_ms(seconds, q):.0f}"


def report_rows(name: str, answers: list[Answer], stored: Counter[str]) -> list[str]:
    """The table rows of one burst, and its line on stored rows against 201s."""
    rows = []
    for kind, ok in (("POST", 201), ("GET", 200)):
        mine = [a for a in answers if a.kind == kind]
        statuses = Counter(a.status for a in mine)
        other = len(mine) - statuses[ok] - statuses[503]
        no_retry = sum(1 for a in mine if a.status == 503 and not a.retry_after)
        rows.append(
            f"| {name} | {kind} | {len(mine)} | {statuses[ok]} | {statuses[503]} | "
            f"{other}{f' ({dict(statuses)})' if other else ''} | "
            f"{percentile_ms([a.seconds for a in mine], 0.5)} | "
            f"{percentile_ms([a.seconds for a in mine], 0.99)} | "
            f"{percentile_ms([a.seconds for a in mine], 1.0)} |"
            + (f" {no_retry} x 503 without Retry-After" if no_retry else "")
        )
    acknowledged = {a.key for a in answers if a.kind == "POST" and a.status == 201}
    unanswered = set(stored) - acknowledged
    twice = sum(1 for n in stored.values() if n > 1)
    rows.append(
        f"{name}: {sum(stored.values())} rows stored for {len(acknowledged)} x 201; "
        f"{len(unanswered)} stored unanswered, {len(acknowledged - set(stored))} acknowledged "
        f"but missing, {twice} stored twice"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--gets", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="Bursts per database.")
    parser.add_argument("--timeout", type=float, default=30, help="Client time-out, seconds.")
    parser.add_argument(
        "--databases", default="SQLite,PostgreSQL", help="Comma-separated: SQLite, PostgreSQL."
    )
    args = parser.parse_args()
    from bench.common import environment  # imports torch: only for the report

    for name, value in BURST_ENV.items():
        os.environ.setdefault(name, value)
    print(
        f"# {args.posts} POST /jobs + {args.gets} GET /jobs?limit=50 at once, {args.rounds} "
        f"bursts per database, client time-out {args.timeout:.0f} s; one API process, "
        f"RECU_DB_POOL_SIZE={os.environ.get('RECU_DB_POOL_SIZE', 'default')}, "
        f"RECU_API_MAX_IN_FLIGHT={os.environ.get('RECU_API_MAX_IN_FLIGHT', 'default')}, "
        f"RECU_API_ADMISSION_WAIT_S={os.environ.get('RECU_API_ADMISSION_WAIT_S', 'default')}"
    )
    print(f"# {environment()}; load average before: {os.getloadavg()[0]:.1f}")
    wanted = {name.strip().lower() for name in args.databases.split(",")}
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        targets = {"SQLite": f"sqlite:///{tmp}/burst.db"}
        try:
            targets["PostgreSQL"] = stack.enter_context(scratch_schema(POSTGRES_URL, "burst"))
        except Exception as err:  # no server: report and go on with SQLite
            print(f"PostgreSQL skipped: {type(err).__name__}: {str(err).splitlines()[0]}")
        for name, url in targets.items():
            if name.lower() not in wanted:
                continue
            with local_service(Path(tmp) / name, database_url=url, workers=0) as svc:
                for round_ in range(args.rounds):
                    tag = f"{round_}-{uuid.uuid4().hex[:6]}"
                    answers = asyncio.run(
                        burst(
                            svc.api,
                            svc.token,
                            posts=args.posts,
                            gets=args.gets,
                            timeout=args.timeout,
                            tag=tag,
                        )
                    )
                    stored = stored_keys(url, f"burst-{tag}-")
                    rows += report_rows(f"{name} #{round_ + 1}", answers, stored)
                ready = httpx.get(f"{svc.api}/readyz", timeout=10).status_code
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                rows.append(f"{name}: /readyz {ready} after the bursts; load average {load}")
    print("| database | request | sent | 201/200 | 503 | other | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(r for r in rows if r.startswith("|")))
    print("\n".join(r for r in rows if not r.startswith("|")))


if __name__ == "__main__":
    main()
