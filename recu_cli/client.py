"""Job commands of the client: submit, follow, list, show, logs, cancel, whoami. HTTP
only (``--api``/RECU_API_URL, ``--token``/RECU_API_TOKEN)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recu_cli.chains import (
    AfterOption,
    DistillFromOption,
    InitFromOption,
    TwoStageOption,
    chain_shortcuts,
    submit_two_stage,
    two_stages,
)
from recu_cli.connection import (
    ApiOption,
    JsonOption,
    Service,
    TokenOption,
    auth_headers,
    call,
    check,
    connected,
)
from recu_cli.errors import ExitCode, fail, stderr, usage_error, warn
from recu_cli.follow import FollowError, follow
from recu_cli.job_text import accuracy_text, best_and_last, code_line, job_summary
from recu_cli.manifest import recorded_manifest
from recu_cli.output import console, percent, print_json, print_line
from recu_cli.overrides import SpecError
from recu_cli.specs import SetOption, build_spec, validate
from recu_core.config import DatasetName, ModelName
from recu_core.jobspec import JobSpec
from recu_core.recipes import RecipeName

#: What POST /jobs and POST /sweeps take beside the spec: the queue's own fields.
QUEUE_FIELDS = ("priority", "max_attempts")
#: How a followed job may end for the follow to exit 0: succeeded, or (a trial) stopped
#: early by its sweep's scheduler.
ENDED_WELL = ("succeeded", "stopped")
UNSCHEDULABLE = ExitCode.UNSCHEDULABLE
EventHandler = Callable[[str, dict[str, Any]], bool]
SpecFileOption = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        "--config",
        help="A JSON (or .yaml) job spec, the POST /jobs body; the options below override it.",
    ),
]
RanksOption = Annotated[
    int | None,
    typer.Option(
        "--ranks",
        min=1,
        help="resources.num_workers: DDP ranks (training processes) of the job.",
    ),
]
#: ``--workers``, the old name of ``--ranks`` (``recu serve --workers`` counts server
#: processes): still taken, with a warning, and no longer shown.
OldRanksOption = Annotated[int | None, typer.Option("--workers", min=1, hidden=True)]

__all__ = ["QUEUE_FIELDS", "UNSCHEDULABLE", "auth_headers", "console", "unschedulable"]


def ranks_given(ranks: int | None, workers: int | None) -> int | None:
    """``--ranks``, or the deprecated ``--workers`` (saying so on stderr); not both."""
    if workers is None:
        return ranks
    if ranks is not None:
        raise usage_error("give --ranks only (--workers is its deprecated old name)")
    warn(
        "--workers is deprecated here: use --ranks (DDP ranks of the job; "
        "'recu serve --workers' is the number of API server processes)"
    )
    return workers


def submit(
    config: SpecFileOption = None,
    overrides: SetOption = None,
    recipe: Annotated[
        RecipeName | None, typer.Option(help="recipe: an official run's preset.")
    ] = None,
    model: Annotated[ModelName | None, typer.Option(help="model")] = None,
    dataset: Annotated[DatasetName | None, typer.Option(help="dataset.name")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs")] = None,
    tau_s: Annotated[float | None, typer.Option(help="tau.tau_s")] = None,
    tau_e: Annotated[float | None, typer.Option(help="tau.tau_e")] = None,
    ranks: RanksOption = None,
    old_workers: OldRanksOption = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    after: AfterOption = None,
    init_from: InitFromOption = None,
    distill_from: DistillFromOption = None,
    two_stage: TwoStageOption = False,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Seeds, e.g. 0,1,2: submit the job once per seed, as a sweep of seeds only "
            "(recu sweep-status shows its mean ± std); --wait follows that sweep."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Follow the job to its end, then name its checkpoints.")
    ] = False,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a training job; with --wait, show its progress until it ends. Every field
    of a job can be set with --spec and --set: the run's (as for 'recu train'),
    resources.*, checkpoint.*, priority and max_attempts. With --json, the job (with
    --wait: as it ended) is printed as JSON and the progress goes to stderr."""
    shortcuts = {
        "recipe": recipe,
        "model": model,
        "dataset.name": dataset,
        "epochs": epochs,
        "tau.tau_s": tau_s,
        "tau.tau_e": tau_e,
        "resources.num_workers": ranks_given(ranks, old_workers),
    }
    try:
        shortcuts |= chain_shortcuts(after, init_from, distill_from)
        body = build_spec(
            JobSpec, config=config, shortcuts=shortcuts, sets=overrides or (), extra=QUEUE_FIELDS
        )
        validate(JobSpec, body, extra=QUEUE_FIELDS)  # the API checks the queue's fields
        if two_stage and seeds is not None:
            raise SpecError("--two-stage and --seeds do not go together yet: submit one seed")
        stages = two_stages(body) if two_stage else None
    except SpecError as err:
        raise usage_error(str(err)) from None
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    service = Service.of(api, token)
    if stages is not None:
        submit_two_stage(*stages, service, headers, wait=wait, as_json=as_json)
        return
    if seeds is not None:  # a seed group is a sweep (sweep_client imports this module)
        from recu_cli.sweep_client import submit_seeds

        submit_seeds(body, seeds, service, headers, wait=wait, as_json=as_json)
        return
    with connected(service) as client:
        job = check(client.post("/jobs", json=body, headers=headers))
        if not wait:
            print_json(job) if as_json else print_line(f"job {job['id']} {job['state']}")
            return
        (stderr if as_json else console).print(f"job {job['id']} {job['state']}")
        ended = follow_job(client, job["id"], job["spec"]["epochs"], quiet=as_json)
        checkpoints = check(client.get(f"/jobs/{job['id']}/checkpoints"))
    if as_json:
        best, last = best_and_last(checkpoints)
        print_json({**ended, "best_checkpoint": best, "last_checkpoint": last})
    else:
        print_checkpoint_ids(job["id"], checkpoints)


