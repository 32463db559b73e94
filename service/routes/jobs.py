"""/jobs: submit, list, inspect, history, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Row

from recu_core.jobspec import JobSpec, Resources
from recu_core.paths import RootOutsideDataDirError, confined_root
from recu_db import dependencies, queue, reads
from recu_db.models import Job
from recu_db.states import JobState, is_terminal
from service.auth import Principal, can_see, owner_filter
from service.config import ServiceSettings
from service.deps import (
    Id,
    JobDep,
    PrincipalDep,
    ReadSessionMakerDep,
    SessionDep,
    SessionMakerDep,
    SettingsDep,
    in_thread,
)
from service.pending import pending_reasons, refuse_unschedulable
from service.responses import NOT_FOUND, error_description, model_response, submit_responses
from service.schemas import (
    CancelResult,
    CheckpointPublic,
    EpochMetrics,
    EpochTelemetryPublic,
    EventPublic,
    JobCreate,
    JobManifest,
    JobPage,
    JobPublic,
    LogLinePublic,
)

router = APIRouter(prefix="/jobs", tags=["jobs"])


def to_public(
    job: Job | Row[Any],
    latest: dict[str, Any] | None = None,
    started: datetime | None = None,
    finished: datetime | None = None,
    pending_reason: str | None = None,
) -> JobPublic:
    """The public view of a job (a Job, or a ``recu_db.reads`` view row) and what its
    view adds: the newest epoch's metrics, when it started and finished, why it waits."""
    metrics = latest or {}
    best_epoch = metrics.get("best_epoch")
    return JobPublic(
        id=job.id,
        kind=job.kind,
        parent_id=job.parent_id,
        state=job.state,
        terminal=is_terminal(job.state),
        pending_reason=pending_reason,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        priority=job.priority,
        current_epoch=job.current_epoch,
        best_test_acc=metrics.get("best_test_acc"),
        best_epoch=None if best_epoch is None else int(best_epoch),
        last_test_acc=metrics.get("test_acc"),
        latest_metrics=latest,
        error=job.error,
        spec=job.spec,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=started,
        finished_at=finished,
    )


def view_public(row: Row[Any], pending: dict[int, str]) -> JobPublic:
    """``to_public`` of a view row (``recu_db.reads.job_view``)."""
    return to_public(row, row.latest_metrics, row.started_at, row.finished_at, pending.get(row.id))


def check_limits(
    spec: JobSpec, settings: ServiceSettings, loc: tuple[str, ...] = ("body",)
) -> list[dict[str, Any]]:
    """422 errors for what the service can check before a worker would (empty when none):
    resources beyond the limits, a dataset root outside the data directory, or missing
    from it (checked where the API sees the workers' data directory)."""
    errors = check_resources(spec.resources, settings, (*loc, "resources"))
    root = spec.dataset.root
    if root is not None:
        problem = None
        try:
            path = confined_root(root, settings.data_dir)
        except RootOutsideDataDirError as err:
            problem = str(err)
        else:
            if settings.data_dir.is_dir() and not path.is_dir():
                problem = (
                    f"dataset.root {root!r} does not exist in the data directory "
                    f"(RECU_DATA_DIR); give a folder inside it"
                )
        if problem is not None:
            errors.append(
                {
                    "type": "value_error",
                    "loc": (*loc, "dataset", "root"),
                    "msg": problem,
                    "input": root,
                }
            )
    return errors


def refuse_bad_dependencies(makers: Any, spec: JobSpec, principal: Principal) -> None:
    """The jobs ``spec`` waits for (``recu_db.dependencies.problems``) must each be the
    caller's own (an admin may name anyone's) training job that has not failed: 404 names
    those that do not exist (or are not the caller's), else 409 those that can never
    succeed."""
    ids = spec.dependencies
    if not ids:
        return
    owner = owner_filter(principal)
    with makers() as session:
        found = dependencies.problems(session, ids, user_id=owner, admin=owner is None)
    rule = (
        "a job may wait for (after), start from (init_from) or learn from (distill) only "
        "a training job or trial of your own that has not failed"
    )
    for kind, code in (("missing", 404), ("unusable", 409)):
        named = [p.message for p in found if p.kind == kind]
        if named:
            raise HTTPException(status_code=code, detail=f"{'; '.join(named)}: {rule}")


