"""Per-source jobs over the daily landing and normalizing assets, the check jobs, and their
schedules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from bioloupe_data.assets.enrichment import SITE_GEOCODES_KEY, TRIAL_FEATURES_KEY
from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY, PUBMED_LANDING_KEY
from bioloupe_data.partitions import RANGE_END_TAG, RANGE_START_TAG

CLINICALTRIALS_JOB_NAME = "clinicaltrials_gov_daily"
PUBMED_JOB_NAME = "pubmed_daily"
# The registry publishes its daily update overnight (US Eastern); 07:00 UTC is after it.
CLINICALTRIALS_SCHEDULE_HOUR = 7
# NCBI's daily update files appear overnight (US Eastern); 08:00 UTC is after them.
PUBMED_SCHEDULE_HOUR = 8
# A source's daily assets are due this long after its schedule ticks: freshness checks fail
# when yesterday's partition is still missing then.
FRESHNESS_GRACE_HOURS = 2
CLINICALTRIALS_DEADLINE_HOUR = CLINICALTRIALS_SCHEDULE_HOUR + FRESHNESS_GRACE_HOURS
PUBMED_DEADLINE_HOUR = PUBMED_SCHEDULE_HOUR + FRESHNESS_GRACE_HOURS

LANDING_CHECKS_JOB_NAME = "landing_checks"
FRESHNESS_CHECKS_JOB_NAME = "freshness_checks"
INTEGRITY_CHECKS_JOB_NAME = "integrity_checks"
# The landing checks job re-checks this many days, up to yesterday, once both sources are due.
LANDING_CHECKS_LOOKBACK_DAYS = 7


def source_job(
    name: str,
    landing_key: dg.AssetKey,
    description: str,
    *also: dg.AssetKey,
    without: Sequence[dg.AssetCheckKey] = (),
) -> dg.UnresolvedAssetJobDefinition:
    """A source's landing asset, what normalizes it and the daily assets derived from it, in
    one run per range of days.

    The selection brings the checks of these assets: the landing asset's blocking checks run
    right after it lands, and a range that fails them is not normalized; the freshness checks
    run after the last asset, so a late run clears an overdue result at once. The checks in
    `without` (whole-table checks with a job of their own) are left out."""
    return dg.define_asset_job(
        name=name,
        selection=(
            dg.AssetSelection.assets(landing_key)
            | dg.AssetSelection.assets(landing_key).downstream(depth=1)
            | dg.AssetSelection.assets(*also)
        )
        - dg.AssetSelection.checks(*without),
        description=description,
    )


def clinicaltrials_job(
    without: Sequence[dg.AssetCheckKey] = (),
) -> dg.UnresolvedAssetJobDefinition:
    return source_job(
        CLINICALTRIALS_JOB_NAME,
        CLINICALTRIALS_LANDING_KEY,
        "Land ClinicalTrials.gov days, normalize them, geocode their sites, extract features.",
        SITE_GEOCODES_KEY,
        TRIAL_FEATURES_KEY,
        without=without,
    )


def pubmed_job(without: Sequence[dg.AssetCheckKey] = ()) -> dg.UnresolvedAssetJobDefinition:
    return source_job(
        PUBMED_JOB_NAME,
        PUBMED_LANDING_KEY,
        "Land PubMed days and normalize them into `core`.",
        without=without,
    )


def clinicaltrials_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=CLINICALTRIALS_SCHEDULE_HOUR,
        minute_of_hour=0,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )


def pubmed_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.build_schedule_from_partitioned_job(
        job,
        hour_of_day=PUBMED_SCHEDULE_HOUR,
        minute_of_hour=0,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )


def landing_checks_job(
    checks: Sequence[dg.AssetChecksDefinition],
) -> dg.UnresolvedAssetJobDefinition:
    """The landing assets' data checks alone: nothing is fetched or written.

    Dagster infers a job's partitions from its assets only, so a job of partitioned checks is
    not a partitioned job: its runs name their days with the partition (range) tags."""
    return dg.define_asset_job(
        name=LANDING_CHECKS_JOB_NAME,
        selection=dg.AssetSelection.checks(*checks),
        description=(
            "Re-check landed days: document keys, required fields, dead-letter rate and the "
            "source's own totals. Launch it with the tags "
            f"`{RANGE_START_TAG}` and `{RANGE_END_TAG}` (YYYY-MM-DD) naming the days."
        ),
    )


def landing_checks_schedule(
    job: dg.UnresolvedAssetJobDefinition, partitions_def: dg.PartitionsDefinition
) -> dg.ScheduleDefinition:
    """Once both sources are due, one range run over the last days up to yesterday."""

    @dg.schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=f"30 {max(CLINICALTRIALS_DEADLINE_HOUR, PUBMED_DEADLINE_HOUR)} * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Re-checks the last {LANDING_CHECKS_LOOKBACK_DAYS} days of both sources in one "
            "range run."
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        last = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
        first = (
            context.scheduled_execution_time.date() - timedelta(days=LANDING_CHECKS_LOOKBACK_DAYS)
        ).isoformat()
        # Daily keys are ISO dates, so they compare as strings.
        earliest = partitions_def.get_first_partition_key()
        if earliest is None or earliest > last:
            return dg.SkipReason(f"no daily partition up to {last} yet")
        first = max(first, earliest)
        return dg.RunRequest(
            run_key=f"{job.name}:{first}..{last}",
            tags={RANGE_START_TAG: first, RANGE_END_TAG: last},
        )

    return _schedule


def freshness_checks_job(
    checks: Sequence[dg.AssetChecksDefinition],
) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=FRESHNESS_CHECKS_JOB_NAME,
        selection=dg.AssetSelection.checks(*checks),
        description="Is yesterday's partition of every daily asset there by its deadline?",
    )


def freshness_checks_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Just after each source's deadline. The source jobs run these checks too, so a late run
    turns its assets fresh again without waiting for the next tick."""
    hours = sorted({CLINICALTRIALS_DEADLINE_HOUR, PUBMED_DEADLINE_HOUR})
    return dg.ScheduleDefinition(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=f"5 {','.join(map(str, hours))} * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )


def integrity_checks_job(check: dg.AssetChecksDefinition) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=INTEGRITY_CHECKS_JOB_NAME,
        selection=dg.AssetSelection.checks(check),
        description="Whole-table integrity of the core tables: child rows without their parent.",
    )


def integrity_checks_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Once a day, after both sources' daily runs are due."""
    return dg.ScheduleDefinition(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=f"45 {max(CLINICALTRIALS_DEADLINE_HOUR, PUBMED_DEADLINE_HOUR)} * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
