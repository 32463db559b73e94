"""Checkpoint commands of the client: list a job's checkpoints, download one (by its id,
or a job's best or last) as safetensors or as the packed 1-bit ``.bnn`` export, its
sha256 checked before it is moved into place."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from recu_cli.connection import (
    ApiOption,
    JsonOption,
    Service,
    TokenOption,
    call,
    check,
    connected,
    refusal,
)
from recu_cli.errors import ExitCode, fail, usage_error
from recu_cli.exports import EXPORT_TIMEOUT_S, fetch_export
from recu_cli.job_text import best_and_last
from recu_cli.output import console, percent, print_json, print_line


def size_text(size: int) -> str:
    """Bytes as people read them: '2.5 MB', '812 kB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def checkpoints(
    job_id: int,
    as_json: JsonOption = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """A job's stored checkpoints, oldest first, the best and last marked: the ids
    'recu download' takes (--json: the GET /jobs/ID/checkpoints list)."""
    stored = call(Service.of(api, token), "GET", f"/jobs/{job_id}/checkpoints")
    if as_json:
        print_json(stored)
        return
    best, last = best_and_last(stored)
    table = Table("id", "epoch", "attempt", "size", "test acc", "", title=f"job {job_id}")
    for ckpt in stored:
        marks = [m for m, c in (("best", best), ("last", last)) if c is ckpt]
        table.add_row(
            str(ckpt["id"]),
            str(ckpt["epoch"]),
            str(ckpt["attempt"]),
            size_text(ckpt["size"]),
            percent(ckpt["metrics"].get("test_acc")),
            ", ".join(marks),
        )
    console.print(table)
    print_line(f"{len(stored)} checkpoint(s)" if stored else f"job {job_id} has none stored yet")


def download(
    checkpoint_id: Annotated[
        int | None,
        typer.Argument(
            help="A checkpoint's id ('recu checkpoints JOB' lists them).", show_default=False
        ),
    ] = None,
    job: Annotated[
        int | None,
        typer.Option("--job", help="Instead of an id: this job's --best or --last checkpoint."),
    ] = None,
    best: Annotated[bool, typer.Option("--best", help="With --job: its best epoch's.")] = False,
    last: Annotated[bool, typer.Option("--last", help="With --job: its newest.")] = False,
    bnn: Annotated[
        bool,
        typer.Option(
            "--bnn",
            help="The packed 1-bit .bnn export instead (packed by an export job on a queue "
            "worker, waited for).",
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Where to write it; default the service's name for it (jobJ-epochE.safetensors "
            "or .bnn) in the current folder.",
        ),
    ] = None,
    export_timeout: Annotated[
        float, typer.Option(min=0, help="With --bnn: seconds to wait for the export job.")
    ] = EXPORT_TIMEOUT_S,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was written as JSON (path, sha256, ...).")
    ] = False,
    api: ApiOption = None,
    token: TokenOption = None,
) -> None:
    """Download a checkpoint, by its id or as a job's best or last (recu download 42;
    recu download --job 12 --best), as safetensors or --bnn; the sha256 is checked, then
    the file moved into place (never half-written)."""
    service = Service.of(api, token)
    with connected(service) as client:
        ckpt = _chosen(client, checkpoint_id, job, best=best, last=last)
        if bnn:
            answer = fetch_export(client, ckpt["id"], timeout_s=export_timeout)
            target = output or Path(_filename(answer, f"checkpoint{ckpt['id']}.bnn"))
            digest = _write(target, [answer.content], answer.headers["x-export-sha256"])
        else:
            with client.stream("GET", f"/checkpoints/{ckpt['id']}/download") as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise refusal(answer)
                target = output or Path(_filename(answer, f"checkpoint{ckpt['id']}.safetensors"))
                digest = _write(target, answer.iter_bytes(), answer.headers["x-checkpoint-sha256"])
    kind = ".bnn export of checkpoint" if bnn else "checkpoint"
    if as_json:
        print_json(
            {"path": str(target), "sha256": digest, "size": target.stat().st_size, **_about(ckpt)}
            | {"format": "bnn" if bnn else "safetensors"}
        )
    else:
        print_line(f"{kind} {ckpt['id']} -> {target} (sha256 {digest[:16]}...)")


def _about(ckpt: dict[str, Any]) -> dict[str, Any]:
    return {"checkpoint_id": ckpt["id"], "job_id": ckpt["job_id"], "epoch": ckpt["epoch"]}


def _chosen(
    client: httpx.Client, checkpoint_id: int | None, job: int | None, *, best: bool, last: bool
) -> dict[str, Any]:
    """The checkpoint the arguments name: an id, or --job with --best or --last."""
    if (checkpoint_id is None) == (job is None):
        raise usage_error(
            "name one checkpoint: its id (recu download 42) or a job's "
            "(recu download --job 12 --best, or --last)"
        )
    if checkpoint_id is not None:
        if best or last:
            raise usage_error("--best and --last go with --job JOB_ID, not a checkpoint id")
        return dict(check(client.get(f"/checkpoints/{checkpoint_id}")))
    if best == last:
        raise usage_error(f"--job {job}: say which checkpoint, --best or --last")
    stored = check(client.get(f"/jobs/{job}/checkpoints"))
    best_one, last_one = best_and_last(stored)
    picked = best_one if best else last_one
    if picked is None:
        which = "best" if best else "any"
        raise fail(ExitCode.NOT_FOUND, f"job {job} has no {which} checkpoint stored yet")
    return dict(picked)


FILENAME = re.compile(r'filename="([^"/\\]+)"')


def _filename(answer: httpx.Response, fallback: str) -> str:
    """The file name the service gives (Content-Disposition), else ``fallback``."""
    found = FILENAME.search(answer.headers.get("content-disposition", ""))
    return found.group(1) if found else fallback


def _write(target: Path, chunks: Iterable[bytes], expected: str) -> str:
    """Write ``chunks`` to ``target`` through a partial file, moved into place only when
    their sha256 is ``expected``; returns it. Exits FAILED on a mismatch."""
    partial = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(partial, "wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                f.write(chunk)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != expected:
        partial.unlink(missing_ok=True)
        raise fail(
            ExitCode.FAILED,
            f"got {digest.hexdigest()}, expected {expected}; nothing written",
            label="sha256 mismatch",
        )
    os.replace(partial, target)
    return expected
