"""Helpers the tests share: waiting for a condition, the waits' allowances, and the
host-synchronisation detector. (Database set-up: tests/db_fixtures.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode

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
