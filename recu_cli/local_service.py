"""The service as subprocesses on this machine: an API (uvicorn) and queue workers.

Used by ``make demo``, the benchmarks and the end-to-end tests. Each process logs to a
file in ``workdir``; leaving the ``with`` block stops them (SIGTERM, then SIGKILL after a
grace period). Auth is on, as in production: a token for the user "local" is created on
the database and handed back with the URL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(api: str, seconds: float = 60) -> None:
    """Return once GET /readyz answers 200; RuntimeError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API at {api} did not become ready in {seconds:.0f} s")


@contextmanager
def process(
    args: list[str], env: dict[str, str], log: Path, *, grace_s: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess logging to ``log``; stopped when the block ends: SIGTERM, then SIGKILL
    after ``grace_s`` (0: SIGKILL at once)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                if grace_s > 0:
                    proc.terminate()
                    try:
                        proc.wait(timeout=grace_s)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                else:
                    proc.kill()
            proc.wait()


@dataclass(frozen=True)
class LocalService:
    """A running local service: its base URL, a bearer token for it and the API's pid."""

    api: str
    token: str
    api_pid: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=timeout, headers=self.headers)


def create_local_token(database_url: str, user: str = "local") -> str:
    """A new token for ``user`` on the (migrated) database at ``database_url``."""
    from recu_db.engine import make_engine, make_sessionmaker
    from recu_db.tokens import create_token

    engine = make_engine(database_url)
    try:
        return create_token(make_sessionmaker(engine), f"{user}-{uuid.uuid4().hex[:8]}", user=user)
    finally:
        engine.dispose()


@contextmanager
def local_service(
    workdir: Path,
    *,
    database_url: str | None = None,
    workers: int = 1,
    worker_args: tuple[str, ...] = (),
) -> Iterator[LocalService]:
    """Start the API and ``workers`` queue workers; yields the URL and a token once ready.

    The database defaults to a SQLite file in ``workdir``; Ray's run storage goes there too.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{(workdir / 'recu.db').resolve()}"
    env = {
        **os.environ,
        "RECU_DATABASE_URL": database_url,
        "RECU_RUNS_DIR": str((workdir / "ray-runs").resolve()),
    }
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        server = [sys.executable, "-m", "service", "--port", str(port)]
        server_process = stack.enter_context(process(server, env, workdir / "api.log"))
        wait_ready(api)
        token = create_local_token(database_url)
        for i in range(workers):
            worker = [sys.executable, "-m", "workers", *worker_args]
            stack.enter_context(process(worker, env, workdir / f"worker-{i}.log"))
        yield LocalService(api, token, server_process.pid)
