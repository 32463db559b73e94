"""Errors the service answers itself: the database out of reach (server down, connection
dropped, SQLite busy past its timeout) is 503 with Retry-After, never a 500 or a dropped
connection; a full queue is 429 naming the cap; an Idempotency-Key reused with another
body is 422 naming the key; and every 422 is JSON, whatever the input it reports (a
non-finite number, a lone surrogate, bytes, a huge string)."""

from __future__ import annotations

import logging
import math
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

from recu_db.queue import IdempotencyKeyReusedError, QueueFullError

log = logging.getLogger("recu.service")
RETRY_AFTER_S = 5


def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "the database is unavailable; retry shortly"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
    """No pooled connection came free within RECU_DB_POOL_TIMEOUT_S (SQLAlchemy's pool
    ``TimeoutError``): the process is saturated, not broken; 503, retry shortly. Raised
    at checkout, before any statement, so a POST answered this stored nothing."""
    log.warning("no database connection free during %s %s", request.method, request.url.path)
    return JSONResponse(
        {"detail": "the service is busy (no database connection free); retry shortly"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def queue_full(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=429)


def idempotency_key_reused(request: Request, exc: Exception) -> JSONResponse:
    """422, as the IETF draft "The Idempotency-Key HTTP Header Field" answers a key reused
    with a different payload: the request is well formed, but it cannot be the retry it
    claims to be. Nothing is stored; the first request's job is untouched."""
    assert isinstance(exc, IdempotencyKeyReusedError)
    error = {
        "type": "idempotency_key_reused",
        "loc": ["header", "Idempotency-Key"],
        "msg": str(exc),
        "input": json_safe(exc.key),
    }
    return JSONResponse({"detail": [error]}, status_code=422)


MAX_ECHO_CHARS = 200  # of a refused input quoted back in a 422
_MAX_ECHO_ITEMS = 20
_MAX_ECHO_DEPTH = 4


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as plain, finite, valid-Unicode JSON: a non-finite float as its string
    ("inf", "nan"), a string without lone surrogates (escaped as ``\\udXXX``) and cut
    to MAX_ECHO_CHARS, containers cut to a few items and levels, anything else (bytes,
    exceptions, odd objects) as its cut repr."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):  # a huge one is cut like a string
        return value if abs(value) < 10**30 else _cut(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cut(_valid_unicode(value))
    if depth >= _MAX_ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_ECHO_ITEMS]
        return {str(json_safe(str(k))): json_safe(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [json_safe(v, depth + 1) for v in list(value)[:_MAX_ECHO_ITEMS]]
    if isinstance(value, Exception):  # a ctx "error": its message
        return _cut(_valid_unicode(str(value)))
    return _cut(_valid_unicode(repr(value)))


def _valid_unicode(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cut(text: str) -> str:
    if len(text) <= MAX_ECHO_CHARS:
        return text
    return f"{text[:MAX_ECHO_CHARS]}... ({len(text)} characters)"


def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body (``detail``: the errors, each with type, loc, msg, input and
    maybe ctx), made JSON-safe: the input it echoes may be what made the request invalid."""
    assert isinstance(exc, RequestValidationError)
    detail = []
    for error in exc.errors():
        safe: dict[str, Any] = {
            "type": json_safe(error.get("type", "value_error")),
            "loc": [json_safe(part) for part in error.get("loc", ())],
            "msg": _valid_unicode(str(error.get("msg", ""))),  # ours: bounded, never cut
        }
        if "input" in error:
            safe["input"] = json_safe(error["input"])
        if "ctx" in error:
            safe["ctx"] = {str(k): json_safe(v) for k, v in dict(error["ctx"]).items()}
        detail.append(safe)
    return JSONResponse({"detail": detail}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(InterfaceError, database_unavailable)
    app.add_exception_handler(QueueFullError, queue_full)
    app.add_exception_handler(IdempotencyKeyReusedError, idempotency_key_reused)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(sqlalchemy.exc.TimeoutError, pool_exhausted)
