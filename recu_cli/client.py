"""Client commands: talk to the service over HTTP only (``RECU_API_URL``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recu_cli.errors import load_settings, usage_error
from recu_cli.follow import FollowError, follow
from recu_cli.overrides import SpecError
from recu_cli.specs import SetOption, build_spec, validate
from recu_core.config import DatasetName, ModelName
from recu_core.jobspec import JobSpec
from recu_core.recipes import RecipeName
from recu_core.settings import ClientSettings, env_name

console = Console()
ApiOption = Annotated[
    str | None,
    typer.Option("--api", help="Service URL (env RECU_API_URL, default http://127.0.0.1:8000)."),
]
#: What POST /jobs and POST /sweeps take beside the spec: the queue's own fields.
QUEUE_FIELDS = ("priority", "max_attempts")
# How a follow ends: 0 the job succeeded (or, a trial, was stopped early by its sweep's
# scheduler), 1 it failed or was cancelled, UNSCHEDULABLE it can never start on the cluster.
ENDED_WELL = ("succeeded", "stopped")
UNSCHEDULABLE = 3


TOKEN_ENV = env_name(ClientSettings, "api_token")
EventHandler = Callable[[str, dict[str, Any]], bool]


def api_url(api: str | None) -> str:
    """``--api`` when given, else RECU_API_URL, else the local default."""
    return api or load_settings(ClientSettings).api_url


def auth_headers() -> dict[str, str]:
    """The bearer token from RECU_API_TOKEN, when set."""
    token = (load_settings(ClientSettings).api_token or "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _client(api: str | None) -> httpx.Client:
    return httpx.Client(base_url=api_url(api), timeout=30, headers=auth_headers())


def _check(response: httpx.Response) -> Any:
    if response.status_code == 422:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
            for e in response.json()["detail"]
        )
        console.print(f"[red]rejected:[/red] {problems}")
        raise typer.Exit(code=2)
    if response.status_code == 401:
        console.print(
            f"[red]not authorised:[/red] {response.json().get('detail')}; set {TOKEN_ENV} to a "
            "token from `recu token create NAME` (run where the database is reachable)"
        )
        raise typer.Exit(code=1)
    if response.status_code >= 400:
        console.print(f"[red]error {response.status_code}:[/red] {response.text}")
        raise typer.Exit(code=1)
    return response.json()


def _fail_connect(api: str | None, err: httpx.HTTPError) -> typer.Exit:
    console.print(f"[red]cannot reach the service at {api_url(api)}:[/red] {err}")
    return typer.Exit(code=1)


def call(api: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One request's JSON body; a clear error and exit when it fails or is refused."""
    try:
        with _client(api) as client:
            return _check(client.request(method, path, **kwargs))
    except httpx.HTTPError as err:
        raise _fail_connect(api, err) from None


def submit(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "--spec",
            help="A JSON (or .yaml) job spec, the POST /jobs body; the options below override it.",
        ),
    ] = None,
    overrides: SetOption = None,
    recipe: Annotated[
        RecipeName | None, typer.Option(help="recipe: an official run's preset.")
    ] = None,
    model: Annotated[ModelName | None, typer.Option(help="model")] = None,
    dataset: Annotated[DatasetName | None, typer.Option(help="dataset.name")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs")] = None,
    tau_s: Annotated[float | None, typer.Option(help="tau.tau_s")] = None,
    tau_e: Annotated[float | None, typer.Option(help="tau.tau_e")] = None,
    workers: Annotated[int | None, typer.Option(help="resources.num_workers: DDP workers.")] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end.")] = False,
    api: ApiOption = None,
) -> None:
    """Submit a training job; with --wait, show its progress until it ends. Every field
    of a job can be set with --config and --set: the run's (as for `recu train`),
    resources.*, checkpoint.*, priority and max_attempts."""
    shortcuts = {
        "recipe": recipe,
        "model": model,
        "dataset.name": dataset,
        "epochs": epochs,
        "tau.tau_s": tau_s,
        "tau.tau_e": tau_e,
        "resources.num_workers": workers,
    }
    try:
        body = build_spec(
            JobSpec, config=config, shortcuts=shortcuts, sets=overrides or (), extra=QUEUE_FIELDS
        )
        validate(JobSpec, body, extra=QUEUE_FIELDS)  # the API checks the queue's fields
    except SpecError as err:
        raise usage_error(str(err)) from None
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    try:
        with _client(api) as client:
            job = _check(client.post("/jobs", json=body, headers=headers))
            console.print(f"job {job['id']} {job['state']}")
            if wait:
                _follow(client, job["id"], job["spec"]["epochs"])
    except httpx.HTTPError as err:
        raise _fail_connect(api, err) from None


