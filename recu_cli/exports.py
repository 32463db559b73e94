"""A checkpoint's packed ``.bnn`` export from the service: ``POST /checkpoints/{id}/export``
queues an export job (a worker packs it), then ``GET /checkpoints/{id}/export`` answers
202 until it is stored and 200 with the bytes after. The client waits, politely (the
answer's Retry-After) and up to a deadline, saying on stderr what it waits for."""

from __future__ import annotations

import time

import httpx
import typer

from recu_cli.connection import check, refusal
from recu_cli.errors import ExitCode, fail, stderr

#: How long ``recu download --bnn`` waits for an export job by default: a queued one
#: waits for a free worker, and packing a large network takes a while on a CPU.
EXPORT_TIMEOUT_S = 1800.0
#: The longest pause between two looks, whatever Retry-After says.
MAX_POLL_S = 5.0


def fetch_export(
    client: httpx.Client, checkpoint_id: int, *, timeout_s: float = EXPORT_TIMEOUT_S
) -> httpx.Response:
    """The 200 answer holding checkpoint ``checkpoint_id``'s ``.bnn`` bytes, its export
    job queued when there is none; exits TIMED_OUT past ``timeout_s`` (the job goes on),
    FAILED when the export job fails."""
    path = f"/checkpoints/{checkpoint_id}/export"
    requested = client.post(path)
    if requested.status_code not in (200, 202):
        raise refusal(requested)
    job_id: int | None = requested.json().get("job_id")
    deadline = time.monotonic() + timeout_s
    shown: str | None = None
    while True:
        answer = client.get(path)
        if answer.status_code == 200:
            return answer
        if answer.status_code != 202:
            raise _export_ended(client, job_id, answer)
        pending = answer.json()
        job_id = pending["job_id"]
        if pending["state"] != shown:
            shown = pending["state"]
            stderr.print(
                f"waiting for export job {job_id} ({shown}) to pack checkpoint "
                f"{checkpoint_id}; a queue worker runs it",
                markup=False,
                highlight=False,
            )
        if time.monotonic() > deadline:
            raise fail(
                ExitCode.TIMED_OUT,
                f"export job {job_id} is still {shown} after {timeout_s:.0f} s; it goes on: "
                f"run the same command again later ('recu status {job_id}' shows it)",
                label="timed out",
            )
        time.sleep(_pause(answer))


def _pause(answer: httpx.Response) -> float:
    try:
        asked = float(answer.headers.get("Retry-After", MAX_POLL_S))
    except ValueError:
        asked = MAX_POLL_S
    return min(max(asked, 0.5), MAX_POLL_S)


def _export_ended(client: httpx.Client, job_id: int | None, answer: httpx.Response) -> typer.Exit:
    """The exit for an export that is neither stored nor pending: its job failed (the
    job's error), or the checkpoint is gone (the answer's refusal)."""
    if answer.status_code == 404 and job_id is not None:
        job = check(client.get(f"/jobs/{job_id}"))
        if job["state"] != "succeeded":
            return fail(
                ExitCode.FAILED,
                f"export job {job_id} {job['state']}: {job['error'] or 'no error recorded'}",
                label="export failed",
            )
    return refusal(answer)
