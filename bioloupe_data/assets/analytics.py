"""Analytics: the competitive landscape per day and tumor area (set-based SQL), and smaller
rollups as pandas DataFrames stored by the project's pandas I/O manager."""

from datetime import date

import dagster as dg
import pandas as pd

from bioloupe_data.assets._common import OWNERS, latest_when_upstream_changes
from bioloupe_data.assets.enrichment import (
    DRUG_PROFILES_KEY,
    DRUGS_KEY,
    SITE_GEOCODES_KEY,
    SPONSOR_PROFILES_KEY,
    SPONSORS_KEY,
    TRIAL_FEATURES_KEY,
)
from bioloupe_data.assets.normalize import TRIALS_KEY
from bioloupe_data.partitions import LANDSCAPE_AREA, LANDSCAPE_DATE, tumor_area_partitions
from bioloupe_data.pipelines.landscape import LandscapeChunk, refresh_landscape
from bioloupe_data.pipelines.rollups import drug_phases as drug_phases_of
from bioloupe_data.pipelines.rollups import sponsor_pipelines as sponsor_pipelines_of
from bioloupe_data.resources import WarehouseResource
from bioloupe_data.warehouse.upsert import UpsertCounts

LANDSCAPE_KEY = dg.AssetKey(["analytics", "landscape"])
SPONSOR_PIPELINES_KEY = dg.AssetKey(["analytics", "sponsor_pipelines"])
DRUG_PHASES_KEY = dg.AssetKey(["analytics", "drug_phases"])
PANDAS_IO_MANAGER_KEY = "pandas_io_manager"
PROFILE_KEYS = (DRUG_PROFILES_KEY, SPONSOR_PROFILES_KEY)

LANDSCAPE_DESCRIPTION = """The competitive landscape of each tumor area on each day
(`analytics.landscape`, partitions day × tumor area): active interventional trials in total, by
phase and by registry status, drugs by modality, sponsors by class and sites by region, each row
with a trial count and an entity count (drugs, sponsors, sites). A trial is active from its
start date to its completion date, or until today while the registry lists it as running; areas
come from `enriched.trial_features`.

Any set of (day, area) partitions is computed in one run, grouped into consecutive days × areas
and computed by one SQL statement per slice of up to a year (a running sum over the days, not a
loop per day); each slice replaces its rows in one transaction, writing only rows that changed.
A backfill of every area over years is one run per area (BackfillPolicy.single_run; Dagster
splits a multi-partitioned backfill along its smaller dimension).

Automation keeps the latest day current: its partitions are recomputed when the day's trials,
features or geocodes, the drugs, the sponsors or their profiles change. Past days are computed
from today's warehouse, so after an upstream change a past day is refreshed by a backfill of its
partitions (the UI's date × area grid)."""

# Partitions of upstream assets mapped to every landscape partition (profiles are keyed by
# entity, not by day): a missing one must not hold back the latest day.
_ALL = dg.AllPartitionMapping()
_SAME_DAY = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=LANDSCAPE_DATE)


def _partition_days(
    context: dg.AssetExecutionContext, partitions_def: dg.MultiPartitionsDefinition
) -> list[tuple[date, str]]:
    """The run's (day, area) partitions: one, a range (days × areas), or any set."""
    keys = []
    for key in context.partition_keys:
        dimensions = partitions_def.get_partition_key_from_str(str(key)).keys_by_dimension
        keys.append((date.fromisoformat(dimensions[LANDSCAPE_DATE]), dimensions[LANDSCAPE_AREA]))
    return keys


