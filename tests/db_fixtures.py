"""Database fixtures: the same tests run on SQLite and on PostgreSQL.

PostgreSQL tests use the server at RECU_TEST_POSTGRES_URL (default: the local one on
127.0.0.1:5432, trust auth, database ``test``), each in a schema of its own, and skip
with the reason when no server answers. ``migrated_database`` and the ``sqlite_database``
fixture give a test its own migrated database with engine and sessions, for the tests
that share it with processes, workers or an API they start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from recu_db.engine import make_engine, make_read_sessionmaker, make_sessionmaker
from recu_db.migrate import migrated_engine
from recu_db.scratch import scratch_schema

POSTGRES_URL = os.environ.get(
    "RECU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_unavailable() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as err:  # any failure to connect means: skip, saying why
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {type(err).__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_skip_reason() -> str | None:
    return _postgres_unavailable()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, postgres_skip_reason) -> Iterator[str]:
    """A migrated, empty database URL: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        migrated_engine(f"sqlite:///{tmp_path / 'queue.db'}").dispose()
        yield f"sqlite:///{tmp_path / 'queue.db'}"
        return
    if postgres_skip_reason:
        pytest.skip(postgres_skip_reason)
    with scratch_schema(POSTGRES_URL) as url:
        migrated_engine(url).dispose()
        yield url


@pytest.fixture
def engine(database_url) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> sessionmaker[Session]:
    """Write sessions on the migrated database (what the queue functions take)."""
    return make_sessionmaker(engine)


@dataclass(frozen=True)
class Database:
    """A migrated database: its URL (for the processes, workers and API a test starts),
    an engine, write sessions (what the queue functions take) and read sessions."""

    url: str
    engine: Engine
    db: sessionmaker[Session]
    read: sessionmaker[Session]


@contextmanager
def migrated_database(url: str) -> Iterator[Database]:
    """The database at ``url`` migrated to the newest schema (a no-op where it is); the
    engine is disposed when the block ends."""
    engine = migrated_engine(url)
    try:
        yield Database(url, engine, make_sessionmaker(engine), make_read_sessionmaker(engine))
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_database(tmp_path) -> Iterator[Database]:
    """A migrated SQLite file of the test's own (``jobs.db`` in its tmp_path)."""
    with migrated_database(f"sqlite:///{tmp_path / 'jobs.db'}") as database:
        yield database
