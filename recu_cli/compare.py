"""``recu compare ID ID ...``: jobs side by side from GET /compare: the configuration
fields that differ between them, and each job's best and latest test accuracy."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from recu_cli.connection import ApiOption, JsonOption, Service, TokenOption, call
from recu_cli.output import console, print_json, print_line
from recu_core.text import percent


def _value(value: Any) -> str:
    """A spec value as written in a spec file (strings bare, the rest as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def compare(
    job_ids: Annotated[
        list[int], typer.Argument(help="2 to 10 job ids (training jobs or sweep trials).")
    ],
    max_points: Annotated[
        int, typer.Option(min=1, max=100_000, help="Epochs per job in --json, at most.")
    ] = 500,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Compare jobs: the configuration fields whose values differ between them, then one
    row per job with its best and latest test accuracy (--json: the GET /compare answer,
    with every job's epochs)."""
    params = {"jobs": ",".join(map(str, job_ids)), "max_points": max_points}
    answer = call(Service.of(api, token), "GET", "/compare", params=params)
    if as_json:
        print_json(answer)
        return
    jobs = answer["jobs"]
    if answer["differences"]:
        differences = Table("field", *(f"job {j['id']}" for j in jobs), title="differences")
        for difference in answer["differences"]:
            differences.add_row(difference["path"], *map(_value, difference["values"]))
        console.print(differences)
    else:
        print_line("the jobs' configurations are the same")
    table = Table("job", "kind", "state", "epoch", "best test acc", "best epoch", "last test acc")
    for job in jobs:
        table.add_row(
            str(job["id"]),
            job["kind"],
            job["state"],
            f"{job['current_epoch']}/{job['spec']['epochs']}",
            percent(job["best_test_acc"]),
            "" if job["best_epoch"] is None else str(job["best_epoch"]),
            percent(job["last_test_acc"]),
        )
    console.print(table)
