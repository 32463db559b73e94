"""/checkpoints: metadata, streamed download (safetensors, sha256 as ETag), and the
bit-packed ``.bnn`` export."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response, StreamingResponse

from recu_db.results import iter_checkpoint_bytes
from service.deps import CheckpointDep, ReadSessionMakerDep
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
def download_checkpoint(ckpt: CheckpointDep, makers: ReadSessionMakerDep) -> StreamingResponse:
    """The checkpoint's safetensors bytes, streamed chunk by chunk from the database."""
    filename = f"job{ckpt.job_id}-epoch{ckpt.epoch}.safetensors"
    return StreamingResponse(
        iter_checkpoint_bytes(makers, ckpt.id),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(ckpt.size),
            "ETag": f'"{ckpt.sha256}"',
            "X-Checkpoint-SHA256": ckpt.sha256,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


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
def export_checkpoint(ckpt: CheckpointDep, makers: ReadSessionMakerDep) -> Response:
    """The checkpoint as a ``.bnn`` file: binary layers as packed sign bits (docs/export.md).

    Packing needs torch, which never loads in the API's process: the stored bytes go to a
    temporary file and ``python -m recu_core.export`` packs them in a child process, after
    checking them against the stored sha256.
    """
    with tempfile.TemporaryDirectory(prefix="recu-export-") as tmp:
        source, target = Path(tmp) / "checkpoint.safetensors", Path(tmp) / "model.bnn"
        with open(source, "wb") as f:
            for chunk in iter_checkpoint_bytes(makers, ckpt.id):
                f.write(chunk)
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
