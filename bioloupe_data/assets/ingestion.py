"""Landing assets: what each source changed, one row per document in `raw.documents`."""

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import dagster as dg

from bioloupe_data.assets._common import (
    OWNERS,
    SOURCE_RETRY_POLICY,
    partition_days,
    record_day,
)
from bioloupe_data.assets.sources import CLINICALTRIALS_API, PUBMED_API
from bioloupe_data.partitions import daily_backfill_policy
from bioloupe_data.pipelines import clinicaltrials, pubmed
from bioloupe_data.pipelines.landing import LandedDay
from bioloupe_data.resources import WarehouseResource
from bioloupe_data.sources.http import SourceError
from bioloupe_data.warehouse.upsert import UpsertCounts

CLINICALTRIALS_LANDING_KEY = dg.AssetKey(["raw", "clinicaltrials_gov"])
PUBMED_LANDING_KEY = dg.AssetKey(["raw", "pubmed"])

LandRange = Callable[..., list[LandedDay]]


@dataclass(frozen=True, slots=True)
class LandingSource:
    """How one source's days are fetched and landed, and what the UI says about it."""

    name: str
    key: dg.AssetKey
    api: dg.AssetSpec
    resource_key: str
    land_range: LandRange
    description: str
    # `land_range` takes a connection of its own to look stored documents up while it reads.
    looks_up_stored: bool = False


CLINICALTRIALS_LANDING = LandingSource(
    name="clinicaltrials_gov",
    key=CLINICALTRIALS_LANDING_KEY,
    api=CLINICALTRIALS_API,
    resource_key="clinicaltrials",
    land_range=clinicaltrials.land_range,
    looks_up_stored=True,
    description="""ClinicalTrials.gov studies whose last update was posted on the partition's day,
landed as JSON in `raw.documents` (source `clinicaltrials_gov`), newest version only.

A range of days is one paged API query (`AREA[LastUpdatePostDate]RANGE[…]`) split by day; each
day commits on its own and is recorded as materialized when it commits. Fetch bookkeeping (the
API's `totalCount` beside what landed) goes to `ops.partition_fetches`; records that cannot be
landed go to `ops.dead_letters`.""",
)

PUBMED_LANDING = LandingSource(
    name="pubmed",
    key=PUBMED_LANDING_KEY,
    api=PUBMED_API,
    resource_key="pubmed",
    land_range=pubmed.land_range,
    description="""PubMed citations modified on the partition's day (`DateRevised`, else the entrez
date), landed as their efetch XML in `raw.documents` (source `pubmed`), newest version only.

A range of days is one esearch by modification date on the history server, split by PMID ranges
while a part exceeds 9,999 records, then efetch in batches; each day commits on its own and is
recorded as materialized when it commits. `ops.partition_fetches` keeps esearch's `Count` for
the range beside what landed; unusable records go to `ops.dead_letters`.""",
)


def _day_metadata(day: LandedDay) -> dict[str, Any]:
    return {
        "dagster/row_count": day.landed,
        **day.counts.as_metadata(),
        "received": day.received,
        "dead_letters": day.dead_letters,
        "source_total_count": day.source_total,
    }


def build_landing_asset(
    source: LandingSource,
    partitions_def: dg.PartitionsDefinition,
    retry_policy: dg.RetryPolicy | None = SOURCE_RETRY_POLICY,
) -> dg.AssetsDefinition:
    """The landing asset of `source`; `retry_policy` is the step-level retry on top of the HTTP
    client's own retries of single requests."""

    @dg.asset(
        key=source.key,
        deps=[source.api],
        partitions_def=partitions_def,
        backfill_policy=daily_backfill_policy(),
        group_name="raw",
        kinds={"postgres", "python"},
        owners=OWNERS,
        pool=source.name,
        retry_policy=retry_policy,
        code_version="1",
        description=source.description,
        required_resource_keys={"warehouse", source.resource_key},
    )
    def _landing(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        warehouse: WarehouseResource = context.resources.warehouse
        api = getattr(context.resources, source.resource_key)
        start, end = partition_days(context)
        totals = UpsertCounts()
        landed_days: list[LandedDay] = []

        def on_day(day: LandedDay) -> None:
            landed_days.append(day)
            totals.add(day.counts)
            record_day(context, source.key, day.day, _day_metadata(day))

        with (
            api.client(context.log) as client,
            warehouse.day_connections() as conns,
            ExitStack() as stack,
        ):
            lookup = (
                {"lookup": stack.enter_context(warehouse.connection())}
                if source.looks_up_stored
                else {}
            )
            try:
                source.land_range(
                    conns, client, start, end, run_id=context.run.run_id, on_day=on_day, **lookup
                )
            except SourceError as exc:
                done = max(d.day for d in landed_days).isoformat() if landed_days else "none"
                raise dg.Failure(
                    description=(
                        f"{source.name} partitions {start}..{end} failed "
                        f"(latest day committed: {done}): {exc}"
                    ),
                    allow_retries=True,
                ) from None
            retries = len(client.http.retries)
        context.log.info(
            f"{source.name} {start}..{end}: {sum(d.landed for d in landed_days)} documents "
            f"landed of {sum(d.received for d in landed_days)} received over "
            f"{len(landed_days)} days ({totals.as_metadata()}), "
            f"{sum(d.dead_letters for d in landed_days)} dead letters, {retries} HTTP retries"
        )
        return dg.MaterializeResult(
            metadata={"partitions_in_run": len(landed_days), "http_retries": retries}
        )

    return _landing