def unschedulable(item: dict[str, Any]) -> bool:
    """Whether the API says the queued job or sweep can never start on the cluster."""
    return (item.get("pending_reason") or "").startswith("unschedulable")


def _followed(client: httpx.Client, job_id: int, on_event: EventHandler) -> None:
    """``follow`` with the CLI's errors: a refused stream as the API's error, an API out
    of reach for too long as a connection failure (exit 1)."""
    try:
        follow(client, job_id, on_event)
    except FollowError as err:
        if err.response is not None:
            _check(err.response)
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(code=1) from None


def _follow_at(api: str | None, job_id: int, on_event: EventHandler) -> None:
    """``_followed`` on a client of its own for the service at ``api``."""
    try:
        with _client(api) as client:
            _followed(client, job_id, on_event)
    except httpx.HTTPError as err:
        raise _fail_connect(api, err) from None


def _follow(client: httpx.Client, job_id: int, epochs: int) -> None:
    """Show the job's progress until it ends (its live stream; re-attached after an API
    restart); exit 1 unless it ended well, UNSCHEDULABLE (3) at once when it can never
    start. On a terminal, a progress bar; piped, one line per epoch and state change.
    Ctrl-C stops following, not the job (and says so)."""
    job: dict[str, Any] = {}
    live = console.is_terminal
    progress = Progress(
        TextColumn(f"job {job_id}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not live,
    )

    def on_event(kind: str, data: dict[str, Any]) -> bool:
        nonlocal job
        if kind == "state":
            if not live and data["state"] != job.get("state"):
                console.print(f"job {job_id} {data['state']}", highlight=False)
            job = data
            status = job["state"] + (
                f" ({job['pending_reason']})" if job.get("pending_reason") else _accuracy(job)
            )
            progress.update(task, completed=job["current_epoch"], status=status)
            return unschedulable(job)
        if kind == "epoch" and not live:
            metrics = data["metrics"]
            acc = metrics.get("test_acc")
            shown = "" if acc is None else f"  test acc {acc:.2%}"
            console.print(f"job {job_id} epoch {data['epoch']}/{epochs}{shown}", highlight=False)
        return False

    try:
        with progress:
            task = progress.add_task("", total=epochs, status="")
            _followed(client, job_id, on_event)
    except KeyboardInterrupt:
        console.print(
            f"stopped following; job {job_id} goes on ({job.get('state', 'submitted')}): "
            f"`recu status {job_id} --wait` follows it again, `recu cancel {job_id}` stops it"
        )
        raise typer.Exit(code=130) from None
    if unschedulable(job):
        console.print(
            f"[red]job {job_id} cannot start:[/red] {job['pending_reason']}. It stays queued "
            f"until the cluster grows; `recu cancel {job_id}` removes it."
        )
        raise typer.Exit(code=UNSCHEDULABLE)
    console.print(
        f"job {job_id} {job['state']}{_accuracy(job)}"
        + (f": {job['error']}" if job["error"] else "")
    )
    if job["state"] not in ENDED_WELL:
        raise typer.Exit(code=1)


def _accuracy(job: dict[str, Any]) -> str:
    """'  best test acc B (epoch E), last L' once the job has a finished epoch."""
    if job["last_test_acc"] is None:
        return ""
    last = f"{job['last_test_acc']:.2%}"
    if job["best_test_acc"] is None:
        return f"  last test acc {last}"
    return f"  best test acc {job['best_test_acc']:.2%} (epoch {job['best_epoch']}), last {last}"


def jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    api: ApiOption = None,
) -> None:
    """List jobs, newest first."""
    params: dict[str, Any] = {"limit": limit} | ({"state": state} if state else {})
    page = call(api, "GET", "/jobs", params=params)
    table = Table("id", "state", "model", "dataset", "epoch", "best test acc", "last", "attempt")
    for job in page["items"]:
        best, last = job["best_test_acc"], job["last_test_acc"]
        table.add_row(
            str(job["id"]),
            job["state"],
            job["spec"]["model"],
            job["spec"]["dataset"]["name"],
            f"{job['current_epoch']}/{job['spec']['epochs']}",
            "" if best is None else f"{best:.2%} (epoch {job['best_epoch']})",
            "" if last is None else f"{last:.2%}",
            str(job["attempt"]),
        )
    console.print(table)
    for job in page["items"]:
        if job.get("pending_reason"):
            console.print(f"job {job['id']} {job['state']}: {job['pending_reason']}")
    console.print(f"{page['total']} job(s)")


