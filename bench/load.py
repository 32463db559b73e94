"""API load against a real uvicorn server (a subprocess started by ``local_service``,
auth on), load from this process over loopback, on a SQLite file and on a fresh schema of
the local PostgreSQL (skipped, with the reason, when none answers). Prints figures; never
a pass/fail test.

    .venv/bin/python -m bench.load [--seconds 10] [--training-seconds 20]
        [--no-training | --no-throughput] [--profile DIR]

Per database, two services one after the other:

1. Throughput, no queue worker: each endpoint alone for ``--seconds``, closed loop
   (every connection sends its next request as soon as the previous is answered):
   ``POST /jobs`` at 8 and at 32 connections, ``GET /jobs/{id}`` and
   ``GET /jobs?limit=50`` at 8 (on the jobs the POST phases stored).
2. Training beside the load: one queue worker trains one job (ReCU ResNet-20 on digits,
   1 CPU); after ``--warm-epochs`` epochs its epoch times are taken for
   ``--idle-epochs`` epochs with no load, then under ``--training-seconds`` of the mixed
   load (32 connections, ``--post-share`` POST /jobs, the rest GET /jobs?limit=50); the
   report gives the median epoch time of each and their ratio (the slowdown).

Errors are any status other than 201 (POST) / 200 (GET), a broken connection or a
request past ``--timeout``. The client is a bare asyncio protocol with pre-encoded
requests (uvloop when installed): about 0.1 ms of CPU per request, so on 2 cores the
load generator takes little from the server (its share is printed with the API's and
the worker's, per process group, Linux).

The API runs with this process's ``RECU_API_*`` / ``RECU_DB_POOL_*`` settings
(``python -m service --help``; e.g. ``RECU_API_WORKERS=2``, ``RECU_API_NICE=10``), and
with RECU_MAX_QUEUED_PER_USER raised (unless set) since the load queues thousands of
jobs of one user. Requests carry the token ``local_service`` creates (auth on, as in
production).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from bench.common import environment
from bench.pyspy import profiled, summary
from bench.stats import quantile_ms
from recu_cli.local_service import local_service
from recu_db.scratch import scratch_schema

POSTGRES_URL = os.environ.get(
    "RECU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# What the load submits: the embedded demo recipe. The queue worker runs one job at a
# time, so these stay queued behind the training job for the whole load.
LOAD_JOB = {"model": "resnet20", "dataset": {"name": "digits"}, "epochs": 30}
TRAINING_JOB = {
    "model": "resnet20",
    "dataset": {"name": "digits"},
    "batch_size": 32,
    "epochs": 10_000,  # outlasts any load; the job is left running when the service stops
    "resources": {"num_workers": 1, "cpus_per_worker": 1},
}


class ProtocolError(Exception):
    """A response this client does not understand (no Content-Length, bad status line)."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, Content-Length bodies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("closed by the server"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"\r\ncontent-length:")
        if start < 0 or not head.startswith(b"http/1.1 "):
            waiter.set_exception(ProtocolError(head[:200].decode(errors="replace")))
            return
        stop = head.find(b"\r\n", start + 2)
        total = end + 4 + int(head[start + 17 : stop if stop >= 0 else None])
        if len(self.buffer) < total:
            return
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        waiter.set_result((int(head[9:12]), body))

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        if self.transport is None:
            raise ConnectionResetError("not connected")
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        expire = loop.call_later(timeout, _expire, waiter, timeout)
        self.transport.write(raw)
        try:
            return await waiter
        finally:
            expire.cancel()
            self.waiter = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[tuple[int, bytes]], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"no answer in {timeout} s"))


