"""The ``recu`` command line, the one app every command belongs to: local training and
checkpoint files (recu_cli.local), the service's client (client, sweep_client), API tokens
(tokens), and the API and queue worker processes (processes). ``python -m service``,
``python -m workers`` and ``python -m recu_core.export`` run commands of this app too."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
from typer.core import TyperGroup
from typer.main import get_command

from recu_cli import client, local, processes, sweep_client
from recu_cli.tokens import token_app

app = typer.Typer(
    help="ReCU binary neural networks: train, evaluate, export locally; run the training "
    "service and use it.",
    no_args_is_help=True,
)
for command in (
    local.train,
    local.evaluate,
    local.export,
    local.inspect,
    client.submit,
    client.jobs,
    client.status,
    client.logs,
    client.cancel,
    client.download,
    client.whoami,
    sweep_client.sweep,
    sweep_client.sweeps,
    processes.serve,
    processes.worker,
):
    app.command()(command)
app.command("sweep-status")(sweep_client.sweep_status)
app.command("sweep-cancel")(sweep_client.sweep_cancel)
app.add_typer(token_app, name="token")


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
    """ReCU binary neural networks: train, evaluate, export locally; run the training
    service and use it."""


def run(command: str, prog_name: str) -> None:
    """Run one command of the app as a program of its own (``python -m workers`` is
    ``recu worker``), with the process's arguments."""
    group = get_command(app)
    if not isinstance(group, TyperGroup):  # an app of several commands is a group
        raise TypeError(f"the recu app is a {type(group).__name__}, not a group of commands")
    group.commands[command].main(args=sys.argv[1:], prog_name=prog_name)


__all__ = ["app", "run"]
