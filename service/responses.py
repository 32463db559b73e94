"""Error responses as the OpenAPI spec documents them (the service answers exactly these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    detail: str


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorDetail, "description": description}


AUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: _error("No token, or an invalid or revoked one (WWW-Authenticate: Bearer)."),
    503: _error("The database is unreachable; retry after Retry-After seconds."),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _error("No such id, or one that belongs to another user."),
}
_SUBMIT: dict[int | str, dict[str, Any]] = {
    400: _error("The body is not JSON (not even UTF-8)."),
    413: _error("The request body is larger than RECU_MAX_REQUEST_BYTES."),
    429: _error("The user already has RECU_MAX_QUEUED_PER_USER queued jobs and sweeps."),
}


def submit_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """What a POST that queues work answers besides 201: the earlier item for a repeated
    Idempotency-Key (200), and the submit errors."""
    return {
        200: {"model": model, "description": "An earlier submit with this Idempotency-Key."},
        **_SUBMIT,
    }
