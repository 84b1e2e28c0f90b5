"""Small helpers shared by the asset modules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import dagster as dg

OWNERS = ["team:data-platform"]
SOURCE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def partition_days(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """The first and last day (inclusive) of the run's partition range."""
    window = context.partition_time_window
    return window.start.date(), (window.end - timedelta(days=1)).date()


def record_day(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    day: date,
    metadata: Mapping[str, Any],
) -> None:
    """A day committed: logged as materialized now (a run that fails later leaves it recorded),
    and the same figures given to the materialization of that partition Dagster records when
    the run succeeds, so each partition's latest materialization describes its own day. The
    run's `MaterializeResult` then carries only what is about the run (`partitions_in_run`)."""
    partition = day.isoformat()
    context.add_asset_metadata(metadata, asset_key=key, partition_key=partition)
    context.log_event(
        dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata)
    )


def latest_when_upstream_changes(ignore_missing: dg.AssetSelection) -> dg.AutomationCondition:
    """`eager()` (the latest time window, when a dependency updated, none in progress) except
    that missing partitions of `ignore_missing` do not block it. They are mapped to every
    partition of the asset (a daily history behind an unpartitioned table, every profile
    behind a landscape day), so one missing or failed day or profile must not stop the rest:
    plain `eager()` would wait until every day since the start date is materialized."""
    return dg.AutomationCondition.eager().replace(
        "any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(ignore_missing)
    )
