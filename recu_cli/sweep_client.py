"""Sweep commands of the client: submit a Ray Tune sweep, follow it as a live table, list,
cancel. HTTP only (``--api``/RECU_API_URL, ``--token``/RECU_API_TOKEN).

A searched field is given as ``PATH=KIND:ARGS``: ``tau.tau_s=uniform:0.85:0.94``,
``optimizer.lr=loguniform:0.01:0.3``, ``tau.tau_e=grid:0.97,0.99``,
``binary_options.clamp=choice:true,false``. Without any, the paper's advice is searched:
tau_s in [0.85, 0.94], tau_e in [0.96, 0.999].
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from recu_cli.client import (
    QUEUE_FIELDS,
    OldRanksOption,
    RanksOption,
    ranks_given,
    unschedulable,
)
from recu_cli.connection import (
    ApiOption,
    JsonOption,
    Service,
    TokenOption,
    call,
    check,
    connected,
)
from recu_cli.errors import ExitCode, stderr, usage_error
from recu_cli.output import console, metric_text, print_json, print_line
from recu_cli.overrides import SpecError, parse_value
from recu_cli.specs import SetOption, build_spec, load_config, validate
from recu_core.sweepspec import SweepSpec

PAPER_SPACE = {
    "tau.tau_s": {"kind": "uniform", "low": 0.85, "high": 0.94},
    "tau.tau_e": {"kind": "uniform", "low": 0.96, "high": 0.999},
}


def parse_dimension(text: str) -> tuple[str, dict[str, Any]]:
    """``PATH=KIND:ARGS`` -> (path, dimension); BadParameter naming the allowed forms."""
    path, sep, rest = text.partition("=")
    kind, _, args = rest.partition(":")
    forms = "PATH=uniform:LOW:HIGH, PATH=loguniform:LOW:HIGH, PATH=grid:V1,V2, PATH=choice:V1,V2"
    if not sep or not path:
        raise typer.BadParameter(f"{text!r}: expected one of {forms}")
    if kind in ("uniform", "loguniform"):
        low, _, high = args.partition(":")
        try:
            return path, {"kind": kind, "low": float(low), "high": float(high)}
        except ValueError:
            raise typer.BadParameter(f"{text!r}: {kind} needs LOW:HIGH numbers") from None
    if kind in ("grid", "choice"):
        return path, {"kind": kind, "values": [parse_value(v) for v in args.split(",") if v]}
    raise typer.BadParameter(f"{text!r}: unknown kind {kind!r}; expected one of {forms}")


def _table(sweep: dict[str, Any]) -> Group:
    metric = sweep["spec"]["metric"]
    epochs = sweep["spec"]["base"]["epochs"]
    table = Table("trial", "job", "state", "params", "epoch", metric, title=f"sweep {sweep['id']}")
    best_id = (sweep["best"] or {}).get("trial_id")
    for trial in sweep["trials"]:
        value = trial["metrics"][-1].get(metric) if trial["metrics"] else None
        params = ", ".join(
            f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
            for k, v in trial["params"].items()
        )
        table.add_row(
            f"{trial['index']}{' *' if trial['id'] == best_id else ''}",
            str(trial["id"]),
            trial["state"],
            params,
            f"{trial['current_epoch']}/{epochs}",
            metric_text(metric, value),
        )
    counts = ", ".join(f"{n} {state}" for state, n in sorted(sweep["trial_counts"].items()))
    best = sweep["best"]
    line = f"{sweep['state']}: {counts}" + (
        f"; best trial {best['index']} (job {best['trial_id']}, {metric} "
        f"{metric_text(metric, best['value'])})"
        if best
        else ""
    )
    if sweep.get("pending_reason"):
        line += f" ({sweep['pending_reason']})"
    return Group(table, line)


def sweep(
    config: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            "--config",
            help="A JSON (or .yaml) sweep, the POST /sweeps body; the options below override it.",
        ),
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option(help="A JSON (or .yaml) job spec for every trial (the sweep's base)."),
    ] = None,
    overrides: SetOption = None,
    search_space: Annotated[
        list[str] | None,
        typer.Option("--space", help="A searched field, PATH=KIND:ARGS; repeat for several."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="base.model")] = None,
    dataset: Annotated[str | None, typer.Option(help="base.dataset.name")] = None,
    epochs: Annotated[int | None, typer.Option(help="base.epochs: epochs per trial.")] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            help="num_samples: the number of trials; with grid fields in the space, trials "
            "per grid point (trials = grid points x samples)."
        ),
    ] = None,
    search: Annotated[str | None, typer.Option(help="search: random or grid.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="scheduler.kind: asha or none.")] = None,
    metric: Annotated[str | None, typer.Option(help="metric: test_acc, test_loss, ...")] = None,
    mode: Annotated[str | None, typer.Option(help="mode: max or min.")] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="max_concurrent_trials: trials at once.")
    ] = None,
    ranks: RanksOption = None,
    old_workers: OldRanksOption = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option(help="Follow the sweep with a live table.")] = False,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a sweep of trials over the tau schedule (and more); --wait follows it live.
    Every field of a sweep can be set with --spec and --set: base.* (the trials' job, as
    for 'recu submit'), space.PATH, num_samples, scheduler.*, seed, priority, ... With
    --json, the sweep (with --wait: as it ended) is printed as JSON."""
    try:
        shortcuts = {
            "base": load_config(base, "--base") if base is not None else None,
            "base.model": model,
            "base.dataset.name": dataset,
            "base.epochs": epochs,
            "base.resources.num_workers": ranks_given(ranks, old_workers),
            "space": dict(parse_dimension(s) for s in search_space) if search_space else None,
            "num_samples": samples,
            "search": search,
            "scheduler.kind": scheduler,
            "metric": metric,
            "mode": mode,
            "max_concurrent_trials": max_concurrent,
        }
        body = build_spec(
            SweepSpec, config=config, shortcuts=shortcuts, sets=overrides or (), extra=QUEUE_FIELDS
        )
        body.setdefault("base", {})
        body.setdefault("space", PAPER_SPACE)
        validate(SweepSpec, body, extra=QUEUE_FIELDS)  # the API checks the queue's fields
    except SpecError as err:
        raise usage_error(str(err)) from None
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with connected(Service.of(api, token)) as client:
        created = check(client.post("/sweeps", json=body, headers=headers))
        if as_json and not wait:
            print_json(created)
            return
        line = f"sweep {created['id']} {created['state']}: {len(created['trials'])} trials"
        (stderr if as_json else console).print(line, markup=False, highlight=False)
        if wait:
            _follow(client, created["id"], quiet=as_json)