def print_checkpoint_ids(job_id: int, checkpoints: list[dict[str, Any]]) -> None:
    """The job's best and last checkpoint ids and the command that downloads one."""
    best, last = best_and_last(checkpoints)
    if last is None:
        print_line(f"job {job_id} stored no checkpoint")
        return
    named = [f"last {last['id']} (epoch {last['epoch']})"]
    if best is not None:
        named.insert(0, f"best {best['id']} (epoch {best['epoch']})")
    print_line(f"checkpoints: {', '.join(named)}")
    which = "--best" if best is not None else "--last"
    print_line(f"download: recu download --job {job_id} {which}  (or recu download CKPT_ID)")


def unschedulable(item: dict[str, Any]) -> bool:
    """Whether the API says the queued job or sweep can never start on the cluster."""
    return (item.get("pending_reason") or "").startswith("unschedulable")


def _followed(client: httpx.Client, job_id: int, on_event: EventHandler) -> None:
    """``follow`` with the CLI's errors: a refused stream as the API's refusal, an API
    out of reach for too long as unreachable."""
    try:
        follow(client, job_id, on_event)
    except FollowError as err:
        if err.response is not None:
            check(err.response)
        raise fail(ExitCode.UNREACHABLE, str(err), label="stopped following") from None


def _follow_at(service: Service, job_id: int, on_event: EventHandler) -> None:
    """``_followed`` on a client of its own for ``service``."""
    with connected(service) as client:
        _followed(client, job_id, on_event)


