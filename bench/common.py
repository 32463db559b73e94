"""Shared helpers for the benchmarks: environment description and interleaved timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from recu_core.provenance import cpu_name


def environment() -> str:
    """One line naming the hardware and versions the figures were measured on."""
    return (
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def interleaved(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each run once per round, alternating, so machine noise hits all alike.

    Each callable returns a throughput; the lists hold one figure per round.
    """
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            results[name].append(run())
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
