"""Every partitions definition of the project."""

from __future__ import annotations

import dagster as dg

# A range run covers at most this many days, so a multi-year UI backfill is a handful of runs
# while a run's working set stays bounded (pages are streamed, days commit one by one).
MAX_DAYS_PER_RUN = 365


def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    """The day a source changed a record (UTC). Only complete days exist: today appears
    tomorrow."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=0)


def daily_backfill_policy() -> dg.BackfillPolicy:
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_DAYS_PER_RUN)


# Entities found in the warehouse; the registering sensor adds their keys (enriched.drugs and
# enriched.sponsors hold the same keys).
drug_partitions = dg.DynamicPartitionsDefinition(name="drugs")
sponsor_partitions = dg.DynamicPartitionsDefinition(name="sponsors")
MAX_ENTITIES_PER_RUN = 200


def entity_backfill_policy() -> dg.BackfillPolicy:
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_ENTITIES_PER_RUN)
