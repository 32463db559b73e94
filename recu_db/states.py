"""Job states and the transitions allowed between them.

waiting ──its dependencies succeeded──▶ queued   (one failed or was cancelled: failed;
   └──cancel──▶ cancelled                          a job with none starts queued)
queued ──claim──▶ running ──finish──▶ succeeded
  │                 │  └──fail───────▶ failed
  │                 │  └──lease expired, attempts left──▶ queued
  │                 └──cancel──▶ cancelling ──worker stops──▶ cancelled
  └──cancel──▶ cancelled

A sweep's trials start running (never queued) and may also end ``stopped``: ended early by
the sweep's scheduler (ASHA), with the epochs it ran kept.
"""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    """What a queue row is: a training job, a sweep, one trial of a sweep, or the export
    (``.bnn`` packing) of a stored checkpoint."""

    TRAIN = "train"
    SWEEP = "sweep"
    TRIAL = "trial"
    EXPORT = "export"


class JobState(StrEnum):
    WAITING = "waiting"  # for the jobs it depends on (JobSpec.dependencies) to succeed
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    STOPPED = "stopped"


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.STOPPED})


def is_terminal(state: str) -> bool:
    """True for a final state (nothing changes any more)."""
    return JobState(state) in TERMINAL


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLING,
            JobState.QUEUED,
            JobState.STOPPED,
        }
    ),
    JobState.CANCELLING: frozenset({JobState.CANCELLED, JobState.FAILED, JobState.SUCCEEDED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.STOPPED: frozenset(),
}


class TransitionError(ValueError):
    """A state change the state machine does not allow."""


def check_transition(current: JobState, target: JobState) -> None:
    """Raise TransitionError unless ``current -> target`` is allowed."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (terminal)"
        raise TransitionError(f"cannot go from {current} to {target}; allowed: {allowed}")
