"""Summaries shared by the scenarios: latency percentiles, the same way for every figure and baseline."""

from __future__ import annotations

from bench.channel_layers import (
    percentile,  # nearest rank, as the channel layer comparison reports it
)

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "max": 1.0}


def latency_summary(sorted_seconds: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds of durations in seconds, sorted ascending."""
    return {name: None if not sorted_seconds else round(percentile(sorted_seconds, q) * 1000, 2)
            for name, q in QUANTILES.items()}
