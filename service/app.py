"""The FastAPI application. Migrations run at start-up; the service never imports torch
or ray and never blocks on training: it only reads and writes the database."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recu_db.engine import make_read_sessionmaker, make_sessionmaker
from recu_db.migrate import migrated_engine
from recu_db.tokens import ensure_user
from service import errors
from service.auth import DEV_USER
from service.config import ServiceSettings
from service.dashboard import routes as dashboard
from service.deps import current_principal
from service.limits import AdmissionLimit, AllowHeader, BodySizeLimit, RatePace
from service.metrics import Metrics, RequestTimer
from service.responses import AUTHENTICATED
from service.routes import (
    checkpoints,
    compare,
    health,
    jobs,
    metrics,
    streams,
    sweep_streams,
    sweeps,
    whoami,
)
from service.token_cache import TokenCache

log = logging.getLogger("recu.service")

DOCS_ASSETS = "/docs-assets"
AUTH_DISABLED_WARNING = (
    "AUTHENTICATION IS DISABLED (RECU_AUTH_DISABLED=true): every request acts as the admin "
    "user 'local'. Never expose this service beyond this machine."
)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = migrated_engine(
            settings.database_url, **settings.pool(), pool_timeout=settings.db_pool_timeout_s
        )
        # one thread per admitted request (each runs one sync step at a time), plus a few
        # for the health checks, which bypass the admission limit
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = settings.max_in_flight() + len(AdmissionLimit.EXEMPT)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.read_sessionmaker = make_read_sessionmaker(engine)
        app.state.settings = settings
        app.state.token_cache = TokenCache(settings.auth_cache_s)
        app.state.dev_principal = None
        if settings.auth_disabled:
            log.warning(AUTH_DISABLED_WARNING)
            app.state.dev_principal = ensure_user(app.state.sessionmaker, DEV_USER, "admin")
        yield
        engine.dispose()

    # /docs and /redoc load Swagger UI and ReDoc from this service (the assets ship in the
    # fastapi-offline package under DOCS_ASSETS), not from a CDN: they render offline
    app = FastAPIOffline(
        title="recu",
        summary="Training service for ReCU binary neural networks.",
        version="0.1.0",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
    )
    errors.install(app)
    authenticated = [Depends(current_principal)]
    app.include_router(health.router)
    for router in (
        jobs.router,
        streams.router,
        checkpoints.router,
        compare.router,
        sweeps.router,
        sweep_streams.router,
        metrics.router,
        whoami.router,
    ):
        app.include_router(router, dependencies=authenticated, responses=AUTHENTICATED)
    app.include_router(dashboard.router)
    app.include_router(dashboard.root)
    app.mount("/ui/static", StaticFiles(directory=dashboard.STATIC), name="ui-static")
    app.openapi = lambda: deployment_openapi(app, settings)  # type: ignore[method-assign]
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        AllowHeader,
        methods_by_path={
            path: {method.upper() for method in item}
            for path, item in app.openapi()["paths"].items()
        },
    )
    app.add_middleware(
        AdmissionLimit, limit=settings.max_in_flight(), wait_s=settings.api_admission_wait_s
    )
    if settings.api_max_rate is not None:  # outside the admission limit: paced first
        app.add_middleware(
            RatePace, rate=settings.api_max_rate, wait_s=settings.api_admission_wait_s
        )
    if settings.auth_disabled:
        app.add_middleware(MarkAuthDisabled)
    # outermost: a request's time includes its wait for admission and pacing
    app.state.metrics = Metrics(lambda: app.state.read_sessionmaker)
    app.state.streams = streams.StreamSlots(settings.api_max_streams)
    app.add_middleware(RequestTimer, metrics=app.state.metrics)
    return app


def deployment_openapi(app: FastAPI, settings: ServiceSettings) -> dict[str, Any]:
    """The OpenAPI schema with this deployment's limits as the bounds the spec states
    (workers per job, GPUs per worker), so a client never sends what the schema allows
    and the settings refuse."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        resources = schema["components"]["schemas"]["Resources"]["properties"]
        resources["num_workers"]["maximum"] = settings.max_workers_per_job
        resources["gpus_per_worker"]["maximum"] = settings.max_gpus_per_worker
        app.openapi_schema = schema
    return app.openapi_schema


class MarkAuthDisabled:
    """Adds ``X-Recu-Auth: disabled`` to every response of a service running without auth."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-recu-auth", b"disabled")]
            await send(message)

        await self.app(scope, receive, marked if scope["type"] == "http" else send)
