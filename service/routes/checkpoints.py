"""/checkpoints: metadata, streamed download (safetensors, sha256 as ETag), and the
bit-packed ``.bnn`` export.

Both read the checkpoint whole, from one database snapshot, into a temporary file (in
memory up to SPOOL_BYTES) before the status line is sent (``results.read_checkpoint``),
so a checkpoint pruned by keep-K while it is requested is either a complete body with
the right sha256 (the snapshot predates the prune) or a 404 with no body (it was gone
before): never a truncated 200 or a failed export. The database connection is held
only for the read, never while a slow client drains the body."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from recu_db.models import Checkpoint
from recu_db.results import CHUNK_BYTES, read_checkpoint
from service.auth import owner_filter
from service.deps import CheckpointDep, Id, PrincipalDep, ReadSessionMakerDep
from service.responses import NOT_FOUND
from service.schemas import CheckpointPublic

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


EXPORT_TIMEOUT_S = 600


@router.get(
    "/{checkpoint_id}/export",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        422: {"description": "the checkpoint cannot be exported (e.g. not a binary model)"},
        503: {"description": "packing took longer than the export timeout (Retry-After)"},
        **NOT_FOUND,
    },
)
def export_checkpoint(
    checkpoint_id: Id, principal: PrincipalDep, makers: ReadSessionMakerDep
) -> Response:
    """The checkpoint as a ``.bnn`` file: binary layers as packed sign bits (docs/export.md).

    Packing needs torch, which never loads in the API's process: the stored bytes go to a
    temporary file and ``python -m recu_core.export`` packs them in a child process, after
    checking them against the stored sha256.
    """
    with tempfile.TemporaryDirectory(prefix="recu-export-") as tmp:
        source, target = Path(tmp) / "checkpoint.safetensors", Path(tmp) / "model.bnn"
        with open(source, "wb") as f:
            ckpt = _read(makers, checkpoint_id, principal, f)
        try:
            done = _pack(source, target, ckpt.sha256)
        except subprocess.TimeoutExpired as err:  # the child is killed by subprocess.run
            raise HTTPException(
                status_code=503,
                detail=f"exporting checkpoint {ckpt.id} took over {EXPORT_TIMEOUT_S:.0f} s",
                headers={"Retry-After": "60"},
            ) from err
        if done.returncode != 0:
            reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
            raise HTTPException(
                status_code=422, detail=f"cannot export checkpoint {ckpt.id}: {reason}"
            )
        data = target.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "ETag": f'"{sha}"',
            "X-Export-SHA256": sha,
            "X-Source-Checkpoint-SHA256": ckpt.sha256,
            "Content-Disposition": f'attachment; filename="job{ckpt.job_id}-epoch{ckpt.epoch}.bnn"',
        },
    )


def _pack(source: Path, target: Path, sha256: str) -> subprocess.CompletedProcess[str]:
    """``python -m recu_core.export`` in a child process (torch loads there, not here)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "recu_core.export",
            str(source),
            "-o",
            str(target),
            "--expected-sha256",
            sha256,
        ],
        capture_output=True,
        text=True,
        timeout=EXPORT_TIMEOUT_S,
    )
