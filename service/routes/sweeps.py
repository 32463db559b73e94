"""/sweeps: submit a Ray Tune search over a job spec, follow its trials, cancel it.

A sweep is a queue item (kind "sweep") whose trials are child jobs planned at submit; each
trial's metrics, telemetry, logs and checkpoints are served by the /jobs and /checkpoints
endpoints under the trial's id. The best trial is the one whose latest reported ``metric``
is best by ``mode`` (with rank_by 'group_mean': the best one of the seed group whose mean
metric is best); its checkpoint is its newest stored one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from recu_core.jobspec import JobSpec
from recu_core.sweepspec import SweepSpec
from recu_db import queue, reads
from recu_db.models import Job
from recu_db.states import JobKind, JobState, is_terminal
from service.auth import can_see, owner_filter
from service.deps import (
    Id,
    PrincipalDep,
    ReadSessionMakerDep,
    SessionDep,
    SessionMakerDep,
    SettingsDep,
)
from service.pending import pending_reasons, refuse_unschedulable
from service.responses import NOT_FOUND, submit_responses
from service.routes.jobs import check_limits, refuse_bad_dependencies
from service.schemas import CancelResult, CheckpointPublic
from service.sweep_plan import plan, value_at
from service.sweep_schemas import (
    BestTrial,
    SeedGroup,
    Spread,
    SweepCreate,
    SweepDetail,
    SweepPage,
    SweepPublic,
    TrialPublic,
)

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


def existing_sweep(sweep_id: Id, session: SessionDep, principal: PrincipalDep) -> Job:
    sweep = session.get(Job, sweep_id)
    if sweep is None or sweep.kind != JobKind.SWEEP or not can_see(principal, sweep):
        raise HTTPException(status_code=404, detail=f"no sweep {sweep_id}")
    return sweep


SweepDep = Annotated[Job, Depends(existing_sweep)]


def _params(spec: SweepSpec, trial: Job) -> dict[str, Any]:
    """The trial's values of the searched fields (and its seed, in a seed group)."""
    trial_spec = JobSpec.model_validate(trial.spec)
    return {path: value_at(trial_spec, path) for path in spec.searched}


