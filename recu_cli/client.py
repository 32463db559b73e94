"""Client commands: talk to the service over HTTP only (``RECU_API_URL``)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
ApiOption = Annotated[
    str,
    typer.Option(
        "--api", envvar="RECU_API_URL", help="Service URL (env RECU_API_URL).", show_default=True
    ),
]
DEFAULT_API = "http://127.0.0.1:8000"
TERMINAL = {"succeeded", "failed", "cancelled"}


TOKEN_ENV = "RECU_API_TOKEN"


def auth_headers() -> dict[str, str]:
    """The bearer token from RECU_API_TOKEN, when set."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _client(api: str) -> httpx.Client:
    return httpx.Client(base_url=api, timeout=30, headers=auth_headers())


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


def _fail_connect(api: str, err: httpx.HTTPError) -> typer.Exit:
    console.print(f"[red]cannot reach the service at {api}:[/red] {err}")
    return typer.Exit(code=1)


def call(api: str, method: str, path: str, **kwargs: Any) -> Any:
    """One request's JSON body; a clear error and exit when it fails or is refused."""
    try:
        with _client(api) as client:
            return _check(client.request(method, path, **kwargs))
    except httpx.HTTPError as err:
        raise _fail_connect(api, err) from None


def submit(
    spec: Annotated[
        Path | None, typer.Option(help="A JSON job spec (the POST /jobs body).")
    ] = None,
    recipe: Annotated[
        str | None, typer.Option(help="An official run's preset (cifar10_resnet20, ...).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Overrides the spec's model.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Overrides the spec's dataset name.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Overrides the spec's epochs.")] = None,
    tau_s: Annotated[float | None, typer.Option()] = None,
    tau_e: Annotated[float | None, typer.Option()] = None,
    workers: Annotated[int | None, typer.Option(help="DDP workers.")] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end.")] = False,
    api: ApiOption = DEFAULT_API,
) -> None:
    """Submit a training job; with --wait, show its progress until it ends."""
    body: dict[str, Any] = json.loads(spec.read_text()) if spec else {}
    if recipe:
        body["recipe"] = recipe
    if model:
        body["model"] = model
    if dataset:
        body["dataset"] = {**body.get("dataset", {}), "name": dataset}
    if epochs is not None:
        body["epochs"] = epochs
    if tau_s is not None or tau_e is not None:
        tau = body.setdefault("tau", {})
        tau.update({k: v for k, v in (("tau_s", tau_s), ("tau_e", tau_e)) if v is not None})
    if workers is not None:
        body.setdefault("resources", {})["num_workers"] = workers
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    try:
        with _client(api) as client:
            job = _check(client.post("/jobs", json=body, headers=headers))
            console.print(f"job {job['id']} {job['state']}")
            if wait:
                _follow(client, job["id"], job["spec"]["epochs"])
    except httpx.HTTPError as err:
        raise _fail_connect(api, err) from None


def _follow(client: httpx.Client, job_id: int, epochs: int, poll_s: float = 1.0) -> None:
    progress = Progress(
        TextColumn(f"job {job_id}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("", total=epochs, status="")
        while True:
            job = _check(client.get(f"/jobs/{job_id}"))
            status = job["state"] + _accuracy(job)
            progress.update(task, completed=job["current_epoch"], status=status)
            if job["state"] in TERMINAL:
                break
            time.sleep(poll_s)
    console.print(
        f"job {job_id} {job['state']}{_accuracy(job)}"
        + (f": {job['error']}" if job["error"] else "")
    )
    if job["state"] != "succeeded":
        raise typer.Exit(code=1)


def _accuracy(job: dict[str, Any]) -> str:
    """'  best test acc B (epoch E), last L' once the job has a finished epoch."""
    if job["last_test_acc"] is None:
        return ""
    return (
        f"  best test acc {job['best_test_acc']:.2%} (epoch {job['best_epoch']}), "
        f"last {job['last_test_acc']:.2%}"
    )


def jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    api: ApiOption = DEFAULT_API,
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
    console.print(f"{page['total']} job(s)")


def status(job_id: int, api: ApiOption = DEFAULT_API) -> None:
    """One job as JSON: state, attempt, epoch, latest metrics, error."""
    console.print_json(json.dumps(call(api, "GET", f"/jobs/{job_id}")))


def logs(job_id: int, api: ApiOption = DEFAULT_API) -> None:
    """The job's training output."""
    for line in call(api, "GET", f"/jobs/{job_id}/logs", params={"limit": 10_000}):
        console.print(line["line"], markup=False, highlight=False)


def cancel(job_id: int, api: ApiOption = DEFAULT_API) -> None:
    """Cancel a job (queued: at once; running: at its next epoch)."""
    result = call(api, "POST", f"/jobs/{job_id}/cancel")
    console.print(f"job {result['id']} {result['state']}")


def download(
    checkpoint_id: int,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write it.")],
    api: ApiOption = DEFAULT_API,
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