def follow_job(
    client: httpx.Client, job_id: int, epochs: int, *, quiet: bool = False
) -> dict[str, Any]:
    """Show the job's progress until it ends (its live stream; re-attached after an API
    restart) and return the job as it ended; exit 1 unless it ended well, 3 at once when
    it can never start. On a terminal, a progress bar; piped, one line per epoch and
    state change; ``quiet``, those lines on stderr (stdout is for JSON). Ctrl-C stops
    following, not the job (and says so)."""
    job: dict[str, Any] = {}
    out = Console(stderr=True) if quiet else console
    live = out.is_terminal

    def say(text: str) -> None:
        out.print(text, highlight=False, markup=False, soft_wrap=True)

    progress = Progress(
        TextColumn(f"job {job_id}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=out,
        disable=not live,
    )

    def on_event(kind: str, data: dict[str, Any]) -> bool:
        nonlocal job
        if kind == "state":
            if not live and data["state"] != job.get("state"):
                say(f"job {job_id} {data['state']}")
            job = data
            status = job["state"] + (
                f" ({job['pending_reason']})" if job.get("pending_reason") else accuracy_text(job)
            )
            progress.update(task, completed=job["current_epoch"], status=status)
            return unschedulable(job)
        if kind == "epoch" and not live:
            acc = data["metrics"].get("test_acc")
            shown = "" if acc is None else f"  test acc {percent(acc)}"
            say(f"job {job_id} epoch {data['epoch']}/{epochs}{shown}")
        return False

    try:
        with progress:
            task = progress.add_task("", total=epochs, status="")
            _followed(client, job_id, on_event)
    except KeyboardInterrupt:
        stderr.print(
            f"stopped following; job {job_id} goes on ({job.get('state', 'submitted')}): "
            f"'recu status {job_id} --wait' follows it again, 'recu cancel {job_id}' stops it",
            markup=False,
        )
        raise typer.Exit(code=ExitCode.INTERRUPTED) from None
    if unschedulable(job):
        say(
            f"job {job_id} cannot start: {job['pending_reason']}. It stays queued "
            f"until the cluster grows; `recu cancel {job_id}` removes it."
        )
        raise typer.Exit(code=ExitCode.UNSCHEDULABLE)
    say(
        f"job {job_id} {job['state']}{accuracy_text(job)}"
        + (f": {job['error']}" if job["error"] else "")
    )
    if job["state"] not in ENDED_WELL:
        raise typer.Exit(code=ExitCode.FAILED)
    return job


def jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """List jobs, newest first (--json: the GET /jobs page)."""
    params: dict[str, Any] = {"limit": limit} | ({"state": state} if state else {})
    page = call(Service.of(api, token), "GET", "/jobs", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "state", "model", "dataset", "epoch", "best test acc", "last", "attempt")
    for job in page["items"]:
        best = job["best_test_acc"]
        table.add_row(
            str(job["id"]),
            job["state"],
            job["spec"]["model"],
            job["spec"]["dataset"]["name"],
            f"{job['current_epoch']}/{job['spec']['epochs']}",
            "" if best is None else f"{percent(best)} (epoch {job['best_epoch']})",
            percent(job["last_test_acc"]),
            str(job["attempt"]),
        )
    console.print(table)
    for job in page["items"]:
        if job.get("pending_reason"):
            print_line(f"job {job['id']} {job['state']}: {job['pending_reason']}")
    print_line(f"{page['total']} job(s)")


def status(
    job_id: int,
    wait: Annotated[
        bool, typer.Option(help="Wait until the job ends (its live stream), then print it.")
    ] = False,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """One job: state, attempt, epoch, accuracy, the code it ran (its manifest), error
    (--json: the GET /jobs/ID answer). With --wait, once it has ended (exit 1 unless it
    ended well, 3 when it can never start)."""
    service = Service.of(api, token)
    job: dict[str, Any] = {}
    if wait:

        def on_event(kind: str, data: dict[str, Any]) -> bool:
            nonlocal job
            if kind == "state":
                job = data
                return unschedulable(job)
            return False

        _follow_at(service, job_id, on_event)
    else:
        job = call(service, "GET", f"/jobs/{job_id}")
    if as_json:
        print_json(job)
    else:
        manifest = recorded_manifest(service, job_id)
        for line in job_summary(job):
            print_line(line)
        if manifest is not None:
            print_line(code_line(manifest))
    if unschedulable(job) and wait:
        raise typer.Exit(code=ExitCode.UNSCHEDULABLE)
    if wait and job["state"] not in ENDED_WELL:
        raise typer.Exit(code=ExitCode.FAILED)


def logs(
    job_id: int,
    follow_: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new lines until the job ends (re-attaches)."
        ),
    ] = False,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """The job's training output; with --follow, as it is written until the job ends.
    --json: the GET /jobs/ID/logs list; with --follow, one JSON object per line."""
    service = Service.of(api, token)
    if not follow_:
        lines = call(service, "GET", f"/jobs/{job_id}/logs", params={"limit": 10_000})
        if as_json:
            print_json(lines)
            return
        for line in lines:
            print_line(line["line"])
        return

    def on_event(kind: str, data: dict[str, Any]) -> bool:
        if kind == "log":
            if as_json:
                typer.echo(_compact(data))
            else:
                print_line(data["line"])
        return False

    _follow_at(service, job_id, on_event)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def whoami(as_json: JsonOption = False, api: ApiOption = None, token: TokenOption = None) -> None:
    """The user your token acts for on the service, and its role."""
    service = Service.of(api, token)
    me = call(service, "GET", "/whoami")
    if as_json:
        print_json(me)
        return
    role = "admin" if me["admin"] else "user"
    print_line(f"{me['user']} ({role}) at {service.url}")


def cancel(job_id: int, api: ApiOption = None, token: TokenOption = None) -> None:
    """Cancel a job (queued: at once; running: at its next epoch)."""
    result = call(Service.of(api, token), "POST", f"/jobs/{job_id}/cancel")
    print_line(f"job {result['id']} {result['state']}")
