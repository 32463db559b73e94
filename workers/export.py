"""An export job: pack a stored checkpoint as a ``.bnn`` file and store it in ``exports``.

The checkpoint is read from one snapshot and checked against its sha256
(``results.read_checkpoint``) into a temporary file, packed by
``recu_core.export.bnn_file.export_checkpoint`` inline in the worker process (packing is
a single pass over the weights, seconds on a CPU: a Ray task would add a round trip for
no gain), and stored with the lease's fence. A checkpoint that cannot be packed (not a
binary model, corrupt bytes, gone) fails the job as the user's error: not retried.
"""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path

from recu_db import reads, results
from recu_db.queue import Db, Lease
from workers.stops import JobStoppedError
from workers.trainer import TrainingCodeError


def run_export(lease: Lease, db: Db) -> None:
    """Pack and store the export of ``lease``'s checkpoint; TrainingCodeError when it
    cannot be exported, JobStoppedError when the lease is no longer ours."""
    export(lease, db, lease.export.checkpoint_id)


def export_kept(lease: Lease, db: Db) -> None:
    """Pack every checkpoint the training job of ``lease`` keeps (its spec's
    ``checkpoint.export``), after its last epoch: no later store prunes them."""
    with db() as session:
        kept = [ckpt.id for ckpt in reads.job_checkpoints(session, lease.job_id)]
    for checkpoint_id in kept:
        export(lease, db, checkpoint_id)


def export(lease: Lease, db: Db, checkpoint_id: int) -> None:
    """Pack checkpoint ``checkpoint_id`` and store it fenced by ``lease``."""
    with tempfile.TemporaryDirectory(prefix="recu-export-") as tmp:
        source = Path(tmp) / "checkpoint.safetensors"
        try:
            with open(source, "wb") as f:
                ckpt = results.read_checkpoint(db, checkpoint_id, f)
        except results.CheckpointCorruptError as err:
            raise TrainingCodeError(f"cannot export checkpoint {checkpoint_id}: {err}", "") from err
        if ckpt is None:
            raise TrainingCodeError(f"cannot export checkpoint {checkpoint_id}: it is gone", "")
        from recu_core.export.bnn_file import export_checkpoint

        try:
            data = export_checkpoint(source, expected_sha256=ckpt.sha256)
        except Exception as err:  # not a binary model, unreadable bytes: the user's input
            raise TrainingCodeError(
                f"cannot export checkpoint {checkpoint_id}: {type(err).__name__}: {err}",
                "".join(traceback.format_exception(err)),
            ) from err
    if results.store_export(db, lease, checkpoint_id, data) is None:
        raise JobStoppedError(f"export job {lease.job_id} is no longer ours")
