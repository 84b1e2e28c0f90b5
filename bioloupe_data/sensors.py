"""Sensors: new drugs and sponsors in the warehouse become dynamic partitions, and their
profiles are requested in the same tick; the daily jobs' missing and failed days are caught up
after downtime."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from bioloupe_data.assets.enrichment import (
    DRUG_PROFILES_KEY,
    DRUGS_KEY,
    SPONSOR_PROFILES_KEY,
    SPONSORS_KEY,
)
from bioloupe_data.catch_up import DayState, catch_up_window, plan_catch_up
from bioloupe_data.partitions import (
    MAX_DAYS_PER_RUN,
    MAX_ENTITIES_PER_RUN,
    RANGE_END_TAG,
    RANGE_START_TAG,
    drug_partitions,
    sponsor_partitions,
)
from bioloupe_data.pipelines.entities import registered_since
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.resources import WarehouseResource
from bioloupe_data.settings import CatchUpSettings


@dataclass(frozen=True, slots=True)
class EntityKind:
    table: str
    partitions: dg.DynamicPartitionsDefinition
    profile_key: dg.AssetKey


ENTITY_KINDS = (
    EntityKind("drugs", drug_partitions, DRUG_PROFILES_KEY),
    EntityKind("sponsors", sponsor_partitions, SPONSOR_PROFILES_KEY),
)


def batched_run_requests(
    kind: EntityKind, keys: Sequence[str], last_seq: int
) -> list[dg.RunRequest]:
    """Range runs over consecutive new keys (in the order they are added as partitions); the
    run key names the range, so a repeated tick never requests it twice."""
    requests = []
    for i in range(0, len(keys), MAX_ENTITIES_PER_RUN):
        batch = keys[i : i + MAX_ENTITIES_PER_RUN]
        requests.append(
            dg.RunRequest(
                run_key=f"{kind.table}:{batch[0]}..{batch[-1]}@{last_seq}",
                asset_selection=[kind.profile_key],
                tags={RANGE_START_TAG: batch[0], RANGE_END_TAG: batch[-1]},
            )
        )
    return requests


def build_registration_sensor(kind: EntityKind) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{kind.table}_registration_sensor",
        target=[kind.profile_key],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Registers {kind.table} first seen since the last tick as partitions of "
            f"`{kind.partitions.name}` and requests their profiles in batched range runs; keys "
            "already known are never added again."
        ),
    )
    def _registration(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        after = int(context.cursor) if context.cursor else 0
        with warehouse.connection() as conn:
            seen = registered_since(conn, kind.table, after)
        if not seen:
            return dg.SkipReason(f"no new {kind.table}")
        known = set(context.instance.get_dynamic_partitions(kind.partitions.name))
        new = list(dict.fromkeys(e.key for e in seen if e.key not in known))
        return dg.SensorResult(
            run_requests=batched_run_requests(kind, new, seen[-1].seq),
            dynamic_partitions_requests=[kind.partitions.build_add_request(new)] if new else [],
            cursor=str(seen[-1].seq),
        )

    return _registration


drug_registration_sensor = build_registration_sensor(ENTITY_KINDS[0])
sponsor_registration_sensor = build_registration_sensor(ENTITY_KINDS[1])


# `enriched/drugs` and `enriched/sponsors` follow `core/trials` (eager automation conditions);
# this sensor evaluates them, on from the start.
entity_automation_sensor = dg.AutomationConditionSensorDefinition(
    name="entity_automation_sensor",
    target=dg.AssetSelection.assets(DRUGS_KEY, SPONSORS_KEY),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)

# The latest landscape day and the rollups follow their upstreams (see assets/analytics.py);
# past days are refreshed by backfills.
analytics_automation_sensor = dg.AutomationConditionSensorDefinition(
    name="analytics_automation_sensor",
    target=dg.AssetSelection.groups("analytics"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)


@dataclass(frozen=True, slots=True)
class CatchUpTarget:
    """A source's daily job, the assets that must all be materialized for a day to count as
    done, and the hour (UTC) its schedule ticks."""

    job: dg.UnresolvedAssetJobDefinition
    asset_keys: tuple[dg.AssetKey, ...]
    schedule_hour: int


# In-flight runs: queued, starting, running or being canceled.
_IN_FLIGHT = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
CATCH_UP_TAG = "bioloupe/catch_up_attempt"
# The schedule gets this long to create its own run before the catch-up treats its day as due.
SCHEDULE_GRACE = timedelta(hours=1)


def _run_days(tags: Mapping[str, str]) -> list[date]:
    """The days a run of a daily job covers, from its partition tags."""
    single = tags.get("dagster/partition")
    start, end = tags.get(RANGE_START_TAG, single), tags.get(RANGE_END_TAG, single)
    if not start or not end:
        return []
    try:
        return days_between(date.fromisoformat(start), date.fromisoformat(end))
    except ValueError:
        return []


def _days_of_runs(
    instance: dg.DagsterInstance,
    job_name: str,
    statuses: Sequence[dg.DagsterRunStatus],
    since: datetime,
) -> Counter[date]:
    records = instance.get_run_records(
        dg.RunsFilter(job_name=job_name, statuses=list(statuses), created_after=since)
    )
    return Counter(day for record in records for day in _run_days(record.dagster_run.tags))


def day_states(
    instance: dg.DagsterInstance,
    target: CatchUpTarget,
    partitions_def: dg.PartitionsDefinition,
    days: Sequence[date],
) -> list[DayState]:
    """Each day's state from the instance: materialized by every asset of the job, covered by
    an in-flight run, and how many failed runs covered it."""
    keys = [day.isoformat() for day in days]
    done = set(keys)
    running: set[str] = set()
    for asset_key in target.asset_keys:
        statuses = instance.get_status_by_partition(asset_key, keys, partitions_def) or {}
        done &= {k for k, s in statuses.items() if s == dg.AssetPartitionStatus.MATERIALIZED}
        running |= {k for k, s in statuses.items() if s == dg.AssetPartitionStatus.IN_PROGRESS}
    # Failed runs are counted from the window's first day on (a run cannot cover a day before
    # it existed), so old failures outside the window never count.
    since = (
        datetime.combine(days[0], datetime.min.time(), tzinfo=UTC) if days else datetime.now(UTC)
    )
    in_flight = _days_of_runs(instance, target.job.name, _IN_FLIGHT, since)
    failures = _days_of_runs(instance, target.job.name, [dg.DagsterRunStatus.FAILURE], since)
    return [
        DayState(
            day=day,
            done=day.isoformat() in done,
            in_flight=day.isoformat() in running or day in in_flight,
            failures=failures[day],
        )
        for day in days
    ]


def build_catch_up_sensor(
    targets: Sequence[CatchUpTarget],
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settings: CatchUpSettings,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dg.SensorDefinition:
    """One sensor for every source's daily job: launches missing and failed days of the
    lookback window, oldest first, as range runs (see `bioloupe_data.catch_up`)."""
    first_day = partitions_def.start.date()

    @dg.sensor(
        name="daily_catch_up_sensor",
        jobs=[target.job for target in targets],
        minimum_interval_seconds=settings.interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Launches the missing and failed days of the last {settings.lookback_days} days of "
            "each source's daily job (the scheduler does not catch up after downtime), oldest "
            f"first as range runs; a day that failed {settings.max_attempts} times is left "
            "alone; nothing is launched for a day whose run is queued or in progress."
        ),
    )
    def _catch_up(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        requests: list[dg.RunRequest] = []
        notes: list[str] = []
        now = clock()
        for target in targets:
            window = catch_up_window(
                now,
                schedule_hour=target.schedule_hour,
                grace=SCHEDULE_GRACE,
                lookback_days=settings.lookback_days,
                first_day=first_day,
            )
            states = day_states(context.instance, target, partitions_def, window)
            plan = plan_catch_up(
                states, max_attempts=settings.max_attempts, max_days_per_run=MAX_DAYS_PER_RUN
            )
            for run in plan.runs:
                requests.append(
                    dg.RunRequest(
                        run_key=run.run_key(target.job.name),
                        job_name=target.job.name,
                        tags={
                            RANGE_START_TAG: run.start.isoformat(),
                            RANGE_END_TAG: run.end.isoformat(),
                            CATCH_UP_TAG: str(run.attempt),
                        },
                    )
                )
            if plan.exhausted:
                context.log.warning(
                    f"{target.job.name}: {len(plan.exhausted)} day(s) failed "
                    f"{settings.max_attempts} times and are left alone: "
                    + ", ".join(day.isoformat() for day in plan.exhausted[:10])
                )
            notes.append(
                f"{target.job.name}: {plan.pending_days} day(s) in {len(plan.runs)} run(s), "
                f"{len(plan.in_flight)} in flight, {len(plan.exhausted)} exhausted"
            )
        if not requests:
            return dg.SkipReason("nothing to catch up; " + "; ".join(notes))
        context.log.info("; ".join(notes))
        return dg.SensorResult(run_requests=requests)

    return _catch_up
