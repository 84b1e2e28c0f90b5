"""Asset checks: blocking data checks on the daily landing assets, freshness checks on every
daily asset, and the integrity of the core tables.

The landing checks are partitioned like the assets they check and evaluated over exactly the
days of the run, so a range run of a year yields one evaluation per check and day. They are
blocking with ERROR severity: when one fails for any day of the range, the run's normalizing
step (and what follows it) does not start.
"""

import warnings
from collections import defaultdict
from collections.abc import Iterator
from datetime import date

import dagster as dg

from bioloupe_data.assets.enrichment import SITE_GEOCODES_KEY, TRIAL_FEATURES_KEY
from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING, PUBMED_LANDING, LandingSource
from bioloupe_data.assets.normalize import (
    PUBLICATIONS_NORMALIZATION,
    TRIALS_NORMALIZATION,
    Normalization,
)
from bioloupe_data.resources import WarehouseResource
from bioloupe_data.schedules import CLINICALTRIALS_DEADLINE_HOUR, PUBMED_DEADLINE_HOUR
from bioloupe_data.warehouse import quality
from bioloupe_data.warehouse.quality import DayVerdicts, DeadLetterThreshold, Verdict

KEYS_CHECK = "document_keys"
REQUIRED_FIELDS_CHECK = "required_fields"
DEAD_LETTER_CHECK = "dead_letter_rate"
COMPLETENESS_CHECK = "matches_source_total"
LANDING_CHECK_NAMES = (KEYS_CHECK, REQUIRED_FIELDS_CHECK, DEAD_LETTER_CHECK, COMPLETENESS_CHECK)
# Every check result is one event written on its own (Dagster does not batch them): a run of up
# to this many days records a result per check and day; a longer one (a backfill) records the
# failing days only and logs how many passed, so a 20-year backfill does not spend half an hour
# writing results.
PER_DAY_RESULTS_MAX_DAYS = 31
FRESHNESS_CHECK = "freshness_check"  # the name Dagster's freshness check builders give
CHILDREN_CHECK = "child_rows_have_parents"
INTEGRITY_CHECKED = (TRIALS_NORMALIZATION, PUBLICATIONS_NORMALIZATION)

CLINICALTRIALS_DAILY_KEYS = (
    CLINICALTRIALS_LANDING.key,
    TRIALS_NORMALIZATION.key,
    SITE_GEOCODES_KEY,
    TRIAL_FEATURES_KEY,
)
PUBMED_DAILY_KEYS = (PUBMED_LANDING.key, PUBLICATIONS_NORMALIZATION.key)


def _verdict(verdicts: DayVerdicts, check_name: str) -> Verdict:
    return {
        KEYS_CHECK: verdicts.keys,
        REQUIRED_FIELDS_CHECK: verdicts.required_fields,
        DEAD_LETTER_CHECK: verdicts.dead_letters,
        COMPLETENESS_CHECK: verdicts.completeness,
    }[check_name]


def _descriptions(source: LandingSource, threshold: DeadLetterThreshold) -> dict[str, str]:
    rules = quality.RULES[source.name]
    return {
        KEYS_CHECK: (
            "Every document landed on the day has a key that is not blank, unique, "
            f"{rules.key_format_label} and the key its own payload states."
        ),
        REQUIRED_FIELDS_CHECK: (
            "Every document landed on the day has its required fields: "
            + ", ".join(rules.required)
            + "."
        ),
        DEAD_LETTER_CHECK: (
            f"No more than {threshold.max_rate:.0%} of the records received for the day were "
            f"rejected into ops.dead_letters (a day with fewer than {threshold.min_count} "
            "rejects passes). Run config `max_dead_letter_rate` / `min_dead_letters` of the "
            "checks' op changes the limit for a run."
        ),
        COMPLETENESS_CHECK: (
            "The source's own total for the fetch (recorded in ops.partition_fetches) equals "
            "the records landed plus those dead-lettered over the days that fetch covered."
        ),
    }


def build_landing_checks(
    partitions_def: dg.PartitionsDefinition,
    threshold: DeadLetterThreshold | None = None,
) -> list[dg.AssetChecksDefinition]:
    """The blocking data checks of both landing assets (one op per source evaluates all four).

    `partitions_def` must be the landing assets' own; `threshold` sets the dead-letter limit's
    default, which run config can still change per run.
    """
    threshold = threshold or DeadLetterThreshold()
    return [
        _build_source_checks(source, partitions_def, threshold)
        for source in (CLINICALTRIALS_LANDING, PUBMED_LANDING)
    ]


