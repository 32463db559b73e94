"""The ``recu`` entry point: local commands from recu_core plus the service client."""

from recu_cli import client
from recu_core.cli import app

for command in (
    client.submit,
    client.jobs,
    client.status,
    client.logs,
    client.cancel,
    client.download,
):
    app.command()(command)

__all__ = ["app"]
