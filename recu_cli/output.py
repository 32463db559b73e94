"""What the client commands print on stdout: tables and lines for people, or with
``--json`` one JSON document and nothing else; accuracies always as ``91.3%``."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

from recu_core.text import percent

console = Console()


def metric_text(name: str, value: float | None) -> str:
    """A metric's value: accuracies (``*_acc``) as percentages, others to 4 decimals."""
    if value is None:
        return ""
    return percent(value) if name.endswith("_acc") else f"{value:.4f}"


def print_json(value: Any) -> None:
    """``value`` as one JSON document on stdout (no colours, no wrapping)."""
    typer.echo(json.dumps(value, indent=2))


def print_line(text: str) -> None:
    """One plain line on stdout (no markup, no highlighting)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)
