"""Helpers the tests share: waiting for a condition, the waits' allowances, and the
host-synchronisation detector, and a private PostgreSQL server to stop and start (the
``private_postgres`` fixture, of tests/e2e). (Database set-up: tests/db_fixtures.py.)"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from torch.utils._python_dispatch import TorchDispatchMode

from recu_cli.local_service import free_port

T = TypeVar("T")

# What a start may take: a worker or API process (imports torch, Ray, SQLAlchemy,
# FastAPI; joins the Ray instance), a Ray Train worker group (actors, a gloo group, the
# dataset) or its restart after a failure. A few seconds on an idle machine, about a
# minute on a loaded 2-core CI machine; five minutes only a hang exceeds. Waits for a
# job's progress allow this much without progress, so they scale with the job's length
# and the machine's speed by themselves (``wait_until(..., progress=...)``).
START_S = 300.0


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    message: str,
    interval: float = 0.1,
    progress: Callable[[], Hashable] | None = None,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy,
    and return that value.

    Without ``progress``, fail after ``timeout`` seconds. With it, ``timeout`` counts from
    the last change of ``progress()`` (for example a job's epoch): the wait fails only when
    nothing advanced for ``timeout`` seconds, however long the whole wait takes. The
    failure is an AssertionError naming what was awaited, the predicate's last value and
    ``details()`` (log tails, say)."""
    start = time.monotonic()
    last = progress() if progress is not None else None
    while True:
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        if progress is not None:
            current = progress()
            if current != last:
                last, start = current, now
        if now - start > timeout:
            stalled = f" (no progress from {last!r})" if progress is not None else ""
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(
                f"timed out after {timeout:.0f} s{stalled} waiting for {message}; "
                f"last value: {value!r}{extra}"
            )
        time.sleep(interval)


def ray_actors(*class_names: str) -> dict[str, tuple[int, str]]:
    """Every actor of ``class_names`` the Ray instance has had: actor id -> (pid, state).
    (``ray.util.state`` needs the dashboard; the tests' instance runs without one.)"""
    from ray._private.state import actors

    return {
        actor_id: (info["Pid"], info["State"])
        for actor_id, info in actors().items()
        if info["ActorClassName"] in class_names
    }


def assert_ray_cpus_released(timeout: float = 120.0) -> None:
    """Ray gets every CPU of the instance back: the actors of the ended jobs are gone.
    Ray tears actors down asynchronously (seconds, longer on a loaded machine); two
    minutes only a leak exceeds."""
    import ray

    wait_until(
        lambda: ray.available_resources().get("CPU") == ray.cluster_resources().get("CPU"),
        timeout=timeout,
        message="Ray to get its CPUs back",
        details=lambda: f"available {ray.available_resources()}, total {ray.cluster_resources()}",
    )


class PrivatePostgres:
    """A throwaway PostgreSQL server of the test's own (initdb in a temporary folder, a
    free port): stopping it disturbs nothing else that uses the machine's server."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir, self.root, self.port = bindir, root, free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        # the server refuses to run as root: as root, run its tools as the postgres user
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, tool: str, *args: str) -> None:
        command = [*self.as_user, str(self.bindir / tool), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=START_S + 60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        data, wait_s = str(self.root / "data"), str(int(START_S))  # -t: pg_ctl's own wait
        self._run("pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "-t", wait_s, "start")
        wait_until(self.accepts, timeout=START_S, message="PostgreSQL to accept connections")

    def stop(self, mode: str = "fast") -> None:
        data, wait_s = str(self.root / "data"), str(int(START_S))
        self._run("pg_ctl", "-D", data, "-m", mode, "-w", "-t", wait_s, "stop")

    def accepts(self) -> bool:
        engine = create_engine(self.url, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as connection:
                connection.execute(text("select 1"))
            return True
        except OperationalError:
            return False
        finally:
            engine.dispose()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL server to stop and start at will; skips, saying why, where
    the server's binaries are not installed."""
    initdb = shutil.which("initdb") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)), None
    )
    if initdb is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root with no postgres user to run a PostgreSQL server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start a PostgreSQL server")
    root = Path(tempfile.mkdtemp(prefix="recu-faults-pg-"))  # pytest's tmp is 0700 root
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    server = PrivatePostgres(Path(initdb).parent, root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


# Ops that make the host wait for the device on a GPU: reading a scalar (.item(), bool(t),
# float(t)), data-dependent shapes (nonzero, boolean-mask indexing), and torch.tensor(...)
# built from host data (a host-to-device copy).
SYNCING_OPS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
    torch.ops.aten.lift_fresh.default,
}
# Device-to-host copies, which no op of the dispatcher shows on CPU.
HOST_COPIES = ("tolist", "numpy", "cpu")


class HostSyncs(TorchDispatchMode):
    """The host-synchronisation detector, for CPU runs: records, in order, every op of
    SYNCING_OPS, every boolean-mask indexing and every ``Tensor.tolist/numpy/cpu`` call
    made while it is active (``seen``); with ``fail=True`` it raises AssertionError at
    the first instead."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.seen: list[str] = []
        self._originals: dict[str, Any] = {}
        self._own: dict[str, Any] = {}

    def _record(self, what: str) -> None:
        if self.fail:
            raise AssertionError(f"host synchronisation: {what}")
        self.seen.append(what)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNCING_OPS:
            self._record(str(func))
        elif func is torch.ops.aten.index.Tensor and any(
            i is not None and i.dtype == torch.bool for i in args[1]
        ):
            self._record("boolean-mask indexing")
        return func(*args, **(kwargs or {}))

    def _counting(self, name: str) -> Callable[..., Any]:
        original = self._originals[name]

        def method(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self._record(f"Tensor.{name}")
            return original(tensor, *args, **kwargs)

        return method

    def __enter__(self) -> HostSyncs:
        for name in HOST_COPIES:
            self._originals[name] = getattr(torch.Tensor, name)
            self._own[name] = torch.Tensor.__dict__.get(name)  # None: from the C base class
            setattr(torch.Tensor, name, self._counting(name))
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            for name, own in self._own.items():
                if own is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, own)
            self._originals.clear()
            self._own.clear()
