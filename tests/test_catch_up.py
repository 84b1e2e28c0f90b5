"""The catch-up after downtime: which days it launches, in which runs, and how often it retries
a failed day (the plan, and the sensor against a real Dagster instance)."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from bioloupe_data.catch_up import DayState, catch_up_window, plan_catch_up
from bioloupe_data.partitions import RANGE_END_TAG, RANGE_START_TAG
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.sensors import CATCH_UP_TAG, CatchUpTarget, build_catch_up_sensor
from bioloupe_data.settings import CatchUpSettings

D = date(2026, 1, 1)


def _states(done: str, *, failures: dict[int, int] | None = None, flying: str = "") -> list:
    """One state per character of `done` ('x' done, '.' missing), from D on."""
    failures = failures or {}
    return [
        DayState(D + timedelta(days=i), c == "x", flying[i : i + 1] == "r", failures.get(i, 0))
        for i, c in enumerate(done)
    ]


def test_consecutive_missing_days_are_one_run_and_done_days_split_runs() -> None:
    plan = plan_catch_up(_states("xx...x..x"), max_attempts=3, max_days_per_run=365)
    assert [(r.start, r.end, r.attempt) for r in plan.runs] == [
        (D + timedelta(days=2), D + timedelta(days=4), 1),
        (D + timedelta(days=6), D + timedelta(days=7), 1),
    ]
    assert plan.pending_days == 5


def test_a_run_is_never_longer_than_the_backfill_policy_allows() -> None:
    plan = plan_catch_up(_states("." * 10), max_attempts=3, max_days_per_run=4)
    assert [r.days for r in plan.runs] == [4, 4, 2]
    assert plan.runs[0].start == D and plan.runs[-1].end == D + timedelta(days=9)


def test_days_in_flight_are_not_launched_and_split_runs() -> None:
    plan = plan_catch_up(_states("....", flying=" r  "), max_attempts=3, max_days_per_run=365)
    assert [(r.start, r.end) for r in plan.runs] == [
        (D, D),
        (D + timedelta(days=2), D + timedelta(days=3)),
    ]
    assert plan.in_flight == [D + timedelta(days=1)]


def test_failed_days_are_retried_with_a_higher_attempt_until_the_bound() -> None:
    plan = plan_catch_up(_states("...", failures={1: 1}), max_attempts=3, max_days_per_run=365)
    assert [(r.start, r.end, r.attempt) for r in plan.runs] == [(D, D + timedelta(days=2), 2)]
    assert plan.runs[0].run_key("job") == f"catch-up:job:{D}..{D + timedelta(days=2)}:attempt-2"

    plan = plan_catch_up(_states("...", failures={1: 3}), max_attempts=3, max_days_per_run=365)
    assert plan.exhausted == [D + timedelta(days=1)]
    assert [(r.start, r.end, r.attempt) for r in plan.runs] == [
        (D, D, 1),
        (D + timedelta(days=2), D + timedelta(days=2), 1),
    ]


def test_nothing_to_do_when_every_day_is_done() -> None:
    plan = plan_catch_up(_states("xxxx"), max_attempts=1, max_days_per_run=1)
    assert plan.runs == plan.exhausted == plan.in_flight == []


def test_the_window_ends_with_the_last_day_whose_schedule_is_past_its_grace() -> None:
    def last(now: datetime) -> date:
        window = catch_up_window(
            now, schedule_hour=7, grace=timedelta(hours=1), lookback_days=30, first_day=D
        )
        return window[-1]

    # Day X is scheduled at X+1 07:00; with an hour's grace it is due from X+1 08:00.
    assert last(datetime(2026, 3, 10, 8, 0, tzinfo=UTC)) == date(2026, 3, 9)
    assert last(datetime(2026, 3, 10, 7, 59, tzinfo=UTC)) == date(2026, 3, 8)
    window = catch_up_window(
        datetime(2026, 3, 10, 9, tzinfo=UTC),
        schedule_hour=7,
        grace=timedelta(hours=1),
        lookback_days=30,
        first_day=D,
    )
    assert len(window) == 30 and window == days_between(window[0], window[-1])
    clipped = catch_up_window(
        datetime(2026, 1, 5, 9, tzinfo=UTC),
        schedule_hour=7,
        grace=timedelta(hours=1),
        lookback_days=30,
        first_day=D,
    )
    assert clipped == days_between(D, date(2026, 1, 4))
    with pytest.raises(ValueError):
        catch_up_window(
            datetime(2026, 1, 5), schedule_hour=7, grace=timedelta(0), lookback_days=1, first_day=D
        )


# --- the sensor against a real instance ---------------------------------------------------------

DAILY = dg.DailyPartitionsDefinition(start_date="2025-12-01", timezone="UTC", end_offset=0)
NOW = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)  # due: every day up to 2026-01-31
LAST = date(2026, 1, 31)


class FailingDays(dg.ConfigurableResource):
    days: str = ""  # comma-separated partition keys


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.multi_run(365))
def landed(context: dg.AssetExecutionContext, failing: FailingDays) -> None:
    bad = sorted(set(context.partition_keys) & set(failing.days.split(",")))
    if bad:
        raise RuntimeError(f"source unavailable for {bad}")


daily_job = dg.define_asset_job("daily_job", selection=[landed])
TARGET = CatchUpTarget(daily_job, (landed.key,), schedule_hour=7)
SETTINGS = CatchUpSettings(lookback_days=30, max_attempts=2, interval_seconds=60)


@pytest.fixture
def job_defs() -> Iterator[dg.Definitions]:
    yield dg.Definitions(
        assets=[landed],
        jobs=[daily_job],
        sensors=[build_catch_up_sensor([TARGET], DAILY, SETTINGS, clock=lambda: NOW)],
        resources={"failing": FailingDays()},
    )


def _run(
    instance: dg.DagsterInstance, defs: dg.Definitions, start: date, end: date, fail: list[str]
) -> bool:
    job = defs.resolve_job_def("daily_job")
    result = job.execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: start.isoformat(), RANGE_END_TAG: end.isoformat()},
        resources={"failing": FailingDays(days=",".join(fail))},
        raise_on_error=False,
    )
    return result.success


def _tick(instance: dg.DagsterInstance, defs: dg.Definitions) -> dg.SensorResult | dg.SkipReason:
    sensor = defs.resolve_sensor_def("daily_catch_up_sensor")
    return sensor(dg.build_sensor_context(instance=instance, definitions=defs))


def _ranges(result: dg.SensorResult | dg.SkipReason) -> list[tuple[str, str, str]]:
    assert isinstance(result, dg.SensorResult)
    return [
        (r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG], r.tags[CATCH_UP_TAG])
        for r in result.run_requests or []
    ]


def test_after_a_five_day_outage_exactly_those_days_are_launched_in_one_run(
    instance: dg.DagsterInstance, job_defs: dg.Definitions
) -> None:
    window_start = LAST - timedelta(days=29)
    assert _run(instance, job_defs, window_start - timedelta(days=3), LAST - timedelta(days=5), [])
    result = _tick(instance, job_defs)
    assert _ranges(result) == [("2026-01-27", "2026-01-31", "1")]
    assert isinstance(result, dg.SensorResult)
    request = (result.run_requests or [])[0]
    assert request.job_name == "daily_job"
    assert request.run_key == "catch-up:daily_job:2026-01-27..2026-01-31:attempt-1"

    # Once those days have run, nothing is left to catch up.
    assert _run(instance, job_defs, date(2026, 1, 27), LAST, [])
    assert isinstance(_tick(instance, job_defs), dg.SkipReason)


def test_a_day_whose_run_is_queued_is_not_launched_again(
    instance: dg.DagsterInstance, job_defs: dg.Definitions
) -> None:
    assert _run(instance, job_defs, LAST - timedelta(days=29), LAST - timedelta(days=2), [])
    # A run created for the last day and not started yet (as a schedule tick leaves it).
    # create_run_for_job is the instance's own method; there is no other public way to make a
    # run record without executing it.
    instance.create_run_for_job(
        job_def=job_defs.resolve_job_def("daily_job"),
        tags={RANGE_START_TAG: LAST.isoformat(), RANGE_END_TAG: LAST.isoformat()},
        status=dg.DagsterRunStatus.NOT_STARTED,
    )
    assert _ranges(_tick(instance, job_defs)) == [("2026-01-30", "2026-01-30", "1")]


def test_a_failed_day_is_retried_up_to_the_bound_and_then_left_alone(
    instance: dg.DagsterInstance, job_defs: dg.Definitions
) -> None:
    assert _run(instance, job_defs, LAST - timedelta(days=29), LAST - timedelta(days=1), [])
    for attempt in (1, 2):
        assert _ranges(_tick(instance, job_defs)) == [("2026-01-31", "2026-01-31", str(attempt))]
        assert not _run(instance, job_defs, LAST, LAST, [LAST.isoformat()])
    result = _tick(instance, job_defs)
    assert isinstance(result, dg.SkipReason)
    assert "1 exhausted" in (result.skip_message or "")
