"""recu_core.settings: each class reads its own variables, checks them, and an error names
the variable; no field is read from any other variable."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from recu_core.settings import (
    ALL_SETTINGS,
    ClientSettings,
    DatabaseSettings,
    DataSettings,
    ServiceSettings,
    WorkerSettings,
    env_name,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the variables the settings read (the Makefile exports some)."""
    for settings in ALL_SETTINGS:
        for field in settings.model_fields:
            monkeypatch.delenv(env_name(settings, field), raising=False)


def _rejects(settings: type, variable: str, value: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The error ``settings`` raises with ``variable=value``; it names the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as err:
        settings()
    assert variable in str(err.value)
    return str(err.value)


def test_every_field_names_its_own_variable() -> None:
    for settings in ALL_SETTINGS:
        for field in settings.model_fields:
            assert re.fullmatch(r"(RECU|RAY)_[A-Z0-9_]+", env_name(settings, field)), field


def test_data_settings_read_their_variables_and_check_them(monkeypatch, tmp_path) -> None:
    assert DataSettings().data_dir == Path("var/data")
    assert DataSettings().cache_dir == Path("var/cache")
    monkeypatch.setenv("RECU_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("RECU_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("RECU_MEMORY_LOADER_MAX_BYTES", "1000")
    settings = DataSettings()
    assert (settings.data_dir, settings.cache_dir) == (tmp_path / "d", tmp_path / "c")
    assert settings.memory_loader_max_bytes == 1000
    assert "greater than or equal to 0" in _rejects(
        DataSettings, "RECU_MEMORY_LOADER_MAX_BYTES", "-1", monkeypatch
    )


def test_database_settings_give_the_engine_its_pool(monkeypatch, tmp_path) -> None:
    from recu_db.engine import make_engine

    assert DatabaseSettings().pool() == {"pool_size": 32, "max_overflow": 8}
    monkeypatch.setenv("RECU_DATABASE_URL", f"sqlite:///{tmp_path / 'q.db'}")
    monkeypatch.setenv("RECU_DB_POOL_SIZE", "4")
    monkeypatch.setenv("RECU_DB_MAX_OVERFLOW", "2")
    settings = DatabaseSettings()
    engine = make_engine(settings.database_url, **settings.pool())
    try:
        assert engine.pool.size() == 4  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 2  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    _rejects(DatabaseSettings, "RECU_DB_POOL_SIZE", "0", monkeypatch)


def test_service_settings_share_data_dir_and_read_the_server_options(monkeypatch) -> None:
    monkeypatch.setenv("RECU_DATA_DIR", "/datasets")
    monkeypatch.setenv("RECU_API_WORKERS", "3")
    monkeypatch.setenv("RECU_API_ACCESS_LOG", "false")
    monkeypatch.setenv("RECU_DB_POOL_SIZE", "5")
    settings = ServiceSettings(max_workers_per_job=2)
    assert settings.data_dir == DataSettings().data_dir == Path("/datasets")
    assert (settings.api_workers, settings.api_access_log) == (3, False)
    assert (settings.db_pool_size, settings.max_workers_per_job) == (5, 2)
    assert "greater than or equal to 1024" in _rejects(
        ServiceSettings, "RECU_MAX_REQUEST_BYTES", "10", monkeypatch
    )
    _rejects(ServiceSettings, "RECU_API_ACCESS_LOG", "sometimes", monkeypatch)


def test_worker_settings_come_from_the_environment_and_are_checked(monkeypatch) -> None:
    default = WorkerSettings()
    assert default.ray_address is None
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}-[0-9a-f]{{8}}", default.name)
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    monkeypatch.setenv("RECU_RUNS_DIR", "s3://bucket/recu")
    monkeypatch.setenv("RECU_WORKER_LEASE_S", "7.5")
    monkeypatch.setenv("RECU_WORKER_POLL_S", "0.25")
    monkeypatch.setenv("RECU_WORKER_MAX_FAILURES", "3")
    monkeypatch.setenv("RECU_WORKER_CONCURRENCY", "2")
    monkeypatch.setenv("RECU_DATABASE_URL", "postgresql+psycopg://db/recu")
    settings = WorkerSettings(name="w1")
    assert (settings.ray_address, settings.runs_dir) == ("auto", "s3://bucket/recu")
    assert (settings.lease_s, settings.poll_s, settings.max_failures) == (7.5, 0.25, 3)
    assert (settings.concurrency, settings.name) == (2, "w1")
    assert settings.database_url == "postgresql+psycopg://db/recu"
    monkeypatch.setenv("RAY_ADDRESS", "")  # empty is unset: a local Ray instance
    assert WorkerSettings().ray_address is None
    assert "greater than 0" in _rejects(WorkerSettings, "RECU_WORKER_LEASE_S", "0", monkeypatch)
    monkeypatch.setenv("RECU_WORKER_LEASE_S", "60")
    _rejects(WorkerSettings, "RECU_WORKER_POLL_S", "-1", monkeypatch)
    monkeypatch.setenv("RECU_WORKER_POLL_S", "1")
    _rejects(WorkerSettings, "RECU_WORKER_MAX_FAILURES", "-1", monkeypatch)
    monkeypatch.setenv("RECU_WORKER_MAX_FAILURES", "1")
    _rejects(WorkerSettings, "RECU_WORKER_CONCURRENCY", "0", monkeypatch)


def test_a_value_given_in_code_is_checked_and_named_by_its_variable() -> None:
    with pytest.raises(ValidationError, match="RECU_WORKER_CONCURRENCY"):
        WorkerSettings(concurrency=0)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        WorkerSettings(lease=30)  # a misspelt field is an error, not ignored


def test_client_settings_read_the_url_and_token(monkeypatch) -> None:
    from recu_cli.client import auth_headers

    assert ClientSettings().api_url == "http://127.0.0.1:8000"
    assert auth_headers() == {}
    monkeypatch.setenv("RECU_API_URL", "http://api:8000")
    monkeypatch.setenv("RECU_API_TOKEN", "recu_abc")
    assert ClientSettings().api_url == "http://api:8000"
    assert auth_headers() == {"Authorization": "Bearer recu_abc"}


def test_no_field_is_read_from_its_bare_name(monkeypatch) -> None:
    for variable in ("CONCURRENCY", "RECU_CONCURRENCY", "NAME", "RECU_NAME", "DATA_DIR"):
        monkeypatch.setenv(variable, "7")
    assert WorkerSettings().concurrency == 1
    assert WorkerSettings().name != "7"
    assert DataSettings().data_dir == Path("var/data")
