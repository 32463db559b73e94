"""Engines for the two supported databases.

SQLite (the embedded default): WAL journal, a busy timeout, foreign keys on, and every
transaction opened with ``BEGIN IMMEDIATE``: a plain BEGIN that reads and then writes
fails with "database is locked" under concurrency whatever the busy timeout, because the
reader cannot upgrade its lock. PostgreSQL: pooled connections, pre-ping to survive a
server restart; the queue claims with ``FOR UPDATE SKIP LOCKED``.

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

from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
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
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


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
