"""A job, its checkpoints and its manifest as the CLI shows them to people (the API's
JSON in, lines of text out; accuracies as ``91.3%``)."""

from __future__ import annotations

from typing import Any

from recu_cli.output import percent

Checkpoint = dict[str, Any]


def accuracy_text(job: dict[str, Any]) -> str:
    """'  best test acc B (epoch E), last L' once the job has a finished epoch."""
    if job["last_test_acc"] is None:
        return ""
    last = percent(job["last_test_acc"])
    if job["best_test_acc"] is None:
        return f"  last test acc {last}"
    return (
        f"  best test acc {percent(job['best_test_acc'])} (epoch {job['best_epoch']}), last {last}"
    )


def best_and_last(checkpoints: list[Checkpoint]) -> tuple[Checkpoint | None, Checkpoint | None]:
    """The checkpoints the API marks best and last (None where none is)."""
    best = next((c for c in checkpoints if c["best"]), None)
    last = next((c for c in checkpoints if c["last"]), None)
    return best, last


def job_summary(job: dict[str, Any]) -> list[str]:
    """A few lines on the job: what it is, where it got to, how it ended."""
    spec = job["spec"]
    lines = [
        f"job {job['id']} {job['state']} ({job['kind']}, attempt {job['attempt']} of "
        f"{job['max_attempts']}, priority {job['priority']})",
        f"run: {spec['model']} on {spec['dataset']['name']}, epoch {job['current_epoch']}/"
        f"{spec['epochs']}, {spec['resources']['num_workers']} rank(s)",
    ]
    if job["last_test_acc"] is not None:
        best = job["best_test_acc"]
        shown = "" if best is None else f"best {percent(best)} (epoch {job['best_epoch']}), "
        lines.append(f"test accuracy: {shown}last {percent(job['last_test_acc'])}")
    if job.get("pending_reason"):
        lines.append(f"waiting: {job['pending_reason']}")
    times = [
        f"{name} {job[key][:19].replace('T', ' ')}"
        for name, key in (("created", "created_at"), ("started", "started_at"))
        if job.get(key)
    ]
    if job.get("finished_at"):
        times.append(f"finished {job['finished_at'][:19].replace('T', ' ')}")
    lines.append(", ".join(times))
    if job["error"]:
        lines.append(f"error: {job['error']}")
    return lines


def code_line(manifest: dict[str, Any]) -> str:
    """'code: recu X (git abc1234), torch Y, device Z': what the job ran, in one line."""
    commit = (manifest.get("git_commit") or "")[:7] or "unknown"
    dirty = ", dirty" if manifest.get("git_dirty") else ""
    torch = (manifest.get("packages") or {}).get("torch", "unknown")
    return (
        f"code: recu {manifest.get('recu_version', 'unknown')} (git {commit}{dirty}), "
        f"torch {torch}, device {device_text(manifest.get('device') or {})}"
    )


def device_text(device: dict[str, Any]) -> str:
    """'cuda x2 (NVIDIA H100 80GB HBM3)', 'cpu x1'."""
    names = sorted(set(device.get("names") or []))
    shown = f"{device.get('type', 'unknown')} x{device.get('count', 1)}"
    return f"{shown} ({', '.join(names)})" if names else shown
