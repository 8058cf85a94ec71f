"""Figures shared by the bench sections."""

from __future__ import annotations

from collections.abc import Sequence


def quantiles_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 (and the count) of durations given in seconds, in milliseconds."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"n": len(ordered), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}
