"""API load while a training job runs: POST /jobs and GET /jobs for a fixed duration
against a real uvicorn server (a subprocess started by ``local_service``, with one queue
worker training a real job on Ray meanwhile), load from this process over loopback, on
a SQLite file and on a fresh schema of the local PostgreSQL (skipped, with the reason,
when none answers). Prints figures; never a pass/fail test.

    .venv/bin/python -m bench.load [--seconds 20] [--connections 32] [--post-share 0.9]

Each of the C connections is an HTTP/1.1 keep-alive connection that sends its next
request as soon as the previous one is answered (closed loop); each request is a POST
with probability ``--post-share``, else a GET (a fixed seed, so runs send the same mix).
Errors are any status other than 201 (POST) / 200 (GET), a broken connection or a
request past ``--timeout``. The client is a bare asyncio protocol with pre-encoded
requests (uvloop when installed): about 0.1 ms of CPU per request, so on 2 cores the
load generator takes little from the server (its share is printed). Before the load,
one training job (ReCU ResNet-20 on digits, 1 CPU) is submitted and waited for until it
has finished ``--warm-epochs`` epochs; during the load it is polled once a second on a
connection of its own (not counted) and the report says whether it stayed running and
how many epochs it finished, against its epoch time before the load. CPU used during the
load is printed per process group (Linux): load client, API, queue worker + Ray.

The API runs with the ``RECU_API_WORKERS`` / ``RECU_DB_POOL_*`` settings of this
process's environment (``python -m service --help``), and with RECU_MAX_QUEUED_PER_USER
raised (unless set) since the load queues thousands of jobs of one user. Requests carry
``Authorization: Bearer $RECU_API_TOKEN`` when that is set, else the token that
``local_service`` creates (auth on, as in production: every request looks its token up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from bench.common import environment
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
    *,
    connections: int,
    seconds: float,
    post_share: float,
    get_limit: int,
    timeout: float,
    token: str | None,
    training: Training | None,
) -> tuple[dict[str, Kind], float]:
    url = urlsplit(api)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    post = _raw("POST", "/jobs", url.netloc, token, json.dumps(LOAD_JOB).encode())
    get = _raw("GET", f"/jobs?limit={get_limit}", url.netloc, token)
    kinds = {"POST": Kind(201), "GET": Kind(200)}
    started = time.perf_counter()
    deadline = started + seconds

    async def client(seed: int) -> None:
        pick = random.Random(seed).random
        connection: _Connection | None = None
        while time.perf_counter() < deadline:
            name, raw = ("POST", post) if pick() < post_share else ("GET", get)
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


def _ms(latencies: list[float], q: float) -> str:
    if not latencies:
        return "-"
    ordered = sorted(latencies)
    return f"{1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.1f}"


def _training_line(training: Training, before: dict[int, float], after: dict[int, float]) -> str:
    states = Counter(state for _, state, _ in training.samples)
    epochs = [epoch for _, _, epoch in training.samples]
    during = [t for epoch, t in after.items() if epoch > (epochs[0] if epochs else 0)]
    warm = [t for epoch, t in before.items() if epoch > 1]  # epoch 1 includes compiling
    running = states.get("running", 0) == len(training.samples) > 0
    return (
        f"training job {training.job_id}: "
        f"{'running in all' if running else 'NOT running in all'} {len(training.samples)} "
        f"samples ({dict(states)}); epochs {epochs[0] if epochs else '?'} -> "
        f"{epochs[-1] if epochs else '?'} during the load; epoch time "
        f"{statistics.median(warm) if warm else float('nan'):.2f} s before the load, "
        f"{statistics.median(during) if during else float('nan'):.2f} s during it "
        f"(median; {len(during)} epochs finished during it)"
    )


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


def _measure(name: str, url: str, workdir: Path, args: argparse.Namespace) -> list[str]:
    """Start the service on ``url``, (train,) load it; the report's table rows and notes."""
    with local_service(workdir, database_url=url, workers=0 if args.no_training else 1) as svc:
        api, token = svc.api, os.environ.get("RECU_API_TOKEN") or svc.token
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=api, timeout=30, headers=headers) as http:
            training, before = None, {}
            if not args.no_training:
                training = _start_training(http, args.warm_epochs, max_wait=300)
                before = _epoch_times(http, training.job_id)
            cpu_before = _cpu_seconds()
            kinds, elapsed = _run(
                _load(
                    api,
                    connections=args.connections,
                    seconds=args.seconds,
                    post_share=args.post_share,
                    get_limit=args.get_limit,
                    timeout=args.timeout,
                    token=token,
                    training=training,
                )
            )
            cpu_after = _cpu_seconds()
            after = _epoch_times(http, training.job_id) if training is not None else {}
            total = http.get("/jobs", params={"limit": 1}).raise_for_status().json()["total"]
    lines = []
    for kind_name, kind in kinds.items():
        errors = sum(kind.errors.values())
        detail = f" ({', '.join(f'{k}: {v}' for k, v in kind.errors.items())})"
        lines.append(
            f"| {name} | {kind_name} | {len(kind.latencies)} | "
            f"{len(kind.latencies) / elapsed:.0f} | {_ms(kind.latencies, 0.5)} | "
            f"{_ms(kind.latencies, 0.99)} | {errors}{detail if errors else ''} |"
        )
    answered = sum(len(kind.latencies) for kind in kinds.values()) or 1
    cpu = {group: cpu_after[group] - cpu_before.get(group, 0.0) for group in cpu_after}
    if cpu:
        shares = ", ".join(f"{group} {seconds / elapsed:.2f}" for group, seconds in cpu.items())
        lines.append(
            f"{name}: CPU during the load, in cores: {shares}; API "
            f"{1000 * cpu.get('API', 0.0) / answered:.2f} ms CPU per answered request"
        )
    if training is not None:
        lines.append(f"{name}: {_training_line(training, before, after)}")
    created = len(kinds["POST"].latencies)
    lines.append(
        f"{name}: {total} jobs in the database after the load, {created} created by it"
        f"{' + the training job' if training is not None else ''}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20, help="Load duration per database.")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--post-share", type=float, default=0.9, help="Share of requests that are POST /jobs."
    )
    parser.add_argument("--get-limit", type=int, default=50, help="GET /jobs?limit= (a page).")
    parser.add_argument("--timeout", type=float, default=30, help="Per request, seconds.")
    parser.add_argument(
        "--databases", default="SQLite,PostgreSQL", help="Comma-separated: SQLite, PostgreSQL."
    )
    parser.add_argument(
        "--no-training", action="store_true", help="No queue worker, no training job."
    )
    parser.add_argument(
        "--warm-epochs", type=int, default=2, help="Epochs the training job finishes first."
    )
    args = parser.parse_args()
    # Every POST queues a job of the same user, and they stay queued behind the training
    # job: the per-user cap (100 by default, 429 beyond) would answer most of the load.
    os.environ.setdefault("RECU_MAX_QUEUED_PER_USER", str(10**9))
    print(
        f"# {args.connections} connections, {args.seconds:.0f} s per database, "
        f"{100 * args.post_share:.0f}% POST /jobs, the rest GET /jobs?limit={args.get_limit}; "
        f"{'no training job' if args.no_training else 'a training job running'}; API: "
        f"RECU_API_WORKERS={os.environ.get('RECU_API_WORKERS', '1')}, "
        f"RECU_DB_POOL_SIZE={os.environ.get('RECU_DB_POOL_SIZE', 'default')}, "
        f"RECU_MAX_QUEUED_PER_USER={os.environ['RECU_MAX_QUEUED_PER_USER']}, "
        "auth: bearer token",
    )
    print(f"# {environment()}; {_server_stack()}")
    wanted = {name.strip().lower() for name in args.databases.split(",")}
    rows: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        targets = {"SQLite": f"sqlite:///{tmp}/load.db"}
        try:
            targets["PostgreSQL"] = stack.enter_context(scratch_schema(POSTGRES_URL, "load"))
        except Exception as err:  # no server: report and go on with SQLite
            print(f"PostgreSQL skipped: {type(err).__name__}: {str(err).splitlines()[0]}")
        for name, url in targets.items():
            if name.lower() in wanted:
                for line in _measure(name, url, Path(tmp) / name, args):
                    (rows if line.startswith("|") else notes).append(line)
    print("| database | request | answered | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
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
