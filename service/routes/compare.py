"""/compare: jobs side by side, their curves and where their configurations differ.

``GET /compare?jobs=1,2,3`` takes 2 to 10 distinct ids (a training job or a sweep trial
each, visible to the caller: anyone else's is a 404 naming it, as for ``GET /jobs/{id}``).
The differences are computed on the jobs' resolved specs flattened to dotted paths
(nested objects walked, lists compared whole): a path is listed when its values are not
all equal, with the value of each job. The ``jobs`` parameter is a comma-separated list
(OpenAPI ``style: form, explode: false``), parsed here so that every malformed list is a
422 saying what is allowed.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from recu_core.jobspec import JobSpec
from recu_db import reads
from recu_db.models import Job
from recu_db.states import JobKind, is_terminal
from service.auth import can_see
from service.deps import PrincipalDep, SessionDep
from service.responses import NOT_FOUND
from service.schemas import ComparedJob, Comparison, ConfigDifference, EpochMetrics

router = APIRouter(tags=["jobs"])

MIN_JOBS, MAX_JOBS = 2, 10
MAX_ID = 2**31 - 1
#: The kinds of job that train (and so have curves and a job spec to compare).
COMPARABLE = (JobKind.TRAIN, JobKind.TRIAL)
ALLOWED = (
    f"jobs is a comma-separated list of {MIN_JOBS} to {MAX_JOBS} distinct job ids "
    f"(integers from 1 to {MAX_ID}), e.g. jobs=1,2,3"
)
JOBS_PARAMETER: dict[str, Any] = {
    "name": "jobs",
    "in": "query",
    "required": True,
    "style": "form",
    "explode": False,
    "description": f"The jobs to compare: {ALLOWED}.",
    "schema": {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "minItems": MIN_JOBS,
        "maxItems": MAX_JOBS,
        "uniqueItems": True,
    },
}


def _refused(problem: str, text: str) -> RequestValidationError:
    error = {"type": "value_error", "loc": ("query", "jobs"), "msg": f"{problem}; {ALLOWED}"}
    return RequestValidationError([{**error, "input": text}])


def job_ids(text: str) -> list[int]:
    """The ids of ``jobs=1,2,3``, or a 422 naming what is wrong and what is allowed."""
    parts = text.split(",") if text else []
    bad = [p for p in parts if not re.fullmatch(r"[0-9]{1,10}", p) or not 1 <= int(p) <= MAX_ID]
    if bad:
        raise _refused(f"not a job id: {', '.join(repr(p) for p in bad[:3])}", text)
    ids = [int(p) for p in parts]
    if not MIN_JOBS <= len(ids) <= MAX_JOBS:
        raise _refused(f"{len(ids)} job id(s) given", text)
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise _refused(f"listed more than once: {', '.join(map(str, repeated))}", text)
    return ids


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}`` (lists are values)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{path}.")
        else:
            out[path] = value
    return out


def differences(specs: list[dict[str, Any]]) -> list[ConfigDifference]:
    """The dotted paths whose values are not all equal across ``specs``, sorted, each with
    the value per spec (None where a spec lacks it). Values are compared as JSON, so
    ``1`` and ``true`` differ."""
    flat = [flatten(spec) for spec in specs]
    paths = sorted({path for f in flat for path in f})
    found = []
    for path in paths:
        values = [f.get(path) for f in flat]
        if len({json.dumps(v, sort_keys=True) for v in values}) > 1:
            found.append(ConfigDifference(path=path, values=values))
    return found


def _resolved(job: Job) -> dict[str, Any]:
    """The job's spec with every default filled (a spec stored by an older version gains
    the fields added since); as stored when this version cannot read it."""
    try:
        return JobSpec.model_validate(job.spec).stored()
    except ValidationError:
        return dict(job.spec)


@router.get(
    "/compare",
    response_model=Comparison,
    responses=NOT_FOUND,
    openapi_extra={"parameters": [JOBS_PARAMETER]},
)
def compare(
    session: SessionDep,
    principal: PrincipalDep,
    jobs: Annotated[str, Query(include_in_schema=False)],
    max_points: Annotated[int, Query(ge=1, le=100_000)] = 500,
) -> Comparison:
    """Jobs side by side: per job its state, kind, resolved spec, best and latest test
    accuracy and its epochs (``max_points`` at most, evenly spaced), and the configuration
    fields whose values differ between them. 404 names a job that does not exist, is not
    the caller's, or does not train (a sweep, an export)."""
    ids = job_ids(jobs)
    found = {job_id: session.get(Job, job_id) for job_id in ids}
    rows = [job for job in found.values() if job is not None and can_see(principal, job)]
    if len(rows) < len(ids):
        missing = ", ".join(str(i) for i in ids if i not in {job.id for job in rows})
        raise HTTPException(status_code=404, detail=f"no job {missing}")
    for job in rows:
        if job.kind not in COMPARABLE:
            raise HTTPException(
                status_code=404,
                detail=f"job {job.id} is a {job.kind}, not a training job or trial: "
                "compare jobs that train",
            )
    histories = reads.metrics_histories(session, ids)
    specs = [_resolved(job) for job in rows]
    compared = []
    for job, spec in zip(rows, specs, strict=True):
        history = histories[job.id]
        latest = history[-1].metrics if history else {}
        best_epoch = latest.get("best_epoch")
        compared.append(
            ComparedJob(
                id=job.id,
                kind=job.kind,
                state=job.state,
                terminal=is_terminal(job.state),
                current_epoch=job.current_epoch,
                spec=spec,
                best_test_acc=latest.get("best_test_acc"),
                best_epoch=None if best_epoch is None else int(best_epoch),
                last_test_acc=latest.get("test_acc"),
                metrics=[
                    EpochMetrics.model_validate(m, from_attributes=True)
                    for m in reads.downsample(history, max_points)
                ],
                created_at=job.created_at,
            )
        )
    return Comparison(jobs=compared, differences=differences(specs))