def _follow(
    client: httpx.Client, sweep_id: int, poll_s: float = 1.0, *, quiet: bool = False
) -> None:
    """Show the sweep as a live table until it ends (``quiet``: nothing until then, then
    the sweep as JSON); exit 1 unless it succeeded, 3 when it can never start."""
    params = {"max_points": 1}  # the table needs each trial's latest epoch only
    view = check(client.get(f"/sweeps/{sweep_id}", params=params))
    out = stderr if quiet else console
    with Live(_table(view), console=out, refresh_per_second=4, transient=quiet) as live:
        while not view["terminal"] and not unschedulable(view):
            time.sleep(poll_s)
            view = check(client.get(f"/sweeps/{sweep_id}", params=params))
            live.update(_table(view))
    if quiet:
        print_json(view)
    if unschedulable(view):
        out.print(
            f"sweep {sweep_id} cannot start: {view['pending_reason']}. It stays "
            f"queued until the cluster grows; 'recu sweep-cancel {sweep_id}' removes it.",
            markup=False,
        )
        raise typer.Exit(code=ExitCode.UNSCHEDULABLE)
    if view["state"] != "succeeded":
        out.print(
            f"sweep {sweep_id} {view['state']}" + (f": {view['error']}" if view["error"] else ""),
            markup=False,
        )
        raise typer.Exit(code=ExitCode.FAILED)
    best = view["best"]
    if best and best["checkpoint"] and not quiet:
        print_line(
            f"best: trial {best['index']} (job {best['trial_id']}) {best['params']}; download "
            f"with: recu download {best['checkpoint']['id']} (or --job {best['trial_id']} --best)"
        )


def sweeps(
    state: Annotated[str | None, typer.Option(help="Only sweeps in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """List sweeps, newest first, with their trial counts and best trial (--json: the
    GET /sweeps page)."""
    params: dict[str, Any] = {"limit": limit} | ({"state": state} if state else {})
    page = call(Service.of(api, token), "GET", "/sweeps", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "state", "searched", "trials", "best")
    for item in page["items"]:
        best = item["best"]
        table.add_row(
            str(item["id"]),
            item["state"],
            ", ".join(item["spec"]["space"]),
            ", ".join(f"{n} {s}" for s, n in sorted(item["trial_counts"].items())),
            ""
            if not best
            else f"trial {best['index']} (job {best['trial_id']}): "
            f"{metric_text(item['spec']['metric'], best['value'])}",
        )
    console.print(table)
    for item in page["items"]:
        if item.get("pending_reason"):
            print_line(f"sweep {item['id']} {item['state']}: {item['pending_reason']}")
    print_line(f"{page['total']} sweep(s)")


def sweep_status(
    sweep_id: int,
    wait: Annotated[bool, typer.Option(help="Follow it until it ends.")] = False,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """One sweep as a table of its trials, each with its job id (what 'recu status',
    'logs' and 'checkpoints' take); --wait follows it live (--json: the GET /sweeps/ID
    answer, with --wait once it has ended)."""
    service = Service.of(api, token)
    if not wait:
        view = call(service, "GET", f"/sweeps/{sweep_id}", params={"max_points": 1})
        print_json(view) if as_json else console.print(_table(view))
        return
    with connected(service) as client:
        _follow(client, sweep_id, quiet=as_json)


def sweep_cancel(sweep_id: int, api: ApiOption = None, token: TokenOption = None) -> None:
    """Cancel a sweep and every trial of it."""
    result = call(Service.of(api, token), "POST", f"/sweeps/{sweep_id}/cancel")
    print_line(f"sweep {result['id']} {result['state']}")
