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


def latest_when_upstream_changes(ignore_missing: dg.AssetSelection) -> dg.AutomationCondition:
    """`eager()` (the latest time window, when a dependency updated, none in progress) except
    that missing partitions of `ignore_missing` do not block it. They are mapped to every
    partition of the asset (a daily history behind an unpartitioned table, every profile
    behind a landscape day), so one missing or failed day or profile must not stop the rest:
    plain `eager()` would wait until every day since the start date is materialized."""
    return dg.AutomationCondition.eager().replace(
        "any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(ignore_missing)
    )
