"""An in-process API client (TestClient, real database) that carries a real bearer token
of a real user, as every client of the service must."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from recu_db.tokens import create_token
from service.app import create_app
from service.config import ServiceSettings


def token_for(client: TestClient, user: str, *, admin: bool = False) -> str:
    """A new token for ``user`` (created when missing) on the app's database."""
    makers = client.app.state.sessionmaker  # type: ignore[attr-defined]
    return create_token(makers, f"{user}-{uuid.uuid4().hex[:8]}", user=user, admin=admin)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def api_client(settings: ServiceSettings, user: str = "alice") -> Iterator[TestClient]:
    """A started app and a client sending ``user``'s token on every request."""
    with TestClient(create_app(settings)) as client:
        client.headers.update(bearer(token_for(client, user)))
        yield client
