"""One local Ray instance (2 CPUs) for every end-to-end test that needs one: starting Ray
costs seconds, and each test checks for itself that its jobs gave their CPUs back. And the
service the CLI tests talk to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from recu_cli.local_service import LocalService, local_service
from recu_db.engine import make_engine, make_sessionmaker
from tests.helpers import private_postgres  # noqa: F401  (a server the test stops and starts)


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="ray is installed by `make install`")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@dataclass(frozen=True)
class CliService:
    """A running service, its database's write sessions and URL."""

    running: LocalService
    db: Any
    url: str


@pytest.fixture
def cli_service(tmp_path, monkeypatch) -> Iterator[CliService]:
    """`python -m service` on a free port with its own SQLite file, and its database; the
    commands find the service in RECU_API_URL and the token in RECU_API_TOKEN."""
    url = f"sqlite:///{tmp_path / 'api.db'}"
    with local_service(tmp_path / "service", database_url=url, workers=0) as running:
        monkeypatch.setenv("RECU_API_URL", running.api)
        monkeypatch.setenv("RECU_API_TOKEN", running.token)
        engine = make_engine(url)
        yield CliService(running, make_sessionmaker(engine), url)
        engine.dispose()