def check_resources(
    resources: Resources, settings: ServiceSettings, loc: tuple[str, ...]
) -> list[dict[str, Any]]:
    """422 errors for resources beyond the service's limits."""
    errors = []
    if resources.num_workers > settings.max_workers_per_job:
        errors.append(
            {
                "type": "less_than_equal",
                "loc": (*loc, "num_workers"),
                "msg": f"at most {settings.max_workers_per_job} workers per job are allowed",
                "input": resources.num_workers,
            }
        )
    if resources.gpus_per_worker > settings.max_gpus_per_worker:
        errors.append(
            {
                "type": "less_than_equal",
                "loc": (*loc, "gpus_per_worker"),
                "msg": f"at most {settings.max_gpus_per_worker} GPUs per worker are allowed",
                "input": resources.gpus_per_worker,
            }
        )
    return errors


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses=submit_responses(JobPublic),
)
async def submit_job(
    body: JobCreate,
    makers: SessionMakerDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Queue a training job. The same Idempotency-Key (per user) with the same body returns
    the same job (200); with another body it is 422 naming the key, and nothing is stored.
    429 when the user already has the maximum of queued jobs and sweeps."""

    def submit() -> tuple[JobPublic, bool]:
        spec = JobSpec.from_fields(body)
        errors = check_limits(spec, settings)
        if errors:
            raise RequestValidationError(errors)
        refuse_bad_dependencies(makers, spec, principal)
        refuse_unschedulable(makers, settings, spec.resources, loc=("body", "resources"))
        job, created = queue.submit(
            makers,
            spec,
            priority=body.priority,
            idempotency_key=idempotency_key,
            max_attempts=body.max_attempts,
            user_id=principal.user_id,
            max_queued=settings.max_queued_per_user,
        )
        return to_public(job), created

    public, created = await in_thread(submit)
    return model_response(public, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.get("", response_model=JobPage)
async def list_jobs(
    makers: ReadSessionMakerDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    state: JobState | None = None,
    kind: Literal["train", "trial"] = "train",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    """The caller's jobs (an admin's: everyone's), newest first, optionally filtered by
    state; ``kind=trial`` lists sweeps' trials instead (sweeps themselves: /sweeps)."""
    limit = min(limit, settings.page_size_limit)

    def page() -> JobPage:
        with makers() as session:
            rows, total = reads.job_views(
                session,
                state=state,
                kind=kind,
                offset=offset,
                limit=limit,
                user_id=owner_filter(principal),
            )
            pending = pending_reasons(session, rows)
        return JobPage(
            items=[view_public(row, pending) for row in rows],
            total=total,
            offset=offset,
            limit=limit,
        )

    return model_response(await in_thread(page))


@router.get("/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
async def get_job(job_id: Id, makers: ReadSessionMakerDep, principal: PrincipalDep) -> Response:
    """The job; a queued one says why it has not started (``pending_reason``). One
    statement (two for a queued job: the workers' published resources)."""

    def view() -> JobPublic:
        with makers() as session:
            row = reads.job_view(session, job_id)
            if row is None or not can_see(principal, row):
                raise HTTPException(status_code=404, detail=f"no job {job_id}")
            return view_public(row, pending_reasons(session, [row]))

    return model_response(await in_thread(view))


@router.get("/{job_id}/metrics", response_model=list[EpochMetrics], responses=NOT_FOUND)
def get_metrics(
    job: JobDep,
    session: SessionDep,
    max_points: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> list[EpochMetrics]:
    """Per-epoch history; ``max_points`` downsamples evenly (first and last kept)."""
    rows = reads.downsample(reads.metrics_history(session, job.id), max_points)
    return [
        EpochMetrics(epoch=r.epoch, attempt=r.attempt, metrics=r.metrics, recorded_at=r.recorded_at)
        for r in rows
    ]


@router.get("/{job_id}/telemetry", response_model=list[EpochTelemetryPublic], responses=NOT_FOUND)
def get_telemetry(
    job: JobDep,
    session: SessionDep,
    max_points: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    layer: Annotated[list[str] | None, Query(max_length=1000)] = None,
    hist: bool = True,
) -> list[EpochTelemetryPublic]:
    """Per-layer weight telemetry per epoch. ``max_points`` downsamples the epochs evenly
    (first and last kept), ``layer`` (repeatable) keeps only the named layers, and
    ``hist=false`` leaves out the histograms (the scalars alone are ~10x smaller)."""
    rows = reads.telemetry_history(session, job.id, max_points)
    return [
        EpochTelemetryPublic(epoch=r.epoch, telemetry=_select(r.telemetry, layer, hist))
        for r in rows
    ]


def _select(telemetry: dict[str, Any], layers: list[str] | None, hist: bool) -> dict[str, Any]:
    kept = {
        name: entry if hist else {k: v for k, v in entry.items() if k != "hist"}
        for name, entry in telemetry.get("layers", {}).items()
        if layers is None or name in layers
    }
    return {**telemetry, "layers": kept}


@router.get("/{job_id}/logs", response_model=list[LogLinePublic], responses=NOT_FOUND)
def get_logs(
    job: JobDep,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[LogLinePublic]:
    rows = reads.log_lines(session, job.id, offset=offset, limit=limit)
    return [LogLinePublic(attempt=r.attempt, at=r.at, line=r.line) for r in rows]


@router.get("/{job_id}/events", response_model=list[EventPublic], responses=NOT_FOUND)
def get_events(job: JobDep, session: SessionDep) -> list[EventPublic]:
    return [
        EventPublic(
            at=e.at,
            from_state=e.from_state,
            to_state=e.to_state,
            attempt=e.attempt,
            reason=e.reason,
        )
        for e in reads.events(session, job.id)
    ]


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointPublic], responses=NOT_FOUND)
def get_checkpoints(job: JobDep, session: SessionDep) -> list[CheckpointPublic]:
    """The stored checkpoints, oldest first; ``best`` marks the one of the job's
    best_epoch, ``last`` the newest (highest epoch, then id)."""
    stored, best, last = reads.best_and_last(session, job.id)
    return [
        CheckpointPublic.model_validate(c, from_attributes=True).model_copy(
            update={"best": c is best, "last": c is last}
        )
        for c in stored
    ]


@router.get(
    "/{job_id}/manifest",
    response_model=JobManifest,
    responses={
        **NOT_FOUND,
        409: error_description("The job's training has not started yet: nothing to show."),
    },
)
def get_manifest(job: JobDep, session: SessionDep) -> JobManifest:
    """The reproducibility manifest of the job's latest attempt: code version (package and
    git commit), package versions, device, data identity, seed and resolved recipe.
    Recorded when an attempt's training starts; 409 before (the job exists, its manifest
    does not yet)."""
    row = reads.run_manifest(session, job.id)
    if row is None:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"job {job.id} has no manifest yet: it is recorded when its training "
            f"starts (state {job.state})",
        )
    return JobManifest(**row.manifest, attempt=row.attempt, recorded_at=row.recorded_at)


@router.post("/{job_id}/cancel", response_model=CancelResult, responses=NOT_FOUND)
def cancel_job(job_id: Id, makers: SessionMakerDep, principal: PrincipalDep) -> CancelResult:
    """queued -> cancelled; running -> cancelling (then cancelled by its worker);
    finished jobs are left as they are. 404 for an unknown job or another user's."""
    state = queue.cancel(makers, job_id, user_id=owner_filter(principal))
    if state is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id}")
    return CancelResult(id=job_id, state=state, terminal=is_terminal(state))
