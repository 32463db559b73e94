"""Sweep commands of the client: submit a Ray Tune sweep, follow it as a live table, list,
cancel. HTTP only (``--api``/RECU_API_URL, ``--token``/RECU_API_TOKEN).

A searched field is given as ``PATH=KIND:ARGS``: ``tau.tau_s=uniform:0.85:0.94``,
``optimizer.lr=loguniform:0.01:0.3``, ``tau.tau_e=grid:0.97,0.99``,
``binary_options.clamp=choice:true,false``. Without any, the paper's advice is searched:
tau_s in [0.85, 0.94], tau_e in [0.96, 0.999]. ``--seeds 0,1,2`` runs every point once per
seed; ``sweep-status`` then shows each point's mean ± std over its seeds.
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
from recu_core.text import percent

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


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]; a usage error naming the form otherwise."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise usage_error(
            f"--seeds {text!r}: expected comma-separated integers, e.g. --seeds 0,1,2"
        ) from None


def spread_text(spread: dict[str, Any]) -> str:
    """An accuracy's mean ± sample std over seeds, in percent: ``91.3 ± 0.4%`` (the mean
    alone, ``91.3%``, from one seed; nothing before any)."""
    if spread["mean"] is None:
        return ""
    if spread["std"] is None:
        return percent(spread["mean"])
    return f"{100 * spread['mean']:.1f} ± {percent(spread['std'])}"


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
        for k, v in params.items()
    )


def groups_table(sweep: dict[str, Any]) -> Table:
    """One row per point of the space: its seeds, how many reported, and the mean ± std
    over them of the best and the latest test accuracy (``*``: the best group)."""
    metric = sweep["spec"]["metric"]
    columns = ["group", "params", "seeds", "reported", "best test acc", "last test acc"]
    if metric not in ("test_acc", "best_test_acc"):
        columns.append(metric)
    table = Table(*columns, title="seed groups (mean ± std over seeds)")
    for group in sweep["groups"]:
        row = [
            f"{group['index']}{' *' if group['best'] else ''}",
            _params_text(group["params"]) or "(the base job)",
            ",".join(map(str, group["seeds"])),
            f"{group['reported']}/{len(group['seeds'])}",
            spread_text(group["best_test_acc"]),
            spread_text(group["last_test_acc"]),
        ]
        if len(columns) > len(row):
            mean, std = group["metric"]["mean"], group["metric"]["std"]
            row.append(metric_text(metric, mean) + ("" if std is None else f" ± {std:.4f}"))
        table.add_row(*row)
    return table


def _table(sweep: dict[str, Any]) -> Group:
    metric = sweep["spec"]["metric"]
    epochs = sweep["spec"]["base"]["epochs"]
    table = Table("trial", "job", "state", "params", "epoch", metric, title=f"sweep {sweep['id']}")
    best_id = (sweep["best"] or {}).get("trial_id")
    for trial in sweep["trials"]:
        value = trial["metrics"][-1].get(metric) if trial["metrics"] else None
        table.add_row(
            f"{trial['index']}{' *' if trial['id'] == best_id else ''}",
            str(trial["id"]),
            trial["state"],
            _params_text(trial["params"]),
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
    if sweep.get("best_group") is not None:
        line += f"; best group {sweep['best_group']} (by its mean {metric} over seeds)"
    if sweep.get("pending_reason"):
        line += f" ({sweep['pending_reason']})"
    if sweep.get("groups"):
        return Group(table, groups_table(sweep), line)
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
    seeds: Annotated[
        str | None,
        typer.Option(
            help="seeds, e.g. 0,1,2: every point runs once per seed, and sweep-status "
            "shows each point's mean ± std over them (no ASHA unless --scheduler asha)."
        ),
    ] = None,
    rank_by: Annotated[
        str | None,
        typer.Option(
            help="rank_by: trial (the best single trial) or group-mean (the point with the "
            "best mean over its seeds; needs --seeds)."
        ),
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
            "seeds": parse_seeds(seeds) if seeds is not None else None,
            "rank_by": rank_by.replace("-", "_") if rank_by is not None else None,
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
        _announce(created, quiet=as_json)
        if wait:
            _follow(client, created["id"], quiet=as_json)


def _announce(sweep: dict[str, Any], *, quiet: bool) -> None:
    """``sweep ID queued: N trials`` (and its points x seeds), on stderr when ``quiet``."""
    line = f"sweep {sweep['id']} {sweep['state']}: {len(sweep['trials'])} trials"
    if sweep["groups"]:
        seeds = len(sweep["groups"][0]["seeds"])
        line += f" ({len(sweep['groups'])} point(s) x {seeds} seed(s))"
    (stderr if quiet else console).print(line, markup=False, highlight=False)


def submit_seeds(
    job: dict[str, Any],
    seeds: str,
    service: Service,
    headers: dict[str, str],
    *,
    wait: bool,
    as_json: bool,
) -> None:
    """``recu submit --seeds``: the job once per seed, as a sweep of seeds only (its
    queue fields the sweep's); says so and names the sweep, --wait follows it."""
    queued = {k: job[k] for k in QUEUE_FIELDS if k in job}
    base = {k: v for k, v in job.items() if k not in QUEUE_FIELDS}
    body = {"base": base, "seeds": parse_seeds(seeds), **queued}
    try:
        validate(SweepSpec, body, extra=QUEUE_FIELDS)
    except SpecError as err:
        raise usage_error(str(err)) from None
    with connected(service) as client:
        created = check(client.post("/sweeps", json=body, headers=headers))
        if as_json and not wait:
            print_json(created)
            return
        (stderr if as_json else console).print(
            f"--seeds: submitted a sweep of seeds only (the job once per seed); follow it "
            f"with 'recu sweep-status {created['id']}'",
            markup=False,
            highlight=False,
        )
        _announce(created, quiet=as_json)
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
    'logs' and 'checkpoints' take), and with seeds a table of its points' mean ± std over
    seeds; --wait follows it live (--json: the GET /sweeps/ID answer, with --wait once it
    has ended)."""
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
