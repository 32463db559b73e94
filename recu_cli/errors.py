"""How a command reports a mistake in what it was given: one line on stderr naming the
field and what is allowed, exit code 2, no traceback."""

from __future__ import annotations

from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from recu_core.settings import EnvSettings

stderr = Console(stderr=True, soft_wrap=True)  # one line per message: scripts read the last
S = TypeVar("S", bound=EnvSettings)


def usage_error(message: str) -> typer.Exit:
    """Print ``message`` as an error; the exit (code 2) for the caller to raise."""
    stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code=2)


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
