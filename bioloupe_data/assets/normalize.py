"""Normalizing assets: landed documents into the relational `core` schema."""

from typing import Any

import dagster as dg

from bioloupe_data.assets._common import OWNERS, partition_days
from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY
from bioloupe_data.partitions import daily_backfill_policy
from bioloupe_data.pipelines.clinicaltrials import (
    CHILDREN,
    NormalizedDay,
    days_between,
    normalize_days,
)
from bioloupe_data.resources import WarehouseResource
from bioloupe_data.warehouse.upsert import UpsertCounts

# Bump when the derivation of any core trial table changes: the UI then marks the partitions
# stale and a backfill re-derives them from raw.documents, rewriting only rows that changed.
TRIALS_CODE_VERSION = "1"
TRIALS_KEY = dg.AssetKey(["core", "trials"])
TRIAL_TABLES = ["trials", *CHILDREN]


def _metadata(
    counts: dict[str, UpsertCounts],
    rows: dict[str, int],
    documents: int,
    dead_letters: int,
    *,
    per_table: bool,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": rows["trials"],
        **counts["trials"].as_metadata(),
        "documents": documents,
        "dead_letters": dead_letters,
        "child_rows_written": sum(counts[table].written for table in CHILDREN),
    }
    if not per_table:  # a day's event stays small: thousands of them are written per range
        return metadata
    for table in CHILDREN:
        metadata[f"{table}.rows"] = rows[table]
        metadata[f"{table}.written"] = counts[table].written
    return metadata


def build_trials_normalization(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=TRIALS_KEY,
        deps=[CLINICALTRIALS_LANDING_KEY],
        partitions_def=partitions_def,
        backfill_policy=daily_backfill_policy(),
        group_name="core",
        kinds={"postgres", "python"},
        owners=OWNERS,
        code_version=TRIALS_CODE_VERSION,
    )
    def core_trials(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """ClinicalTrials.gov studies normalized into `core.trials` (AACT `studies` columns) and
        its child tables, keyed by `nct_id`: `trial_conditions`, `trial_keywords`,
        `trial_interventions` (with other names), `trial_sponsors`, `trial_sites` (one row per
        location entry, AACT `facilities`), `trial_arms`, `trial_references`,
        `trial_countries`, `trial_outcomes`, `trial_browse_conditions`,
        `trial_browse_interventions` and `trial_eligibilities`.

        Reads only `raw.documents`, so a replay never calls the API. A trial is rewritten only
        when its derivation changed, and its child rows only when the trial's upsert won. Each
        day commits on its own and is recorded as materialized when it commits.
        """
        start, end = partition_days(context)
        totals = {table: UpsertCounts() for table in TRIAL_TABLES}
        rows = dict.fromkeys(TRIAL_TABLES, 0)
        documents = dead_letters = 0

        def on_day(day: NormalizedDay) -> None:
            nonlocal documents, dead_letters
            documents += day.documents
            dead_letters += day.dead_letters
            for table in TRIAL_TABLES:
                totals[table].add(day.counts[table])
                rows[table] += day.rows[table]
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=TRIALS_KEY,
                    partition=day.day.isoformat(),
                    metadata=_metadata(
                        day.counts, day.rows, day.documents, day.dead_letters, per_table=False
                    ),
                )
            )

        with warehouse.connection() as conn:
            normalize_days(conn, days_between(start, end), run_id=context.run.run_id, on_day=on_day)
        metadata = _metadata(totals, rows, documents, dead_letters, per_table=True)
        metadata["partitions_in_run"] = (end - start).days + 1
        return dg.MaterializeResult(metadata=metadata)

    return core_trials
