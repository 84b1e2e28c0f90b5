"""Normalizing assets: landed documents into the relational `core` schema."""

from dataclasses import dataclass
from typing import Any

import dagster as dg

from bioloupe_data.assets._common import OWNERS, partition_days, record_day
from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY, PUBMED_LANDING_KEY
from bioloupe_data.partitions import daily_backfill_policy
from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.pipelines.normalize import NormalizedDay, NormalizeSpec, normalize_days
from bioloupe_data.pipelines.pubmed import PUBLICATIONS_SPEC
from bioloupe_data.resources import WarehouseResource
from bioloupe_data.warehouse.upsert import UpsertCounts

TRIALS_KEY = dg.AssetKey(["core", "trials"])
PUBLICATIONS_KEY = dg.AssetKey(["core", "publications"])


@dataclass(frozen=True, slots=True)
class Normalization:
    key: dg.AssetKey
    upstream: dg.AssetKey
    spec: NormalizeSpec
    description: str


TRIALS_NORMALIZATION = Normalization(
    key=TRIALS_KEY,
    upstream=CLINICALTRIALS_LANDING_KEY,
    spec=TRIALS_SPEC,
    description="""ClinicalTrials.gov studies normalized into `core.trials` (AACT `studies`
columns) and its child tables, keyed by `nct_id`: `trial_conditions`, `trial_keywords`,
`trial_interventions` (with other names), `trial_sponsors`, `trial_sites` (one row per location
entry, AACT `facilities`), `trial_arms`, `trial_references`, `trial_countries`,
`trial_outcomes`, `trial_browse_conditions`, `trial_browse_interventions` and
`trial_eligibilities`.

Reads only `raw.documents`, so a replay never calls the API. Only studies whose landed version
differs from their `core.trials` row are read and derived (all of a day's, after a derivation
version bump); a trial is rewritten only when its derivation changed, and its child rows only
when the trial's upsert won. Each day commits on its own and is recorded as materialized when it
commits.""",
)

PUBLICATIONS_NORMALIZATION = Normalization(
    key=PUBLICATIONS_KEY,
    upstream=PUBMED_LANDING_KEY,
    spec=PUBLICATIONS_SPEC,
    description="""PubMed citations normalized into `core.publications` (title, abstract,
journal, publication date with its precision, statuses, DOI, language, dates) keyed by `pmid`,
with `publication_authors` (order, names, collective names, affiliations, ORCID),
`publication_mesh` (descriptor, qualifiers, major topic) and `publication_trials` (NCT ids from
the ClinicalTrials.gov DataBank list, the title or the abstract, with the link's origin).

Reads only `raw.documents`, and of it only the citations whose landed version differs from their
`core.publications` row (all of a day's, after a derivation version bump); rewrites a
publication only when its derivation changed, and its child rows only when its upsert won. Each
day commits on its own.""",
)


def _metadata(
    spec: NormalizeSpec,
    counts: dict[str, UpsertCounts],
    rows: dict[str, int],
    documents: int,
    dead_letters: int,
    *,
    per_table: bool,
) -> dict[str, Any]:
    parent = spec.parent.name
    metadata: dict[str, Any] = {
        "dagster/row_count": rows[parent],
        **counts[parent].as_metadata(),
        "documents": documents,
        "dead_letters": dead_letters,
        "child_rows_written": sum(counts[table].written for table in spec.children),
    }
    if not per_table:  # a day's event stays small: thousands of them are written per range
        return metadata
    for table in spec.children:
        metadata[f"{table}.rows"] = rows[table]
        metadata[f"{table}.written"] = counts[table].written
    return metadata


def build_normalization_asset(
    normalization: Normalization, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    spec = normalization.spec

    @dg.asset(
        key=normalization.key,
        deps=[normalization.upstream],
        partitions_def=partitions_def,
        backfill_policy=daily_backfill_policy(),
        group_name="core",
        kinds={"postgres", "python"},
        owners=OWNERS,
        # The derivation's version (`NormalizeSpec.version`): bumping it marks the partitions
        # stale in the UI, and a backfill then re-derives every day in full from raw.documents,
        # rewriting only rows whose derivation changed.
        code_version=spec.version,
        description=normalization.description,
    )
    def _normalized(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        start, end = partition_days(context)
        totals = {table: UpsertCounts() for table in spec.tables}
        rows = dict.fromkeys(spec.tables, 0)
        documents = dead_letters = 0

        def on_day(day: NormalizedDay) -> None:
            nonlocal documents, dead_letters
            documents += day.documents
            dead_letters += day.dead_letters
            for table in spec.tables:
                totals[table].add(day.counts[table])
                rows[table] += day.rows[table]
            metadata = _metadata(
                spec, day.counts, day.rows, day.documents, day.dead_letters, per_table=False
            )
            record_day(context, normalization.key, day.day, metadata)

        with warehouse.day_connections() as conns:
            normalize_days(
                conns,
                spec,
                days_between(start, end),
                run_id=context.run.run_id,
                on_day=on_day,
                worker_url=warehouse.url(),
                process_min_documents=warehouse.process_min_documents,
            )
        run = _metadata(spec, totals, rows, documents, dead_letters, per_table=True)
        context.log.info(f"{normalization.key.to_user_string()} {start}..{end}: {run}")
        metadata: dict[str, Any] = {"partitions_in_run": (end - start).days + 1}
        if start == end:  # the run is its one day: the per-table figures are the day's own
            metadata.update(run)
        return dg.MaterializeResult(metadata=metadata)

    return _normalized
