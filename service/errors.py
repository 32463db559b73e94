"""Errors the service answers itself: the database out of reach (server down, connection
dropped, SQLite busy past its timeout) is 503 with Retry-After, never a 500 or a dropped
connection; a full queue is 429 naming the cap."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

from recu_db.queue import QueueFullError

log = logging.getLogger("recu.service")
RETRY_AFTER_S = 5


def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "the database is unavailable; retry shortly"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def queue_full(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=429)


def install(app: FastAPI) -> None:
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(InterfaceError, database_unavailable)
    app.add_exception_handler(QueueFullError, queue_full)
