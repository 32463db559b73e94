"""Help text shared by the commands. Typer renders help as rich markup, where a bare
``[env ...]`` is read as a style tag and vanishes: brackets are escaped here, once."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from rich.markup import escape


def env_note(variable: str, default: str | None = None) -> str:
    """``[env: VARIABLE; default D]`` for the end of an option's help, shown as written."""
    shown = f"env: {variable}" + (f"; default {default}" if default is not None else "")
    return escape(f"[{shown}]")


def help_text(command: Callable[..., Any]) -> str:
    """``command``'s docstring with each paragraph on one line: rich help keeps a single
    newline as a line break, which lands mid-sentence once the text is wrapped."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)
