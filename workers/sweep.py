"""A sweep on Ray Tune: one Tune trial per planned, unfinished trial row.

Trials were planned at submit (``service.sweep_plan``); Tune runs them as a grid over their
keys, so a re-claimed sweep runs only the trials that have not ended, each resuming from
its newest stored checkpoint, and finished trials are never re-run. A trial with one
worker trains directly inside its Tune actor (no nested trainer to start: seconds saved
per trial); a trial with several is rank 0 of a warm DDP group that its reused actor keeps
between trials (``workers.peer_group``; a ``TorchTrainer`` per trial cost 11 s more).
ASHA stops poor trials by the reported ``epoch``; a stopped trial ends ``stopped`` with
the epochs it ran.

A database outage fails no trial: each write is retried for up to a lease; a trial that
still ends on the outage is left open (``TrialOutageError``), and the sweep ends on a
``SweepOutageError`` that the worker loop answers by giving the sweep back to the queue:
its next attempt runs the open trials again from their newest checkpoints.
"""

from __future__ import annotations

import functools
import time
import traceback
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from recu_core.jobspec import JobSpec
from recu_core.sweepspec import Scheduler
from recu_db import queue, reads, results
from recu_db.engine import make_engine, make_sessionmaker
from recu_db.queue import Lease
from recu_db.retry import is_transient, retry_transient
from recu_db.states import TERMINAL, JobState
from recu_db.trials import end_open_trials, end_trial, start_trial
from workers.failures import DatabaseOutageError, is_outage
from workers.peer_group import run_on_peers
from workers.stops import JobStoppedError
from workers.train_loop import run_training
from workers.trainer import TrainingCodeError, storage_path


class TrialOutageError(DatabaseOutageError):
    """A trial ended because the database stayed out of reach: not its failure."""


class SweepOutageError(DatabaseOutageError):
    """A sweep ended with trials left open by a database outage (the worker loop gives it
    back to the queue)."""


class _Db:
    """A lazily opened database handle that pickles as its URL (Tune pickles callbacks)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engine: Engine | None = None
        self._db: queue.Db | None = None

    def __call__(self) -> queue.Db:
        if self._db is None:
            self._engine = make_engine(self.database_url)
            self._db = make_sessionmaker(self._engine)
        return self._db

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine = self._db = None

    def __getstate__(self) -> dict[str, Any]:
        return {"database_url": self.database_url, "_engine": None, "_db": None}


class StopWhenSweepEnds(tune.Stopper):
    """Stops every trial once the sweep is no longer running (cancelled, re-claimed)."""

    def __init__(self, database_url: str, sweep: Lease, every_s: float = 1.0) -> None:
        self.db, self.sweep, self.every_s = _Db(database_url), sweep, every_s
        self._checked, self._stop = 0.0, False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        if not self._stop and time.monotonic() - self._checked >= self.every_s:
            self._checked = time.monotonic()
            try:
                self._stop = queue.state_if_ours(self.db(), self.sweep) != JobState.RUNNING
            except DBAPIError as err:  # out of reach: the fenced writes decide, look again
                if not is_transient(err):
                    raise
        return self._stop


class RecordTrialEnds(tune.Callback):
    """Ends a trial row the trial itself could not: stopped by the scheduler (Tune ends the
    trial function inside its report call), or its actor died. A trial that ended on its
    own is left as it recorded itself."""

    def __init__(self, database_url: str, sweep: Lease, retry_s: float = 0.0) -> None:
        self.db, self.sweep, self.retry_s = _Db(database_url), sweep, retry_s
        self.outage = False  # a trial was left open by a database outage

    def _end(self, key: str, target: JobState | None, reason: str, error: str | None) -> None:
        try:
            retry_transient(
                lambda: end_trial(self.db(), self.sweep, key, target, reason, error=error),
                seconds=self.retry_s,
            )
        except DBAPIError as err:  # the trial stays open: the sweep is given back
            if not is_transient(err):
                raise
            self.outage = True

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # the scheduler also stops a trial at its last epoch (ASHA's max_t), before the
        # trial function could record it succeeded: end_trial tells the two apart
        epoch = (trial.last_result or {}).get("epoch", 0)
        reason = f"stopped early by the sweep's scheduler after epoch {epoch}"
        self._end(str(trial.config["trial"]), None, reason, None)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if TrialOutageError.__name__ in str(trial.get_error() or ""):
            self.outage = True  # left open: the sweep's next attempt runs it again
            return
        error = f"trial actor failed: {trial.error_file or 'see the Ray logs'}"
        self._end(str(trial.config["trial"]), JobState.FAILED, error, error)


def run_trial(
    config: dict[str, Any],
    *,
    sweep: Lease,
    database_url: str,
    lease_s: float,
) -> None:
    """The Tune trainable: start the planned trial under the sweep's lease and train it."""
    sweep_lease = sweep
    handle = _Db(database_url)
    db = handle()

    def durable(write: Any) -> Any:  # through a database outage, for up to a lease
        return retry_transient(write, seconds=lease_s)

    try:
        lease = durable(lambda: start_trial(db, sweep_lease, str(config["trial"])))
    except DBAPIError as err:
        handle.close()
        if is_transient(err):
            raise TrialOutageError(f"trial {config['trial']}: database unavailable") from err
        raise
    if lease is None:  # ended already, or the sweep is no longer ours
        handle.close()
        return
    try:
        if lease.job.resources.num_workers == 1:
            run_training(
                lease, database_url=database_url, lease_s=lease_s, rank=0, report=tune.report
            )
        else:
            run_on_peers(lease, database_url=database_url, lease_s=lease_s, report=tune.report)
        durable(lambda: queue.finish(db, lease, JobState.SUCCEEDED))
    except JobStoppedError:  # cancelled: ends cancelled, no error (the fence drops the rest)
        durable(
            lambda: results.append_logs(db, lease, ["stopped on request: the trial was cancelled"])
        )
        durable(lambda: queue.finish(db, lease, JobState.CANCELLED, reason="stopped on request"))
    except Exception as err:  # recorded on the trial; Tune records it too and goes on
        if is_outage(err):  # not the trial's failure: left open for the sweep's next attempt
            raise TrialOutageError(f"trial {config['trial']}: database unavailable") from err
        details = err.details if isinstance(err, TrainingCodeError) else None
        text = (details or "".join(traceback.format_exception(err))).splitlines()
        durable(lambda: results.append_logs(db, lease, text))
        error = str(err) if details else f"{type(err).__name__}: {err}"
        durable(lambda: queue.finish(db, lease, JobState.FAILED, error=error))
        raise
    finally:
        handle.close()


