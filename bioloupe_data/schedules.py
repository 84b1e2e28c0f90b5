"""Per-source jobs over the daily landing and normalizing assets, and their schedules."""

from __future__ import annotations

import dagster as dg

from bioloupe_data.assets.enrichment import SITE_GEOCODES_KEY, TRIAL_FEATURES_KEY
from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY, PUBMED_LANDING_KEY

CLINICALTRIALS_JOB_NAME = "clinicaltrials_gov_daily"
PUBMED_JOB_NAME = "pubmed_daily"


def source_job(
    name: str, landing_key: dg.AssetKey, description: str, *also: dg.AssetKey
) -> dg.UnresolvedAssetJobDefinition:
    """A source's landing asset, what normalizes it and the daily assets derived from it, in
    one run per range of days."""
    return dg.define_asset_job(
        name=name,
        selection=(
            dg.AssetSelection.assets(landing_key)
            | dg.AssetSelection.assets(landing_key).downstream(depth=1)
            | dg.AssetSelection.assets(*also)
        ).without_checks(),
        description=description,
    )


def clinicaltrials_job() -> dg.UnresolvedAssetJobDefinition:
    return source_job(
        CLINICALTRIALS_JOB_NAME,
        CLINICALTRIALS_LANDING_KEY,
        "Land ClinicalTrials.gov days, normalize them, geocode their sites, extract features.",
        SITE_GEOCODES_KEY,
        TRIAL_FEATURES_KEY,
    )


def pubmed_job() -> dg.UnresolvedAssetJobDefinition:
    return source_job(
        PUBMED_JOB_NAME, PUBMED_LANDING_KEY, "Land PubMed days and normalize them into `core`."
    )


def clinicaltrials_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    # The registry publishes its daily update overnight (US Eastern); 07:00 UTC is after it.
    return dg.build_schedule_from_partitioned_job(job, hour_of_day=7, minute_of_hour=0)


def pubmed_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    # NCBI's daily update files appear overnight (US Eastern); 08:00 UTC is after them.
    return dg.build_schedule_from_partitioned_job(job, hour_of_day=8, minute_of_hour=0)
