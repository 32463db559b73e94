"""The ``recu`` entry point: local commands from recu_core, the service client, and the
commands that start the API and a queue worker."""

from typing import Annotated

import typer

from recu_cli import client, sweep_client
from recu_cli.tokens import token_app
from recu_core.cli import app

for command in (
    client.submit,
    client.jobs,
    client.status,
    client.logs,
    client.cancel,
    client.download,
    sweep_client.sweep,
    sweep_client.sweeps,
):
    app.command()(command)
app.command("sweep-status")(sweep_client.sweep_status)
app.command("sweep-cancel")(sweep_client.sweep_cancel)
app.add_typer(token_app, name="token")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Server processes (default: RECU_API_WORKERS, else 1)."),
    ] = None,
) -> None:
    """Serve the REST API and the dashboard (uvicorn; RECU_DATABASE_URL, default a SQLite
    file); the same server as ``python -m service``."""
    import os

    import uvicorn

    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers or int(os.environ.get("RECU_API_WORKERS", "1")),
    )


@app.command()
def worker(
    exit_when_idle: Annotated[bool, typer.Option(help="Stop when the queue is empty.")] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Jobs run at once at most, as resources allow [env RECU_WORKER_CONCURRENCY, 1].",
        ),
    ] = None,
) -> None:
    """Consume the job queue on Ray (RAY_ADDRESS, or a local Ray instance)."""
    import dataclasses

    from workers.loop import WorkerSettings
    from workers.loop import serve as consume

    settings = WorkerSettings()
    if concurrency is not None:
        settings = dataclasses.replace(settings, concurrency=concurrency)
    consume(settings, exit_when_idle=exit_when_idle)


__all__ = ["app"]
