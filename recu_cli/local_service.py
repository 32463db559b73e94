"""The service as subprocesses on this machine: an API (uvicorn) and queue workers.

Used by ``make demo`` and the benchmarks. Each process logs to a file in ``workdir``;
leaving the ``with`` block stops them (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def local_service(
    workdir: Path,
    *,
    database_url: str | None = None,
    workers: int = 1,
    worker_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Start the API and ``workers`` queue workers; yields the API's base URL once ready.

    The database defaults to a SQLite file in ``workdir``; Ray's run storage goes there too.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "RECU_DATABASE_URL": database_url or f"sqlite:///{(workdir / 'recu.db').resolve()}",
        "RECU_RUNS_DIR": str((workdir / "ray-runs").resolve()),
    }
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        server = [sys.executable, "-m", "service", "--port", str(port)]
        stack.enter_context(_process(server, env, workdir / "api.log"))
        wait_ready(api)
        for i in range(workers):
            worker = [sys.executable, "-m", "workers", *worker_args]
            stack.enter_context(_process(worker, env, workdir / f"worker-{i}.log"))
        yield api
