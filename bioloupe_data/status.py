"""Partition coverage read from the Dagster instance: for each partitioned asset, which
partitions of a window of days are materialized, failed, in progress or missing; the date ×
tumor-area grid of a multi-partitioned asset; and a summary of the assets partitioned by key
(dynamic entities, static areas)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import Enum

import dagster as dg

from bioloupe_data.pipelines.landing import days_between


class State(Enum):
    MATERIALIZED = "materialized"
    FAILED = "failed"
    IN_PROGRESS = "in progress"
    MISSING = "missing"


_FROM_DAGSTER = {
    dg.AssetPartitionStatus.MATERIALIZED: State.MATERIALIZED,
    dg.AssetPartitionStatus.FAILED: State.FAILED,
    dg.AssetPartitionStatus.IN_PROGRESS: State.IN_PROGRESS,
}
GAPS = (State.MISSING, State.FAILED)


@dataclass(frozen=True)
class DailyCoverage:
    """A daily asset over the window (days before its first partition are left out)."""

    key: str
    days: list[date]
    states: dict[date, State]

    @property
    def counts(self) -> Counter[State]:
        return Counter(self.states.values())

    @property
    def gaps(self) -> list[date]:
        return [day for day in self.days if self.states[day] in GAPS]


@dataclass(frozen=True)
class GridCoverage:
    """A date × category asset (the landscape) over the window."""

    key: str
    days: list[date]
    rows: list[str]
    states: dict[tuple[date, str], State]

    @property
    def counts(self) -> Counter[State]:
        return Counter(self.states.values())

    @property
    def gaps(self) -> list[tuple[date, str]]:
        return [cell for cell, state in self.states.items() if state in GAPS]


@dataclass(frozen=True)
class KeyedCoverage:
    """An asset partitioned by key, not by day (dynamic entities, static areas): every key, not
    a window."""

    key: str
    partitions: str
    total: int
    counts: Counter[State]
    newest: str | None
    failed: list[str]


@dataclass
class StatusReport:
    start: date
    end: date
    daily: list[DailyCoverage] = field(default_factory=list)
    grids: list[GridCoverage] = field(default_factory=list)
    keyed: list[KeyedCoverage] = field(default_factory=list)

    @property
    def has_gaps(self) -> bool:
        """Any day (or day × area) of the window missing or failed."""
        return any(c.gaps for c in self.daily) or any(g.gaps for g in self.grids)


def default_window(today: date, days: int = 30) -> tuple[date, date]:
    """The last `days` complete days (partitions of a day exist once it is over)."""
    end = today - timedelta(days=1)
    return end - timedelta(days=days - 1), end


def _states(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    partition_keys: Sequence[str],
) -> dict[str, State]:
    found = instance.get_status_by_partition(key, list(partition_keys), partitions_def) or {}
    return {k: _FROM_DAGSTER.get(found.get(k), State.MISSING) for k in partition_keys}  # type: ignore[arg-type]


def _window_days(
    partitions_def: dg.TimeWindowPartitionsDefinition, start: date, end: date
) -> list[date]:
    return days_between(max(start, partitions_def.start.date()), end)


def coverage(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    start: date,
    end: date,
    asset: dg.AssetKey | None = None,
) -> StatusReport:
    """Coverage of every partitioned asset of `defs` (or only `asset`) over start..end."""
    report = StatusReport(start, end)
    graph = defs.resolve_asset_graph()
    keys = [asset] if asset is not None else sorted(graph.get_all_asset_keys())
    for key in keys:
        node = graph.get(key)
        partitions_def = node.partitions_def
        if partitions_def is None or not node.is_materializable:
            continue
        name = key.to_user_string()
        if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            days = _window_days(partitions_def, start, end)
            states = _states(instance, key, partitions_def, [d.isoformat() for d in days])
            report.daily.append(DailyCoverage(name, days, {d: states[d.isoformat()] for d in days}))
        elif isinstance(partitions_def, dg.MultiPartitionsDefinition):
            report.grids.append(_grid(instance, key, partitions_def, start, end))
        elif isinstance(partitions_def, dg.DynamicPartitionsDefinition):
            registered = list(instance.get_dynamic_partitions(partitions_def.name or ""))
            report.keyed.append(
                _keyed(instance, key, partitions_def, partitions_def.name or "", registered)
            )
        elif isinstance(partitions_def, dg.StaticPartitionsDefinition):
            static_keys = partitions_def.get_partition_keys()
            report.keyed.append(_keyed(instance, key, partitions_def, "static", static_keys))
    return report


def _grid(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    partitions_def: dg.MultiPartitionsDefinition,
    start: date,
    end: date,
) -> GridCoverage:
    time_dimension = partitions_def.time_window_dimension
    other = next(d for d in partitions_def.partitions_defs if d.name != time_dimension.name)
    time_def = time_dimension.partitions_def
    assert isinstance(time_def, dg.TimeWindowPartitionsDefinition)
    days = _window_days(time_def, start, end)
    rows = list(other.partitions_def.get_partition_keys())
    cells = {
        (day, row): dg.MultiPartitionKey({time_dimension.name: day.isoformat(), other.name: row})
        for day in days
        for row in rows
    }
    states = _states(instance, key, partitions_def, list(cells.values()))
    return GridCoverage(
        key.to_user_string(), days, rows, {cell: states[k] for cell, k in cells.items()}
    )


def _keyed(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    name: str,
    partition_keys: Sequence[str],
) -> KeyedCoverage:
    states = _states(instance, key, partitions_def, partition_keys) if partition_keys else {}
    return KeyedCoverage(
        key.to_user_string(),
        name,
        len(partition_keys),
        Counter(states.values()),
        partition_keys[-1] if partition_keys else None,
        [k for k, state in states.items() if state is State.FAILED],
    )