def trial_name(sweep_id: int, trial: Any) -> str:
    """Tune's name and directory of a trial: ``sweep-{id}-trial-{index}``."""
    return f"sweep-{sweep_id}-trial-{trial.config['trial']}"


def _scheduler(options: Scheduler, epochs: int) -> TrialScheduler:
    if options.kind == "none":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="epoch",
        max_t=epochs,
        grace_period=min(options.grace_period, epochs),
        reduction_factor=options.reduction_factor,
    )


def run_sweep(lease: Lease, *, database_url: str, lease_s: float, runs_dir: str | Path) -> None:
    """Run the sweep's unfinished trials on Tune; returns when the sweep ended (cancelled
    included), raises when every trial failed."""
    handle = _Db(database_url)
    try:
        _run_sweep(lease, handle(), database_url=database_url, lease_s=lease_s, runs_dir=runs_dir)
    finally:
        handle.close()


def _run_sweep(
    lease: Lease, db: queue.Db, *, database_url: str, lease_s: float, runs_dir: str | Path
) -> None:
    spec = lease.sweep
    with db() as session:
        rows = list(reads.children(session, lease.job_id))
    pending = [r.trial_key for r in rows if JobState(r.state) not in TERMINAL]
    if pending:
        first = JobSpec.model_validate(rows[0].spec)  # every trial runs on the same resources
        # A trial's actor is its rank 0; a multi-worker trial's other ranks are actors it
        # starts in the other bundles of its placement group (all reserved together, so
        # concurrent trials never hold half a group each)
        resources = tune.PlacementGroupFactory(
            [first.resources.per_worker] * first.resources.num_workers
        )
        trainable = tune.with_parameters(
            run_trial,
            sweep=lease,
            database_url=database_url,
            lease_s=lease_s,
        )
        stopper = StopWhenSweepEnds(database_url, lease)
        recorder = RecordTrialEnds(database_url, lease, retry_s=lease_s)
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={"trial": tune.grid_search(pending)},
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.mode,
                scheduler=_scheduler(spec.scheduler, first.epochs),
                max_concurrent_trials=spec.max_concurrent_trials,
                trial_name_creator=functools.partial(trial_name, lease.job_id),
                trial_dirname_creator=functools.partial(trial_name, lease.job_id),
                # the next trial runs in the actor the last one used (torch, Ray Train and
                # the dataset already loaded), not in a fresh one: 6 s per trial before
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"sweep-{lease.job_id}-attempt-{lease.attempt}",
                storage_path=storage_path(runs_dir),
                stop=stopper,
                callbacks=[recorder],
                failure_config=tune.FailureConfig(max_failures=0),  # a failed trial stays failed
                verbose=0,
            ),
        )
        try:
            tuner.fit()
        finally:
            stopper.db.close()
            recorder.db.close()
        if recorder.outage:  # the open trials must run again, not end with the sweep
            raise SweepOutageError(f"sweep {lease.job_id}: trials left open by a database outage")
    cancelled = queue.state_if_ours(db, lease) == JobState.CANCELLING
    target = JobState.CANCELLED if cancelled else JobState.STOPPED
    end_open_trials(db, lease, target, "the sweep ended")
    with db() as session:
        ended = [JobState(r.state) for r in reads.children(session, lease.job_id)]
    if not cancelled and ended and all(s == JobState.FAILED for s in ended):
        raise RuntimeError(f"every one of the {len(ended)} trials failed; see their logs")
