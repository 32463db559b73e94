"""/checkpoints: metadata, streamed download (safetensors, sha256 as ETag), and the
bit-packed ``.bnn`` export (packed by an export job in a worker, stored in ``exports``).

The download reads the checkpoint whole, from one database snapshot, into a temporary file (in
memory up to SPOOL_BYTES) before the status line is sent (``results.read_checkpoint``),
so a checkpoint pruned by keep-K while it is requested is either a complete body with
the right sha256 (the snapshot predates the prune) or a 404 with no body (it was gone
before): never a truncated 200 or a failed export. The database connection is held
only for the read, never while a slow client drains the body."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from recu_db import queue
from recu_db.models import Checkpoint, Export, Job
from recu_db.results import CHUNK_BYTES, read_checkpoint, read_export
from service.auth import owner_filter
from service.deps import (
    CheckpointDep,
    Id,
    PrincipalDep,
    ReadSessionMakerDep,
    SessionDep,
    SessionMakerDep,
)
from service.responses import NOT_FOUND
from service.schemas import CheckpointPublic, ExportPending, ExportPublic

router = APIRouter(prefix="/checkpoints", tags=["checkpoints"])


@router.get("/{checkpoint_id}", response_model=CheckpointPublic, responses=NOT_FOUND)
def get_checkpoint(ckpt: CheckpointDep) -> CheckpointPublic:
    return CheckpointPublic.model_validate(ckpt, from_attributes=True)


@router.get(
    "/{checkpoint_id}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **NOT_FOUND},
)
def download_checkpoint(
    checkpoint_id: Id, principal: PrincipalDep, makers: ReadSessionMakerDep
) -> StreamingResponse:
    """The checkpoint's safetensors bytes, read from one snapshot, then streamed."""
    # closed by the response once sent (or here, on an error)
    body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, prefix="recu-download-")  # noqa: SIM115
    try:
        ckpt = _read(makers, checkpoint_id, principal, body)
    except BaseException:
        body.close()
        raise
    body.seek(0)
    filename = f"job{ckpt.job_id}-epoch{ckpt.epoch}.safetensors"
    return StreamingResponse(
        _chunks(body),
        background=BackgroundTask(body.close),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(ckpt.size),
            "ETag": f'"{ckpt.sha256}"',
            "X-Checkpoint-SHA256": ckpt.sha256,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


SPOOL_BYTES = 8 * CHUNK_BYTES  # a download body larger than this is spooled to disk


def _read(
    makers: ReadSessionMakerDep, checkpoint_id: int, principal: PrincipalDep, into: IO[bytes]
) -> Checkpoint:
    """The checkpoint, its bytes written to ``into``; 404 when it is not (or no longer)
    there, or is another user's."""
    ckpt = read_checkpoint(makers, checkpoint_id, into, user_id=owner_filter(principal))
    if ckpt is None:
        raise HTTPException(status_code=404, detail=f"no checkpoint {checkpoint_id}")
    return ckpt


def _chunks(body: IO[bytes]) -> Iterator[bytes]:
    while chunk := body.read(CHUNK_BYTES):
        yield chunk


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": ExportPending, "description": "an export job is queued or running"},
    **NOT_FOUND,
}


@router.post(
    "/{checkpoint_id}/export",
    response_model=ExportPublic,
    responses=EXPORT_RESPONSES,
)
def request_export(
    ckpt: CheckpointDep, session: SessionDep, makers: SessionMakerDep
) -> ExportPublic | JSONResponse:
    """Pack the checkpoint as a ``.bnn`` file (docs/export.md) in a worker: 200 with the
    stored export, else 202 with the export job (queued now, or already queued or
    running: concurrent requests share one job). A failed job lets a later request queue
    a new one."""
    job = session.get(Job, ckpt.job_id)
    owner = job.user_id if job is not None else None
    session.close()  # the read session's connection is not held while writing
    stored, pending, _ = queue.submit_export(makers, ckpt.id, user_id=owner)
    if stored is not None:
        return _export_public(stored)
    assert pending is not None
    return _pending(ckpt.id, pending)


def _export_public(stored: Export) -> ExportPublic:
    return ExportPublic(
        checkpoint_id=stored.checkpoint_id,
        sha256=stored.sha256,
        size=stored.size,
        download_url=f"/checkpoints/{stored.checkpoint_id}/export",
    )


def _pending(checkpoint_id: int, job: Job) -> JSONResponse:
    body = ExportPending(checkpoint_id=checkpoint_id, job_id=job.id, state=job.state)
    return JSONResponse(body.model_dump(), status_code=202, headers={"Retry-After": "5"})


@router.get(
    "/{checkpoint_id}/export",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **EXPORT_RESPONSES},
)
def export_checkpoint(
    ckpt: CheckpointDep, session: SessionDep, makers: ReadSessionMakerDep
) -> Response:
    """The checkpoint's stored ``.bnn`` export: binary layers as packed sign bits
    (docs/export.md), made by an export job (``POST /checkpoints/{id}/export``); 202 with
    the job while it is queued or running, 404 when there is none."""
    pending = queue.active_export(session, ckpt.id)
    session.close()
    stored = read_export(makers, ckpt.id)
    if stored is None:
        if pending is not None:
            return _pending(ckpt.id, pending)
        raise HTTPException(
            status_code=404,
            detail=f"checkpoint {ckpt.id} has no export: POST /checkpoints/{ckpt.id}/export "
            "queues one",
        )
    return Response(
        stored.data,
        media_type="application/octet-stream",
        headers={
            "ETag": f'"{stored.sha256}"',
            "X-Export-SHA256": stored.sha256,
            "X-Source-Checkpoint-SHA256": ckpt.sha256,
            "Content-Disposition": f'attachment; filename="job{ckpt.job_id}-epoch{ckpt.epoch}.bnn"',
        },
    )
