"""What a chained job takes from the jobs it depends on: the weights it starts from
(``init_from``) and its distillation teacher (``distill``), each one of that job's stored
checkpoints (its best epoch's or its last), read from the database and checked against
its sha256. The queue started this job only once they succeeded; a chosen checkpoint that
is missing (pruned, or none stored) fails the job with a message that says so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from recu_core.distill import Distillation
from recu_core.jobspec import JobSpec
from recu_core.train import load_trained_model
from recu_db import queue, reads, results
from recu_db.models import Checkpoint


class UpstreamError(ValueError):
    """A job this one depends on has no usable checkpoint of the kind it names."""


def write_checkpoint(db: queue.Db, ckpt: Checkpoint, path: Path) -> bool:
    """Write the checkpoint's bytes to ``path``; whether they match its sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in results.iter_checkpoint_bytes(db, ckpt.id):
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest() == ckpt.sha256


def fetch(db: queue.Db, job_id: int, which: str, path: Path) -> Path:
    """Job ``job_id``'s best or last checkpoint, written to ``path``."""
    with db() as session:
        _stored, best, last = reads.best_and_last(session, job_id)
    chosen = best if which == "best" else last
    if chosen is None:
        raise UpstreamError(f"job {job_id} has no stored {which} checkpoint to take")
    if not write_checkpoint(db, chosen, path):
        raise UpstreamError(
            f"checkpoint {chosen.id} ({which}) of job {job_id} fails its sha256 check"
        )
    return path


def init_weights(db: queue.Db, spec: JobSpec, workdir: Path) -> Path | None:
    """The checkpoint file whose weights start the job (None without ``init_from``)."""
    if spec.init_from is None:
        return None
    source = spec.init_from
    return fetch(db, source.job_id, source.checkpoint, workdir / "init.safetensors")


def teacher(db: queue.Db, spec: JobSpec, workdir: Path) -> Distillation | None:
    """The job's distillation teacher, loaded (None without ``distill``)."""
    if spec.distill is None:
        return None
    how = spec.distill
    path = fetch(db, how.teacher_job_id, how.checkpoint, workdir / "teacher.safetensors")
    return Distillation(load_trained_model(path), how.temperature, how.weight)
