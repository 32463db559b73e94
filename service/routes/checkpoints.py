"""/checkpoints: metadata and streamed download (safetensors, sha256 as ETag)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from recu_db.results import iter_checkpoint_bytes
from service.deps import CheckpointDep, ReadSessionMakerDep
from service.schemas import CheckpointPublic

router = APIRouter(prefix="/checkpoints", tags=["checkpoints"])


@router.get("/{checkpoint_id}", response_model=CheckpointPublic)
def get_checkpoint(ckpt: CheckpointDep) -> CheckpointPublic:
    return CheckpointPublic.model_validate(ckpt, from_attributes=True)


@router.get(
    "/{checkpoint_id}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
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
