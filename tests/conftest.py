"""Shared fixtures."""

from tests.db_fixtures import database_url, engine, postgres_skip_reason  # noqa: F401