def build_landscape(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    """`analytics/landscape` over `landscape_partitions(start_date)`."""

    @dg.asset(
        key=LANDSCAPE_KEY,
        deps=[
            dg.AssetDep(TRIALS_KEY, partition_mapping=_SAME_DAY),
            dg.AssetDep(TRIAL_FEATURES_KEY, partition_mapping=_SAME_DAY),
            dg.AssetDep(SITE_GEOCODES_KEY, partition_mapping=_SAME_DAY),
            DRUGS_KEY,
            SPONSORS_KEY,
            *(dg.AssetDep(key, partition_mapping=_ALL) for key in PROFILE_KEYS),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=latest_when_upstream_changes(dg.AssetSelection.assets(*PROFILE_KEYS)),
        group_name="analytics",
        kinds={"postgres", "sql"},
        owners=OWNERS,
        code_version="1",
        metadata={"dagster/table_name": "analytics.landscape"},
        description=LANDSCAPE_DESCRIPTION,
    )
    def landscape(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        totals = UpsertCounts()
        # No per-slice AssetMaterialization: Dagster records every partition of the run when it
        # succeeds (batched with DAGSTER_EVENT_BATCH_SIZE), and events written one by one would
        # cost more than the SQL. A run that fails part-way leaves committed slices stored but
        # unrecorded; backfilling them again rewrites nothing.

        def on_chunk(chunk: LandscapeChunk) -> None:
            totals.add(chunk.counts)
            context.log.info(
                f"{chunk.slice.start}..{chunk.slice.end} × {len(chunk.slice.areas)} areas: "
                f"{chunk.row_count} rows, {chunk.counts.written} written"
            )

        keys = _partition_days(context, partitions_def)
        with warehouse.connection() as conn:
            chunks = refresh_landscape(conn, keys, on_chunk=on_chunk)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(chunk.row_count for chunk in chunks),
                **totals.as_metadata(),
                "partitions_in_run": len(keys),
                "statements": len(chunks),
            }
        )

    return landscape


_ROLLUP_DEPS = [
    dg.AssetDep(TRIALS_KEY, partition_mapping=_ALL),
    dg.AssetDep(TRIAL_FEATURES_KEY, partition_mapping=_ALL),
    DRUGS_KEY,
    SPONSORS_KEY,
    *(dg.AssetDep(key, partition_mapping=_ALL) for key in PROFILE_KEYS),
]


@dg.asset(
    key=SPONSOR_PIPELINES_KEY,
    deps=_ROLLUP_DEPS,
    partitions_def=tumor_area_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=latest_when_upstream_changes(
        dg.AssetSelection.assets(TRIALS_KEY, TRIAL_FEATURES_KEY, *PROFILE_KEYS)
    ),
    io_manager_key=PANDAS_IO_MANAGER_KEY,
    group_name="analytics",
    kinds={"postgres", "pandas"},
    owners=OWNERS,
    code_version="1",
    metadata={"partition_expr": "tumor_area", "dagster/table_name": "analytics.sponsor_pipelines"},
)
def sponsor_pipelines(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> pd.DataFrame:
    """Each lead sponsor's drugs by phase per tumor area (`analytics.sponsor_pipelines`): its
    interventional trials testing the drug per registry phase, how many are ongoing, the first
    start date and the drug's highest phase with the sponsor.

    Partitioned by tumor area, not by day: a pipeline is today's picture of the whole registry,
    so days would only repeat it, while one area can be refreshed (or read back) alone. All 14
    areas are one run; any upstream change refreshes them all."""
    with warehouse.connection() as conn:
        frame = sponsor_pipelines_of(conn, context.partition_keys)
    context.add_output_metadata({"sponsors": int(frame["sponsor_key"].nunique())})
    return frame


@dg.asset(
    key=DRUG_PHASES_KEY,
    ins={"pipelines": dg.AssetIn(SPONSOR_PIPELINES_KEY)},
    partitions_def=tumor_area_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=dg.AutomationCondition.eager(),
    io_manager_key=PANDAS_IO_MANAGER_KEY,
    group_name="analytics",
    kinds={"postgres", "pandas"},
    owners=OWNERS,
    code_version="1",
    metadata={"partition_expr": "tumor_area", "dagster/table_name": "analytics.drug_phases"},
)
def drug_phases(context: dg.AssetExecutionContext, pipelines: pd.DataFrame) -> pd.DataFrame:
    """Each drug's trials per phase and tumor area over all lead sponsors
    (`analytics.drug_phases`), with how many sponsors lead them and the drug's highest phase;
    rolled up in pandas from the area's `analytics/sponsor_pipelines` slice."""
    frame = drug_phases_of(pipelines)
    context.add_output_metadata({"drugs": int(frame["drug_key"].nunique())})
    return frame