def _build_source_checks(
    source: LandingSource,
    partitions_def: dg.PartitionsDefinition,
    threshold: DeadLetterThreshold,
) -> dg.AssetChecksDefinition:
    descriptions = _descriptions(source, threshold)
    # Partitioned asset checks are a preview feature of Dagster 1.13; the warning is known.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [
            dg.AssetCheckSpec(
                name,
                asset=source.key,
                description=descriptions[name],
                blocking=True,
                partitions_def=partitions_def,
            )
            for name in LANDING_CHECK_NAMES
        ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{source.name}_landing_checks",
        description=f"Data checks of the landed {source.name} days of the run.",
        can_subset=True,
        config_schema={
            "max_dead_letter_rate": dg.Field(
                float,
                default_value=threshold.max_rate,
                description="A day fails when a larger share of its records was dead-lettered.",
            ),
            "min_dead_letters": dg.Field(
                int,
                default_value=threshold.min_count,
                description="A day with fewer dead letters than this passes whatever the rate.",
            ),
        },
    )
    def _checks(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        yield from _evaluate(context, warehouse, source)

    return _checks


def _evaluate(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, source: LandingSource
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    if not (context.has_partition_key or context.has_partition_key_range):
        raise dg.Failure(
            description=(
                f"{source.name} landing checks need the days to check: launch the run with the "
                "tags dagster/asset_partition_range_start and dagster/asset_partition_range_end "
                "(or dagster/partition)."
            )
        )
    config = context.op_execution_context.op_config
    threshold = DeadLetterThreshold(
        max_rate=config["max_dead_letter_rate"], min_count=config["min_dead_letters"]
    )
    days = [date.fromisoformat(key) for key in context.partition_keys]
    with warehouse.connection() as conn:
        verdicts = quality.judge_days(conn, source.name, days[0], days[-1], threshold)

    assets_def = context.op_execution_context.assets_def
    failed: dict[str, list[str]] = defaultdict(list)
    every_day = len(days) <= PER_DAY_RESULTS_MAX_DAYS
    for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
        for day in days:
            verdict = _verdict(verdicts[day], check_key.name)
            if not verdict.passed:
                failed[check_key.name].append(day.isoformat())
            elif not every_day:
                continue
            # One evaluation per day, so every partition of the range has its own result (an
            # AssetCheckResult in a range run would record one for the run, none per day).
            yield dg.AssetCheckEvaluation(
                asset_key=check_key.asset_key,
                check_name=check_key.name,
                passed=verdict.passed,
                metadata=verdict.metadata,
                severity=dg.AssetCheckSeverity.ERROR,
                description=verdict.description,
                blocking=True,
                partition=day.isoformat(),
            )
        yield dg.Output(None, output_name=assets_def.get_output_name_for_asset_check_key(check_key))
    for name, failed_days in failed.items():
        shown = ", ".join(failed_days[:10]) + (" …" if len(failed_days) > 10 else "")
        context.log.error(f"{name} failed for {len(failed_days)} of {len(days)} days: {shown}")
    if not every_day:
        context.log.info(
            f"{source.name}: {len(days)} days checked; results recorded for failing days only "
            f"(runs over more than {PER_DAY_RESULTS_MAX_DAYS} days)"
        )


def build_freshness_checks() -> list[dg.AssetChecksDefinition]:
    """Freshness of every daily asset: yesterday's partition must be materialized by its
    source's deadline (`schedules.py`: the schedule's hour plus a grace period). Overdue is a
    warning: the data is late, not wrong."""
    groups = (
        (CLINICALTRIALS_DEADLINE_HOUR, CLINICALTRIALS_DAILY_KEYS),
        (PUBMED_DEADLINE_HOUR, PUBMED_DAILY_KEYS),
    )
    # These builders are superseded by FreshnessPolicy, which needs the freshness daemon and is
    # not an asset check a job can run; the warning is known.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return [
            check
            for hour, keys in groups
            for check in dg.build_time_partition_freshness_checks(
                assets=list(keys),
                deadline_cron=f"0 {hour} * * *",
                timezone="UTC",
                severity=dg.AssetCheckSeverity.WARN,
            )
        ]


def freshness_check_keys() -> list[dg.AssetCheckKey]:
    return [
        dg.AssetCheckKey(key, FRESHNESS_CHECK)
        for key in (*CLINICALTRIALS_DAILY_KEYS, *PUBMED_DAILY_KEYS)
    ]


def integrity_check_keys() -> list[dg.AssetCheckKey]:
    return [dg.AssetCheckKey(n.key, CHILDREN_CHECK) for n in INTEGRITY_CHECKED]


def build_integrity_checks() -> dg.AssetChecksDefinition:
    """Every child row of `core.trials` and `core.publications` has its parent: the check a
    foreign key would make on every insert, made once over the whole tables instead (see
    migration 009). Not part of the source jobs (it reads every child table); it has a job and
    schedule of its own."""

    def description(normalization: Normalization) -> str:
        spec = normalization.spec
        return (
            f"Every row of {', '.join(t.qualified_name for t in spec.children.values())} "
            f"belongs to a row of {spec.parent.qualified_name} ({spec.parent_key})."
        )

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(CHILDREN_CHECK, asset=n.key, description=description(n))
            for n in INTEGRITY_CHECKED
        ],
        name="core_integrity_checks",
        description="Child rows of the core tables without their parent.",
        can_subset=True,
    )
    def _checks(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[dg.AssetCheckResult]:
        selected = context.selected_asset_check_keys
        with warehouse.connection() as conn:
            for normalization in INTEGRITY_CHECKED:
                if dg.AssetCheckKey(normalization.key, CHILDREN_CHECK) not in selected:
                    continue
                spec = normalization.spec
                orphans = quality.orphan_counts(conn, spec.parent, spec.children, spec.parent_key)
                found = {name: n for name, n in orphans.items() if n}
                yield dg.AssetCheckResult(
                    asset_key=normalization.key,
                    check_name=CHILDREN_CHECK,
                    passed=not found,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"orphans": sum(orphans.values()), **orphans},
                    description=(
                        "Child rows without their parent: "
                        + ", ".join(f"{name} {n}" for name, n in found.items())
                        if found
                        else None
                    ),
                )

    return _checks
