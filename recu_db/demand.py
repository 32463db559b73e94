"""What a job needs from the cluster, read from its spec's ``resources``.

Per Ray Train worker: ``cpus_per_worker`` CPUs and, when ``use_gpu``,
max(1, gpus_per_worker) GPUs. The job reserves num_workers times that.
"""

from __future__ import annotations

from typing import Any


def per_worker_resources(spec: dict[str, Any]) -> dict[str, float]:
    """Ray resources of one Ray Train worker of the job: {"CPU": c} or {"CPU": c, "GPU": g}."""
    resources = spec.get("resources") or {}
    per_worker = {"CPU": float(resources.get("cpus_per_worker", 1.0))}
    if resources.get("use_gpu"):
        per_worker["GPU"] = float(max(1, resources.get("gpus_per_worker", 1)))
    return per_worker


def num_workers(spec: dict[str, Any]) -> int:
    return int((spec.get("resources") or {}).get("num_workers", 1))


def resource_demand(spec: dict[str, Any]) -> tuple[float, float]:
    """(cpus, gpus) the job's Ray Train workers reserve together."""
    one = per_worker_resources(spec)
    n = num_workers(spec)
    return n * one["CPU"], n * one.get("GPU", 0.0)
