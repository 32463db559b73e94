"""Error responses as the OpenAPI spec documents them (the service answers exactly these)."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel


class ErrorDetail(BaseModel):
    detail: str


def error_description(description: str) -> dict[str, Any]:
    """An error answer's OpenAPI entry: ``{"detail": ...}`` and what it means."""
    return {"model": ErrorDetail, "description": description}


AUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: error_description("No token, or an invalid or revoked one (WWW-Authenticate: Bearer)."),
    503: error_description("The database is unreachable; retry after Retry-After seconds."),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error_description("No such id, or one that belongs to another user."),
}
_SUBMIT: dict[int | str, dict[str, Any]] = {
    400: error_description("The body is not JSON (not even UTF-8)."),
    413: error_description("The request body is larger than RECU_MAX_REQUEST_BYTES."),
    404: error_description(
        "A job named by after, init_from or distill does not exist (or is not yours)."
    ),
    409: error_description(
        "A job named by after, init_from or distill is not a training job, or has failed, "
        "been cancelled or stopped: it can never succeed."
    ),
    429: error_description("The user already has RECU_MAX_QUEUED_PER_USER queued jobs and sweeps."),
}


def submit_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """What a POST that queues work answers besides 201: the earlier item for a repeated
    Idempotency-Key (200), and the submit errors."""
    return {
        200: {"model": model, "description": "An earlier submit with this Idempotency-Key."},
        **_SUBMIT,
    }


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as its JSON, serialised once by pydantic-core. A route that returns this
    (its ``response_model`` still documents the body) skips FastAPI's pass over a returned
    model: dump it to a dict, validate that against the response model again, serialise
    it; for a job's view (its stored spec included) that was most of what the py-spy
    profile put under FastAPI (docs/benchmarks.md)."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
