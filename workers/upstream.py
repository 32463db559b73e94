"""What a chained job takes from the jobs it depends on: the weights it starts from
(``init_from``) and its distillation teacher (``distill``), each one of that job's stored
checkpoints (its best epoch's or its last), read from the database and checked against
its sha256. The queue started this job only once they succeeded; a chosen checkpoint that
is missing (pruned, or none stored) fails the job with a message that says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Taken:
    """A checkpoint of another job, written to ``path``, and what the job's log says of it."""

    path: Path
    line: str


def fetch(db: queue.Db, job_id: int, which: str, path: Path) -> Taken:
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
    line = (
        f"job {job_id}'s {which} checkpoint {chosen.id} "
        f"(epoch {chosen.epoch}, sha256 {chosen.sha256[:12]})"
    )
    return Taken(path, line)


def init_weights(db: queue.Db, spec: JobSpec, workdir: Path) -> Taken | None:
    """The checkpoint whose weights start the job (None without ``init_from``)."""
    if spec.init_from is None:
        return None
    source = spec.init_from
    taken = fetch(db, source.job_id, source.checkpoint, workdir / "init.safetensors")
    return Taken(taken.path, f"starting from the weights of {taken.line}")


@dataclass(frozen=True)
class Teacher:
    """A loaded distillation teacher and what the job's log says of it."""

    distillation: Distillation
    line: str


def teacher(db: queue.Db, spec: JobSpec, workdir: Path) -> Teacher | None:
    """The job's distillation teacher, loaded (None without ``distill``)."""
    if spec.distill is None:
        return None
    how = spec.distill
    taken = fetch(db, how.teacher_job_id, how.checkpoint, workdir / "teacher.safetensors")
    model = load_trained_model(taken.path)
    return Teacher(
        Distillation(model, how.temperature, how.weight),
        f"distilling from {taken.line}, temperature {how.temperature:g}, weight {how.weight:g}",
    )
