"""Percentiles and summaries of latency samples (milliseconds)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PERCENTILES = (50, 95, 99)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def summarize(latencies_ms: Sequence[float]) -> dict[str, float]:
    """count, p50/p95/p99, max and mean of ``latencies_ms``."""
    values = sorted(latencies_ms)
    out: dict[str, float] = {"count": float(len(values))}
    for pct in PERCENTILES:
        out[f"p{pct}"] = round(percentile(values, pct), 3)
    out["max"] = round(values[-1], 3) if values else math.nan
    out["mean"] = round(sum(values) / len(values), 3) if values else math.nan
    return out


def ratio(value: Any, baseline: Any) -> float | None:
    """value / baseline, or None when either is missing, NaN or the baseline is 0."""
    if not isinstance(value, int | float) or not isinstance(baseline, int | float):
        return None
    if math.isnan(value) or math.isnan(baseline) or baseline == 0:
        return None
    return round(value / baseline, 3)
