"""A PostgreSQL schema of one's own on a shared server (tests and benchmarks): created
empty, dropped with everything in it afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text


@contextmanager
def scratch_schema(server_url: str, prefix: str = "t") -> Iterator[str]:
    """A URL on ``server_url`` whose connections use a new, empty schema (search_path);
    the schema is dropped when the block ends. Connection errors propagate at entry."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield f"{server_url}?options=-csearch_path%3D{schema}"
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
