"""Riding out a database outage: retry an operation while its error is transient.

Transient: the server is down or restarting, a pooled connection was dropped, SQLite is
busy past its timeout (``OperationalError``, ``InterfaceError``, or any DBAPI error that
invalidated its connection). Every queue write is fenced by the lease, so retrying one
is safe: if the job was re-claimed meanwhile, the retried write changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

T = TypeVar("T")
log = logging.getLogger("recu.db")


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` says the database is out of reach for now (not that the query is
    wrong)."""
    if isinstance(err, OperationalError | InterfaceError):
        return True
    return isinstance(err, DBAPIError) and err.connection_invalidated


def retry_transient(fn: Callable[[], T], *, seconds: float, pause_s: float = 0.5) -> T:
    """``fn()``, called again after each transient error for up to ``seconds``; the last
    error is raised after that, any other error at once."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except DBAPIError as err:
            if not is_transient(err) or time.monotonic() + pause_s > deadline:
                raise
            log.warning("database unavailable (%s); retrying", type(err.orig).__name__)
            time.sleep(pause_s)
