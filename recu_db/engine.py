"""Engines for the two supported databases.

SQLite (the embedded default): WAL journal, a busy timeout, foreign keys on, and every
transaction opened with ``BEGIN IMMEDIATE``: a plain BEGIN that reads and then writes
fails with "database is locked" under concurrency whatever the busy timeout, because the
reader cannot upgrade its lock. PostgreSQL: pooled connections, a connection idle for
``PING_IF_IDLE_S`` pinged at checkout to survive a server restart; the queue claims with
``FOR UPDATE SKIP LOCKED``.

Pool: ``pool_size`` connections kept open (default 32) and ``max_overflow`` more opened
under bursts (default 8) and closed again when returned; a process's entry point passes
its ``DatabaseSettings`` (``RECU_DB_POOL_SIZE``, ``RECU_DB_MAX_OVERFLOW``). An API process
serves up to 40 requests at once (its thread pool); with SQLAlchemy's default 5 + 10, the
16th concurrent request waits for a connection and the overflow ones are opened and
closed request after request (a new PostgreSQL backend each time). PostgreSQL's
max_connections (100 by default) bounds the sum over every API process and worker.

Sizing rule (docs/reliability.md#load): an API request holds at most one connection at
a time (authentication uses a short session of its own, closed before the handler's),
and an API process admits at most ``pool_size + max_overflow`` requests at once
(``ServiceSettings.max_in_flight``; its thread pool is sized to match), so an admitted
request never waits on another admitted one; then ``api_processes x (pool_size +
max_overflow) + workers x their pools <= max_connections`` (minus the superuser
reserve). A checkout waits at most ``pool_timeout`` (``RECU_DB_POOL_TIMEOUT_S``, 5 s):
past it SQLAlchemy raises its ``TimeoutError``, which the API answers 503 + Retry-After.
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.orm import Session, sessionmaker

from recu_core.settings import DatabaseSettings

SQLITE_BUSY_TIMEOUT_MS = 30_000
POOL_SIZE: int = DatabaseSettings.model_fields["db_pool_size"].default
MAX_OVERFLOW: int = DatabaseSettings.model_fields["db_max_overflow"].default
POOL_TIMEOUT_S: float = DatabaseSettings.model_fields["db_pool_timeout_s"].default


def make_engine(
    url: str,
    *,
    pool_size: int = POOL_SIZE,
    max_overflow: int = MAX_OVERFLOW,
    pool_timeout: float = POOL_TIMEOUT_S,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``) with a
    pool of ``pool_size`` + ``max_overflow`` connections and checkouts that wait at most
    ``pool_timeout`` seconds (none for in-memory SQLite, whose pool keeps one connection
    per thread); ``kwargs`` go to ``create_engine``."""
    if make_url(url).database not in {None, "", ":memory:"}:
        pool = {"pool_size": pool_size, "max_overflow": max_overflow}
        kwargs = {**pool, "pool_timeout": pool_timeout, **kwargs}
    kwargs.setdefault("json_deserializer", json_loads)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


#: A pooled PostgreSQL connection idle longer than this (seconds) is pinged at checkout
#: (a dead one is replaced before use: a restarted server costs no request). One reused
#: at once under load is not: a ping per checkout was one round trip of every request.
PING_IF_IDLE_S = 1.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """SQLAlchemy's pessimistic disconnect handling, for idle connections only: a ping
    that fails raises DisconnectionError, and the pool retries with a new connection."""
    idle_since = record.info.get("checked_in_at")
    if idle_since is None or time.monotonic() - idle_since < PING_IF_IDLE_S:
        return
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception as err:  # the server went away (or restarted) while it was idle
        raise exc.DisconnectionError(f"idle connection is dead: {err}") from err


def json_loads(text: str | bytes) -> Any:
    """JSON columns decoded by orjson (the stdlib decoder was a hot spot of GET /jobs);
    what only the stdlib reads (NaN or Infinity, which ``json.dumps`` writes for a
    diverged metric on SQLite) falls back to it."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # 2^x for the fair share's decay (recu_db.fairshare.settle): not every SQLite build
    # has the math functions
    dbapi_connection.create_function("recu_exp2", 1, _exp2, deterministic=True)


def _exp2(x: float | None) -> float | None:
    """2^x for x in [-1000, 0] (a negative age, from a clock behind, counts as 0)."""
    return None if x is None else 2.0 ** min(max(x, -1000.0), 0.0)


def _sqlite_begin(connection: Any) -> None:
    # Read-only sessions take no write lock (in WAL mode readers never block writers);
    # everything else starts with the write lock it will need.
    readonly = connection.get_execution_options().get(READONLY, False)
    connection.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")


READONLY = "recu_readonly"


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for writes; loaded attributes survive commit (results outlive transactions)."""
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reads only: on SQLite they begin DEFERRED and never hold the write lock,
    so a request streaming a checkpoint cannot block the workers' writes."""
    return sessionmaker(engine.execution_options(**{READONLY: True}), expire_on_commit=False)
