"""Which daily partitions a source's catch-up should launch, and in which runs (no dagster here).

Dagster's scheduler does not catch up partitioned schedules after downtime, so a sensor does:
it reads each day's state in a lookback window and this module plans the runs.

- A day is *pending* when some asset of the job is not materialized for it (missing, or its last
  attempt failed), no run for it is queued or in progress, and fewer than `max_attempts` runs
  covering it have failed. Days at the bound are *exhausted*: left for a person to look at.
- Consecutive pending days form one range run, at most `max_days_per_run` long (the assets'
  BackfillPolicy), oldest first. A gap (a done, running or exhausted day) starts a new run:
  days already done are never fetched again.
- A run's attempt is one more than the most failures of any of its days; its run key names the
  job, the range and the attempt, so a tick never launches a range twice, while a range whose
  run failed is launched again (a new attempt, a new key) until the bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True, slots=True)
class DayState:
    day: date
    done: bool
    in_flight: bool = False
    failures: int = 0


@dataclass(frozen=True, slots=True)
class CatchUpRun:
    start: date
    end: date
    attempt: int

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def run_key(self, job_name: str) -> str:
        return f"catch-up:{job_name}:{self.start}..{self.end}:attempt-{self.attempt}"


@dataclass(slots=True)
class CatchUpPlan:
    runs: list[CatchUpRun] = field(default_factory=list)
    in_flight: list[date] = field(default_factory=list)
    exhausted: list[date] = field(default_factory=list)

    @property
    def pending_days(self) -> int:
        return sum(run.days for run in self.runs)


def plan_catch_up(
    states: Iterable[DayState], *, max_attempts: int, max_days_per_run: int
) -> CatchUpPlan:
    if max_attempts < 1 or max_days_per_run < 1:
        raise ValueError("max_attempts and max_days_per_run must be at least 1")
    plan = CatchUpPlan()
    current: list[DayState] = []

    def close() -> None:
        if current:
            plan.runs.append(
                CatchUpRun(current[0].day, current[-1].day, 1 + max(s.failures for s in current))
            )
            current.clear()

    previous: date | None = None
    for state in sorted(states, key=lambda s: s.day):
        pending = not state.done and not state.in_flight and state.failures < max_attempts
        if state.in_flight and not state.done:
            plan.in_flight.append(state.day)
        elif not state.done and not pending:
            plan.exhausted.append(state.day)
        adjacent = previous is not None and state.day == previous + timedelta(days=1)
        if not pending or not adjacent or len(current) >= max_days_per_run:
            close()
        if pending:
            current.append(state)
        previous = state.day
    close()
    return plan


def catch_up_window(
    now: datetime,
    *,
    schedule_hour: int,
    grace: timedelta,
    lookback_days: int,
    first_day: date,
) -> list[date]:
    """The days whose scheduled run should have started by now (its tick time plus `grace`,
    so a catch-up never races the schedule), the newest `lookback_days` of them."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # Day D is scheduled at D + 1 day + schedule_hour (UTC).
    cutoff = now.astimezone(UTC) - grace - timedelta(hours=schedule_hour)
    last = cutoff.date() - timedelta(days=1)
    first = max(first_day, last - timedelta(days=lookback_days - 1))
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
