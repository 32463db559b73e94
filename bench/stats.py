"""Latency quantiles for the benchmarks' reports (no torch: the service benches import it)."""

from __future__ import annotations

import math


def quantile_ms(seconds: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``seconds``, in milliseconds; NaN when empty."""
    if not seconds:
        return math.nan
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]
