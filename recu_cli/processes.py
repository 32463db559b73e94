"""The commands that start the service's long-running processes: the API (``recu serve``,
also ``python -m service``) and a queue worker (``recu worker``, also ``python -m workers``).

``serve --workers N`` runs N server processes on the one port; each runs the migrations at
start-up (serialised, see recu_db/migrations/env.py) and has its own database pool
(``RECU_DB_POOL_SIZE`` + ``RECU_DB_MAX_OVERFLOW``): on PostgreSQL keep N x (pool size +
overflow) under the server's max_connections.
"""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

import typer

from recu_cli.errors import load_settings
from recu_cli.help_text import env_note
from recu_core.settings import ServiceSettings, WorkerSettings, env_name


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="API server processes on the one port (not training ranks: those are "
            "'recu submit --ranks') " + env_note(env_name(ServiceSettings, "api_workers"), "1"),
        ),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            help="One log line per request "
            + env_note(env_name(ServiceSettings, "api_access_log"), "on"),
        ),
    ] = None,
) -> None:
    """Serve the REST API and the dashboard (uvicorn), on the database RECU_DATABASE_URL
    names (default a SQLite file)."""
    import uvicorn

    settings = load_settings(ServiceSettings)  # every process reads them again: fail here
    if settings.api_nice and hasattr(os, "nice"):
        os.nice(settings.api_nice)  # the server processes inherit it
    processes = workers or settings.api_workers
    if processes > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # /metrics from any process sums every process's request histograms
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recu-metrics-")
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=processes,
        access_log=settings.api_access_log if access_log is None else access_log,
    )


def worker(
    exit_when_idle: Annotated[bool, typer.Option(help="Stop when the queue is empty.")] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Jobs run at once at most, as resources allow "
            + env_note(env_name(WorkerSettings, "concurrency"), "1"),
        ),
    ] = None,
) -> None:
    """Consume the job queue on Ray (the cluster RAY_ADDRESS names, else a local Ray
    instance)."""
    from workers.loop import serve as consume

    given = {"concurrency": concurrency} if concurrency is not None else {}
    consume(load_settings(WorkerSettings, **given), exit_when_idle=exit_when_idle)
