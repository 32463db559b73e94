"""The ``recu`` command line, the one app every command belongs to: local training and
checkpoint files (recu_cli.local), the service's client (client, sweep_client), API tokens
(tokens), and the API and queue worker processes (processes). ``python -m service``,
``python -m workers`` and ``python -m recu_core.export`` run commands of this app too."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
from typer.core import TyperGroup
from typer.main import get_command

from recu_cli import checkpoints, client, compare, local, manifest, processes, sweep_client
from recu_cli.help_text import help_text
from recu_cli.tokens import token_app

app = typer.Typer(no_args_is_help=True)
LOCAL, JOBS, SWEEPS, RUN = "Local", "The service: jobs", "The service: sweeps", "Run the service"
PANELS: tuple[tuple[str, tuple[Callable[..., None], ...]], ...] = (
    (LOCAL, (local.train, local.evaluate, local.export, local.inspect)),
    (
        JOBS,
        (
            client.submit,
            client.jobs,
            client.status,
            client.logs,
            checkpoints.checkpoints,
            checkpoints.download,
            manifest.manifest,
            client.cancel,
            compare.compare,
            client.whoami,
        ),
    ),
    (SWEEPS, (sweep_client.sweep, sweep_client.sweeps)),
    (RUN, (processes.serve, processes.worker)),
)
for panel, commands in PANELS:
    for command in commands:
        app.command(rich_help_panel=panel, help=help_text(command))(command)
for name, command in (
    ("sweep-status", sweep_client.sweep_status),
    ("sweep-cancel", sweep_client.sweep_cancel),
):
    app.command(name, rich_help_panel=SWEEPS, help=help_text(command))(command)
app.add_typer(token_app, name="token", rich_help_panel=RUN)


def installed_version() -> str:
    """The installed recu package's version ("unknown" when run from an uninstalled tree)."""
    try:
        return version("recu")
    except PackageNotFoundError:
        return "unknown"


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"recu {installed_version()}")
        raise typer.Exit()


@app.callback()
def main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """ReCU binary neural networks. Locally: train, evaluate, export, inspect. On the
    training service: submit, jobs, status, logs, checkpoints, download, manifest,
    cancel, compare, whoami; sweep, sweeps, sweep-status, sweep-cancel. Running it: serve,
    worker, token. Exit codes: 0 ok, 1 failed, 2 bad input, 3 unschedulable, 4 not
    found, 5 not authorised, 6 service unreachable, 7 timed out (README, Exit codes)."""


def run(command: str, prog_name: str) -> None:
    """Run one command of the app as a program of its own (``python -m workers`` is
    ``recu worker``), with the process's arguments."""
    group = get_command(app)
    if not isinstance(group, TyperGroup):  # an app of several commands is a group
        raise TypeError(f"the recu app is a {type(group).__name__}, not a group of commands")
    group.commands[command].main(args=sys.argv[1:], prog_name=prog_name)


__all__ = ["app", "run"]