def _groups(
    spec: SweepSpec, trials: list[Job], latest: dict[int, dict[str, Any]]
) -> list[SeedGroup]:
    """The seed groups (none without seeds): trial i (its plan index) is in group
    i // len(seeds); per group the spread over seeds of the best test accuracy, the latest
    test accuracy and the sweep's metric, each over the trials that reported it; the best
    group marked when rank_by is 'group_mean'."""
    if not spec.seeds:
        return []
    members: dict[int, list[Job]] = {}
    for trial in trials:
        members.setdefault(int(trial.trial_key or 0) // spec.group_size, []).append(trial)

    def spread(group: list[Job], key: str) -> Spread:
        return Spread.of([latest[t.id][key] for t in group if key in latest.get(t.id, {})])

    groups = [
        SeedGroup(
            index=index,
            params={k: v for k, v in _params(spec, group[0]).items() if k != "seed"},
            trial_ids=[t.id for t in group],
            seeds=[spec.seeds[int(t.trial_key or 0) % spec.group_size] for t in group],
            reported=sum(1 for t in group if t.id in latest),
            best_test_acc=spread(group, "best_test_acc"),
            last_test_acc=spread(group, "test_acc"),
            metric=spread(group, spec.metric),
        )
        for index, group in sorted(members.items())
    ]
    if spec.rank_by == "group_mean":
        sign = 1.0 if spec.mode == "max" else -1.0
        scored = [g for g in groups if g.metric.mean is not None]
        if scored:
            best = max(scored, key=lambda g: (sign * (g.metric.mean or 0.0), -g.index))
            groups[groups.index(best)] = best.model_copy(update={"best": True})
    return groups


def _best(
    session: Session,
    spec: SweepSpec,
    trials: list[Job],
    latest: dict[int, dict[str, Any]],
    groups: list[SeedGroup],
) -> BestTrial | None:
    """The trial whose latest ``metric`` is best by ``mode``, among all trials, or (rank_by
    'group_mean') among the best group's; its checkpoint of the best epoch when the
    metric is best_test_acc, else its newest."""
    metric, sign = spec.metric, 1.0 if spec.mode == "max" else -1.0
    if spec.rank_by == "group_mean":
        best_group = next((g for g in groups if g.best), None)
        chosen_ids = set(best_group.trial_ids) if best_group else set()
        trials = [t for t in trials if t.id in chosen_ids]
    scored = [(sign * latest[t.id][metric], t) for t in trials if metric in latest.get(t.id, {})]
    if not scored:
        return None
    _, trial = max(scored, key=lambda pair: (pair[0], -pair[1].id))
    stored = reads.job_checkpoints(session, trial.id)
    # Optimising the best accuracy over epochs: the checkpoint of that epoch; else the last.
    best_epoch = latest[trial.id].get("best_epoch")
    chosen = next(
        (c for c in stored if metric == "best_test_acc" and c.epoch == best_epoch),
        stored[-1] if stored else None,
    )
    return BestTrial(
        trial_id=trial.id,
        index=int(trial.trial_key or 0),
        value=latest[trial.id][metric],
        params=_params(spec, trial),
        checkpoint=None
        if chosen is None
        else CheckpointPublic.model_validate(chosen, from_attributes=True).model_copy(
            update={"best": chosen.epoch == best_epoch}
        ),
    )


def _public(
    session: Session, sweep: Job, pending: dict[int, str] | None = None
) -> tuple[SweepPublic, list[Job], list[SeedGroup]]:
    """The sweep's view, its trials and its seed groups; ``pending``: the reasons of a
    page's queued sweeps (by default read for this one)."""
    if pending is None:
        pending = pending_reasons(session, [sweep])
    spec = SweepSpec.model_validate(sweep.spec)
    trials = list(reads.children(session, sweep.id))
    latest = reads.latest_metrics(session, [t.id for t in trials])
    groups = _groups(spec, trials, latest)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state] = counts.get(trial.state, 0) + 1
    view = SweepPublic(
        id=sweep.id,
        state=sweep.state,
        terminal=is_terminal(sweep.state),
        pending_reason=pending.get(sweep.id),
        attempt=sweep.attempt,
        max_attempts=sweep.max_attempts,
        priority=sweep.priority,
        error=sweep.error,
        spec=sweep.spec,
        trial_counts=counts,
        best=_best(session, spec, trials, latest, groups),
        best_group=next((g.index for g in groups if g.best), None),
        created_at=sweep.created_at,
        updated_at=sweep.updated_at,
    )
    return view, trials, groups


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SweepDetail,
    responses=submit_responses(SweepDetail),
)
def submit_sweep(
    body: SweepCreate,
    makers: SessionMakerDep,
    readers: ReadSessionMakerDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> SweepDetail:
    """Plan the trials and queue the sweep. The same Idempotency-Key (per user) with the
    same body returns the same sweep (200); with another body it is 422 naming the key,
    and nothing is stored. 429 when the user already has the maximum of queued jobs and
    sweeps."""
    errors = check_limits(body.base, settings, loc=("body", "base"))  # the base is a JobSpec
    trials, plan_errors = plan(body, settings.max_trials_per_sweep)
    if errors or plan_errors:
        raise RequestValidationError(errors + plan_errors)
    cpus, gpus = trials[0].spec.resources.demand
    concurrent = min(body.max_concurrent_trials, len(trials))
    where = ("body", "base", "resources")
    refuse_unschedulable(makers, settings, trials[0].spec.resources, where, cpus * concurrent)
    refuse_bad_dependencies(makers, body.base, principal)  # a sweep waits as a job does
    sweep, created = queue.submit(
        makers,
        SweepSpec.from_fields(body),
        demand=(cpus * concurrent, gpus * concurrent),
        trials=[t.spec for t in trials],
        priority=body.priority,
        idempotency_key=idempotency_key,
        max_attempts=body.max_attempts,
        user_id=principal.user_id,
        max_queued=settings.max_queued_per_user,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    with readers() as session:
        return get_sweep(existing_sweep(sweep.id, session, principal), session)


@router.get("", response_model=SweepPage)
def list_sweeps(
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    state: JobState | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> SweepPage:
    """The caller's sweeps (an admin's: everyone's), newest first, optionally by state."""
    limit = min(limit, settings.page_size_limit)
    rows, total = reads.list_jobs(
        session,
        state=state,
        kind=JobKind.SWEEP,
        offset=offset,
        limit=limit,
        user_id=owner_filter(principal),
    )
    pending = pending_reasons(session, rows)
    return SweepPage(
        items=[_public(session, s, pending)[0] for s in rows],
        total=total,
        offset=offset,
        limit=limit,
    )


def sweep_detail(session: Session, sweep: Job, max_points: int | None) -> SweepDetail:
    """The sweep, its trials (params, state, per-epoch metrics, ``max_points`` epochs at
    most each), its seed groups and the best trial so far."""
    view, trials, groups = _public(session, sweep)
    spec = SweepSpec.model_validate(sweep.spec)
    histories = reads.metrics_histories(session, [t.id for t in trials])
    return SweepDetail(
        **view.model_dump(),
        trials=[
            TrialPublic(
                id=t.id,
                index=int(t.trial_key or 0),
                state=t.state,
                terminal=is_terminal(t.state),
                attempt=t.attempt,
                current_epoch=t.current_epoch,
                error=t.error,
                params=_params(spec, t),
                metrics=[
                    {"epoch": m.epoch, **m.metrics}
                    for m in reads.downsample(histories[t.id], max_points)
                ],
            )
            for t in trials
        ],
        groups=groups,
    )


@router.get("/{sweep_id}", response_model=SweepDetail, responses=NOT_FOUND)
def get_sweep(
    sweep: SweepDep,
    session: SessionDep,
    max_points: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> SweepDetail:
    """The sweep, its trials (params, state, per-epoch metrics), its seed groups (with
    seeds: each point's mean +- std over its seeds) and the best trial so far."""
    return sweep_detail(session, sweep, max_points)


@router.post("/{sweep_id}/cancel", response_model=CancelResult, responses=NOT_FOUND)
def cancel_sweep(sweep: SweepDep, makers: SessionMakerDep) -> CancelResult:
    """queued -> cancelled with its trials; running -> cancelling: its worker stops every
    running trial and ends it cancelled."""
    state = queue.cancel(makers, sweep.id) or JobState(sweep.state)
    return CancelResult(id=sweep.id, state=state, terminal=is_terminal(state))