def status(
    job_id: int,
    wait: Annotated[
        bool, typer.Option(help="Wait until the job ends (its live stream), then print it.")
    ] = False,
    api: ApiOption = None,
) -> None:
    """One job as JSON: state, attempt, epoch, latest metrics, error. With --wait, once it
    has ended (exit 1 unless it ended well, 3 when it can never start)."""
    if not wait:
        console.print_json(json.dumps(call(api, "GET", f"/jobs/{job_id}")))
        return
    job: dict[str, Any] = {}

    def on_event(kind: str, data: dict[str, Any]) -> bool:
        nonlocal job
        if kind == "state":
            job = data
            return unschedulable(job)
        return False

    _follow_at(api, job_id, on_event)
    console.print_json(json.dumps(job))
    if unschedulable(job):
        raise typer.Exit(code=UNSCHEDULABLE)
    if job["state"] not in ENDED_WELL:
        raise typer.Exit(code=1)


def logs(
    job_id: int,
    follow_: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new lines until the job ends (re-attaches)."
        ),
    ] = False,
    api: ApiOption = None,
) -> None:
    """The job's training output; with --follow, as it is written until the job ends."""
    if not follow_:
        for line in call(api, "GET", f"/jobs/{job_id}/logs", params={"limit": 10_000}):
            console.print(line["line"], markup=False, highlight=False)
        return

    def on_event(kind: str, data: dict[str, Any]) -> bool:
        if kind == "log":
            console.print(data["line"], markup=False, highlight=False)
        return False

    _follow_at(api, job_id, on_event)


def whoami(api: ApiOption = None) -> None:
    """The user your token (RECU_API_TOKEN) acts for on the service, and its role."""
    me = call(api, "GET", "/whoami")
    role = "admin" if me["admin"] else "user"
    console.print(f"{me['user']} ({role}) at {api_url(api)}", highlight=False)


def cancel(job_id: int, api: ApiOption = None) -> None:
    """Cancel a job (queued: at once; running: at its next epoch)."""
    result = call(api, "POST", f"/jobs/{job_id}/cancel")
    console.print(f"job {result['id']} {result['state']}")


def download(
    checkpoint_id: int,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write it.")],
    api: ApiOption = None,
) -> None:
    """Download a checkpoint, verify its sha256, then move it into place (atomic)."""
    partial = output.with_name(f".{output.name}.part")
    digest = hashlib.sha256()
    try:
        with (
            _client(api) as client,
            client.stream("GET", f"/checkpoints/{checkpoint_id}/download") as r,
        ):
            if r.status_code >= 400:
                r.read()
                _check(r)
            expected = r.headers["x-checkpoint-sha256"]
            output.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as f:
                for chunk in r.iter_bytes():
                    digest.update(chunk)
                    f.write(chunk)
    except httpx.HTTPError as err:
        partial.unlink(missing_ok=True)
        raise _fail_connect(api, err) from None
    if digest.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        console.print(f"[red]sha256 mismatch:[/red] got {digest.hexdigest()}, expected {expected}")
        raise typer.Exit(code=1)
    os.replace(partial, output)
    console.print(f"checkpoint {checkpoint_id} -> {output} (sha256 {expected[:16]}...)")