async def _connect(host: str, port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(_Connection, host, port)
    return connection


def _raw(method: str, path: str, host: str, token: str | None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Kind:
    """The requests of one kind (POST or GET): latencies of the successful ones, errors."""

    expected: int
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Training:
    """The training job as polled during the load: (seconds since start, state, epoch)."""

    job_id: int
    samples: list[tuple[float, str, int]] = field(default_factory=list)


async def _load(
    api: str,
    mix: list[tuple[str, bytes, int, float]],
    *,
    connections: int,
    seconds: float,
    timeout: float,
    training: Training | None = None,
    token: str | None = None,
) -> tuple[dict[str, Kind], float]:
    """``connections`` closed-loop clients for ``seconds``; each request is drawn from
    ``mix`` = [(name, raw request, expected status, share)] with a fixed seed per client.
    ``training`` is polled once a second on a connection of its own (not counted)."""
    url = urlsplit(api)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    kinds = {name: Kind(expected) for name, _, expected, _ in mix}
    bounds, total = [], 0.0
    for name, raw, _, share in mix:
        total += share
        bounds.append((total, name, raw))
    started = time.perf_counter()
    deadline = started + seconds

    def draw(u: float) -> tuple[str, bytes]:
        for bound, name, raw in bounds:
            if u * total < bound:
                return name, raw
        return bounds[-1][1], bounds[-1][2]

    async def client(seed: int) -> None:
        pick = random.Random(seed).random
        connection: _Connection | None = None
        while time.perf_counter() < deadline:
            name, raw = draw(pick())
            kind = kinds[name]
            begin = time.perf_counter()
            try:
                if connection is None:
                    connection = await _connect(host, port)
                status, _ = await connection.request(raw, timeout)
            except (OSError, TimeoutError, ProtocolError) as err:
                kind.errors[type(err).__name__] += 1
                if connection is not None:
                    connection.close()
                connection = None
                await asyncio.sleep(0.05)  # a refused connection must not spin the client
                continue
            if status == kind.expected:
                kind.latencies.append(time.perf_counter() - begin)
            else:
                kind.errors[f"HTTP {status}"] += 1
        if connection is not None:
            connection.close()

    async def poll(job: Training) -> None:
        raw = _raw("GET", f"/jobs/{job.job_id}", url.netloc, token)
        connection: _Connection | None = None
        while time.perf_counter() < deadline:
            state, epoch = "unanswered", -1
            try:
                connection = connection or await _connect(host, port)
                status, body = await connection.request(raw, timeout)
                if status == 200:
                    answer = json.loads(body)
                    state, epoch = answer["state"], answer["current_epoch"]
            except (OSError, TimeoutError, ProtocolError):
                if connection is not None:
                    connection.close()
                connection = None
            job.samples.append((time.perf_counter() - started, state, epoch))
            await asyncio.sleep(1.0)
        if connection is not None:
            connection.close()

    tasks = [client(seed) for seed in range(connections)]
    if training is not None:
        tasks.append(poll(training))
    await asyncio.gather(*tasks)
    return kinds, time.perf_counter() - started


def _run(coroutine: Any) -> Any:
    """asyncio.run, on uvloop when it is installed (less client CPU per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _start_training(client: httpx.Client, warm_epochs: int, max_wait: float) -> Training:
    """Submit the training job and wait until it has finished ``warm_epochs`` epochs."""
    job = client.post("/jobs", json=TRAINING_JOB).raise_for_status().json()
    deadline = time.monotonic() + max_wait
    while job["current_epoch"] < warm_epochs:
        if job["state"] not in {"queued", "running"} or time.monotonic() > deadline:
            raise RuntimeError(
                f"training job {job['id']}: {job['state']} at epoch {job['current_epoch']} "
                f"after {max_wait:.0f} s ({job['error']})"
            )
        time.sleep(0.5)
        job = client.get(f"/jobs/{job['id']}").raise_for_status().json()
    return Training(job["id"])


def _epoch_times(client: httpx.Client, job_id: int) -> dict[int, float]:
    history = client.get(f"/jobs/{job_id}/metrics").raise_for_status().json()
    return {m["epoch"]: m["metrics"]["epoch_time_s"] for m in history}


def _wait_epochs(client: httpx.Client, job_id: int, epochs: int, max_wait: float) -> int:
    """Wait until the job has finished ``epochs`` more epochs; its epoch then."""
    job = client.get(f"/jobs/{job_id}").raise_for_status().json()
    target, deadline = job["current_epoch"] + epochs, time.monotonic() + max_wait
    while job["current_epoch"] < target:
        if job["state"] != "running" or time.monotonic() > deadline:
            raise RuntimeError(f"training job {job_id}: {job['state']} at {job['current_epoch']}")
        time.sleep(0.5)
        job = client.get(f"/jobs/{job_id}").raise_for_status().json()
    return int(job["current_epoch"])


def _ms(latencies: list[float], q: float) -> str:
    return "-" if not latencies else f"{quantile_ms(latencies, q):.1f}"


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this process and of its child process trees, by what they run
    (Linux /proc; empty elsewhere): "load client", "API" (python -m service and its
    uvicorn workers), "queue worker + Ray" (python -m workers, Ray's processes, training)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid = int(entry.name)
        parents[pid] = int(stat[1])
        # own user + system time, and that of its children already reaped
        seconds[pid] = sum(int(v) for v in stat[11:15]) / tick
    me = os.getpid()
    totals: dict[str, float] = {}
    for pid, cpu in seconds.items():
        top, node = pid, pid
        while node in parents and parents[node] not in (me, 0, 1):
            node = parents[node]
            top = node
        if pid == me:
            group = "load client"
        elif parents.get(top) != me:
            continue
        elif "-m\0service" in commands.get(top, ""):
            group = "API"
        elif "-m\0workers" in commands.get(top, ""):
            group = "queue worker + Ray"
        else:
            continue
        totals[group] = totals.get(group, 0.0) + cpu
    return totals


def _row(database: str, phase: str, kind_name: str, kind: Kind, elapsed: float) -> str:
    errors = sum(kind.errors.values())
    detail = f" ({', '.join(f'{k}: {v}' for k, v in kind.errors.items())})"
    return (
        f"| {database} | {phase} | {kind_name} | {len(kind.latencies)} | "
        f"{len(kind.latencies) / elapsed:.0f} | {_ms(kind.latencies, 0.5)} | "
        f"{_ms(kind.latencies, 0.99)} | {errors}{detail if errors else ''} |"
    )


def _cpu_note(
    database: str, phase: str, before: dict[str, float], elapsed: float, answered: int
) -> str:
    after = _cpu_seconds()
    cpu = {group: after[group] - before.get(group, 0.0) for group in after}
    shares = ", ".join(f"{group} {seconds / elapsed:.2f}" for group, seconds in cpu.items())
    return (
        f"{database} {phase}: CPU in cores: {shares}; API "
        f"{1000 * cpu.get('API', 0.0) / max(answered, 1):.2f} ms CPU per answered request"
    )


def _throughput(name: str, url: str, workdir: Path, args: argparse.Namespace) -> list[str]:
    """Each endpoint alone, no queue worker: the table rows and CPU notes."""
    lines = []
    with local_service(workdir, database_url=url, workers=0) as svc:
        netloc = urlsplit(svc.api).netloc
        post = _raw("POST", "/jobs", netloc, svc.token, json.dumps(LOAD_JOB).encode())
        with httpx.Client(base_url=svc.api, timeout=30, headers=svc.headers) as http:
            first = http.post("/jobs", json=LOAD_JOB).raise_for_status().json()["id"]
        one = _raw("GET", f"/jobs/{first}", netloc, svc.token)
        page = _raw("GET", f"/jobs?limit={args.get_limit}", netloc, svc.token)
        phases = [
            ("POST /jobs", [("POST", post, 201, 1.0)], 8),
            ("POST /jobs", [("POST", post, 201, 1.0)], 32),
            ("GET /jobs/{id}", [("GET", one, 200, 1.0)], 8),
            (f"GET /jobs?limit={args.get_limit}", [("GET", page, 200, 1.0)], 8),
        ]
        for (
            phase,
            mix,
            connections,
        ) in phases:
            label = f"{phase} x{connections}"
            cpu_before = _cpu_seconds()
            with ExitStack() as profiling:
                if args.profile is not None:
                    out = args.profile / f"{name}-{re.sub(r'[^A-Za-z0-9]+', '-', label)}.txt"
                    profiling.enter_context(profiled(svc.api_pid, out))
                kinds, elapsed = _run(
                    _load(
                        svc.api,
                        mix,
                        connections=connections,
                        seconds=args.seconds,
                        timeout=args.timeout,
                    )
                )
            if args.profile is not None:
                lines.append(f"{name} {label}: py-spy --gil: {summary(out)}")
            answered = sum(len(k.latencies) for k in kinds.values())
            lines += [_row(name, label, k, kind, elapsed) for k, kind in kinds.items()]
            lines.append(_cpu_note(name, label, cpu_before, elapsed, answered))
    return lines


def _beside_training(name: str, url: str, workdir: Path, args: argparse.Namespace) -> list[str]:
    """The mixed load while one job trains: its epoch time without and with the load."""
    with local_service(workdir, database_url=url, workers=1) as svc:
        netloc = urlsplit(svc.api).netloc
        post = _raw("POST", "/jobs", netloc, svc.token, json.dumps(LOAD_JOB).encode())
        page = _raw("GET", f"/jobs?limit={args.get_limit}", netloc, svc.token)
        mix = [("POST", post, 201, args.post_share), ("GET", page, 200, 1 - args.post_share)]
        with httpx.Client(base_url=svc.api, timeout=30, headers=svc.headers) as http:
            training = _start_training(http, args.warm_epochs, max_wait=300)
            idle_from = _wait_epochs(http, training.job_id, 0, 60)
            idle_to = _wait_epochs(http, training.job_id, args.idle_epochs, 300)
            cpu_before = _cpu_seconds()
            kinds, elapsed = _run(
                _load(
                    svc.api,
                    mix,
                    connections=args.connections,
                    seconds=args.training_seconds,
                    timeout=args.timeout,
                    training=training,
                    token=svc.token,
                )
            )
            cpu_line = _cpu_note(
                name,
                "mixed load beside training",
                cpu_before,
                elapsed,
                sum(len(k.latencies) for k in kinds.values()),
            )
            times = _epoch_times(http, training.job_id)
    label = f"mixed x{args.connections}, training"
    lines = [_row(name, label, k, kind, elapsed) for k, kind in kinds.items()]
    epochs = [epoch for _, _, epoch in training.samples if epoch >= 0]
    idle = [t for e, t in times.items() if idle_from < e <= idle_to]
    during = [t for e, t in times.items() if epochs and epochs[0] < e <= epochs[-1]]
    states = Counter(state for _, state, _ in training.samples)
    ratio = statistics.median(during) / statistics.median(idle) if idle and during else math.nan
    lines.append(cpu_line)
    lines.append(
        f"{name}: training job {training.job_id} ({dict(states)} in {len(training.samples)} "
        f"polls): epoch time {statistics.median(idle) if idle else math.nan:.2f} s without "
        f"load ({len(idle)} epochs), {statistics.median(during) if during else math.nan:.2f} s "
        f"under it ({len(during)} epochs): slowdown {ratio:.2f}x"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10, help="Per throughput phase.")
    parser.add_argument("--training-seconds", type=float, default=20, help="Mixed load.")
    parser.add_argument("--connections", type=int, default=32, help="Of the mixed load.")
    parser.add_argument(
        "--post-share", type=float, default=0.9, help="Share of POST /jobs in the mixed load."
    )
    parser.add_argument("--get-limit", type=int, default=50, help="GET /jobs?limit= (a page).")
    parser.add_argument("--timeout", type=float, default=30, help="Per request, seconds.")
    parser.add_argument(
        "--databases", default="SQLite,PostgreSQL", help="Comma-separated: SQLite, PostgreSQL."
    )
    parser.add_argument("--no-training", action="store_true", help="Throughput phases only.")
    parser.add_argument("--no-throughput", action="store_true", help="The training phase only.")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="A folder: py-spy (--gil) records the API in each throughput phase there, "
        "and the report gives where its samples went (the profile costs the API some speed).",
    )
    parser.add_argument("--warm-epochs", type=int, default=2, help="Before any timing.")
    parser.add_argument("--idle-epochs", type=int, default=5, help="Timed without load.")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    # Every POST queues a job of the same user, and they stay queued: the per-user cap
    # (100 by default, 429 beyond) would answer most of the load.
    os.environ.setdefault("RECU_MAX_QUEUED_PER_USER", str(10**9))
    settings = {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith(("RECU_API_", "RECU_DB_", "RECU_AUTH"))
    }
    print(
        f"# {args.seconds:.0f} s per throughput phase; API settings: {settings or 'defaults'}; "
        f"RECU_MAX_QUEUED_PER_USER={os.environ['RECU_MAX_QUEUED_PER_USER']}; auth: bearer token"
    )
    print(f"# {environment()}; {_server_stack()}")
    wanted = {name.strip().lower() for name in args.databases.split(",")}
    rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        targets: dict[str, Callable[[str], str]] = {
            "SQLite": lambda tag: f"sqlite:///{tmp}/{tag}.db"
        }
        try:
            stack.enter_context(scratch_schema(POSTGRES_URL, "probe"))
            targets["PostgreSQL"] = lambda tag: stack.enter_context(
                scratch_schema(POSTGRES_URL, tag)
            )
        except Exception as err:  # no server: report and go on with SQLite
            print(f"PostgreSQL skipped: {type(err).__name__}: {str(err).splitlines()[0]}")
        for name, url_for in targets.items():
            if name.lower() not in wanted:
                continue
            found = []
            if not args.no_throughput:
                found += _throughput(name, url_for("load"), Path(tmp) / f"{name}-load", args)
            if not args.no_training:
                found += _beside_training(name, url_for("train"), Path(tmp) / f"{name}-train", args)
            for line in found:
                (rows if line.startswith("|") else notes).append(line)
    print("| database | phase | request | answered | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n".join(notes))


def _server_stack() -> str:
    """What uvicorn will run on here: uvloop/httptools when installed, else asyncio/h11."""
    found = []
    for module in ("uvloop", "httptools"):
        try:
            __import__(module)
            found.append(module)
        except ImportError:
            pass
    return f"uvicorn on {' + '.join(found) if found else 'asyncio + h11'}"


if __name__ == "__main__":
    main()
