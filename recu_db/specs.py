"""Stored job JSON back to its type: a ``JobSpec`` for a job or trial, a ``SweepSpec`` for a
sweep, an ``ExportSpec`` for an export. The queue parses once per claim; everything after
reads typed fields."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from recu_core.jobspec import ExportSpec, JobSpec
from recu_core.sweepspec import SweepSpec
from recu_db.states import JobKind


class InvalidStoredSpecError(ValueError):
    """A stored spec this version of the code cannot read."""


Spec = JobSpec | SweepSpec | ExportSpec


def parse_spec(kind: JobKind, stored: dict[str, Any]) -> Spec:
    """The typed spec of a queue row of ``kind``; InvalidStoredSpecError names the field."""
    model: type[JobSpec] | type[SweepSpec] | type[ExportSpec] = JobSpec
    if kind == JobKind.SWEEP:
        model = SweepSpec
    elif kind == JobKind.EXPORT:
        model = ExportSpec
    try:
        return model.model_validate(stored)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "spec"
        raise InvalidStoredSpecError(
            f"the stored {kind} spec cannot be read by this version: {where}: {first['msg']}"
        ) from err
