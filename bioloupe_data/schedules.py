"""Per-source jobs over the daily landing and normalizing assets, and their schedules."""

from __future__ import annotations

import dagster as dg

from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY

CLINICALTRIALS_JOB_NAME = "clinicaltrials_gov_daily"


def clinicaltrials_job() -> dg.UnresolvedAssetJobDefinition:
    """Land ClinicalTrials.gov days and normalize them into `core`, in one run per range."""
    return dg.define_asset_job(
        name=CLINICALTRIALS_JOB_NAME,
        selection=(
            dg.AssetSelection.assets(CLINICALTRIALS_LANDING_KEY)
            | dg.AssetSelection.assets(CLINICALTRIALS_LANDING_KEY).downstream(depth=1)
        ).without_checks(),
        description=__doc__,
    )


def clinicaltrials_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    # The registry publishes its daily update overnight (US Eastern); 07:00 UTC is after it.
    return dg.build_schedule_from_partitioned_job(job, hour_of_day=7, minute_of_hour=0)
