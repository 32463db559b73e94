"""The FastAPI application. Migrations run at start-up; the service never imports torch
or ray and never blocks on training: it only reads and writes the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from recu_db.engine import make_engine, make_read_sessionmaker, make_sessionmaker
from recu_db.migrate import upgrade
from service.config import ServiceSettings
from service.routes import checkpoints, health, jobs, sweeps


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.database_url.startswith("sqlite:///"):
            Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        engine = make_engine(settings.database_url)
        upgrade(engine)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.read_sessionmaker = make_read_sessionmaker(engine)
        app.state.settings = settings
        yield
        engine.dispose()

    app = FastAPI(
        title="recu",
        summary="Training service for ReCU binary neural networks.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(checkpoints.router)
    app.include_router(sweeps.router)
    return app
