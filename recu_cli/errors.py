"""How a command ends when it cannot do what it was asked: one line on stderr (never on
stdout, which holds only the answer, so ``--json`` output stays parseable), no traceback,
and an exit code from ``ExitCode``: the one table of them (README, "Exit codes")."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from recu_core.settings import EnvSettings

stderr = Console(stderr=True, soft_wrap=True)  # one line per message: scripts read the last
S = TypeVar("S", bound=EnvSettings)


class ExitCode(IntEnum):
    """What a ``recu`` command's exit status means."""

    OK = 0
    #: The work ended badly: a followed job or sweep failed or was cancelled, a download
    #: did not match its sha256, an export job failed, nothing was there to revoke.
    FAILED = 1
    #: Bad input: an unknown option (click's own), a malformed spec file, a value the
    #: service rejected (422).
    USAGE = 2
    #: The job (or sweep) can never start on this cluster: no node could place it.
    UNSCHEDULABLE = 3
    #: No such job, sweep or checkpoint (or another user's), or nothing recorded yet.
    NOT_FOUND = 4
    #: No token, or one the service refuses (401, 403).
    AUTH = 5
    #: The service cannot be reached, or answers 5xx.
    UNREACHABLE = 6
    #: Waited past the deadline (a .bnn export still queued or running); the work goes on.
    TIMED_OUT = 7
    #: Ctrl-C while following: the job goes on.
    INTERRUPTED = 130


def fail(code: ExitCode, message: str, *, label: str = "error") -> typer.Exit:
    """Print ``label: message`` on stderr; the exit (``code``) for the caller to raise."""
    stderr.print(f"[red]{escape(label)}:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code=int(code))


def usage_error(message: str) -> typer.Exit:
    """Print ``message`` as an error in what the command was given; the exit (code 2)."""
    return fail(ExitCode.USAGE, message)


def warn(message: str) -> None:
    """A line on stderr that changes nothing: a deprecated option, a fallback."""
    stderr.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def validation_message(err: ValidationError) -> str:
    """``path.to.field: problem; ...`` for every error of ``err``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in err.errors()
    )


def load_settings(settings: type[S], **values: Any) -> S:
    """``settings`` from the environment (``values`` win); an error naming the variable."""
    try:
        return settings(**values)
    except ValidationError as err:
        raise usage_error(f"invalid settings: {validation_message(err)}") from None
