"""Every partitions definition of the project."""

from __future__ import annotations

import dagster as dg

from bioloupe_data.enrichment.trial_features import TUMOR_AREAS

# The tags of a run over a range of partitions (what a BackfillPolicy run carries, and what the
# sensors, schedules and the CLI set to launch one).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

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


# The tumor areas are Dagster partition keys as they are: none holds what Dagster forbids in a
# key ("...", control characters) or in a dimension of a multi-partitions definition ("|", ",",
# "[", "]"); "/", "&" and spaces are allowed. So a key is the very string stored in
# `enriched.trial_features.tumor_areas` and in the `tumor_area` columns of `analytics`, and
# needs no mapping. `tests/test_landscape.py` asserts this stays true.
tumor_area_partitions = dg.StaticPartitionsDefinition(list(TUMOR_AREAS))

LANDSCAPE_DATE = "date"
LANDSCAPE_AREA = "tumor_area"


def landscape_partitions(start_date: str) -> dg.MultiPartitionsDefinition:
    """Day × tumor area; the day dimension is `daily_partitions(start_date)`, so build it from
    the same start date as the daily assets. Keys read `2024-05-01|lung` (dimensions in name
    order)."""
    return dg.MultiPartitionsDefinition(
        {LANDSCAPE_DATE: daily_partitions(start_date), LANDSCAPE_AREA: tumor_area_partitions}
    )
