"""Small helpers shared by the asset modules."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

OWNERS = ["team:data-platform"]
SOURCE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def partition_days(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """The first and last day (inclusive) of the run's partition range."""
    window = context.partition_time_window
    return window.start.date(), (window.end - timedelta(days=1)).date()
