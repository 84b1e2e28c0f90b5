"""The project's pandas I/O manager: an output replaces exactly its partitions' slice of a
warehouse table in one transaction, leaves every other row alone, and loads the slice back."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
import psycopg
import pytest

from bioloupe_data.resources import PostgresPandasIOManager, WarehouseResource

AREAS = dg.StaticPartitionsDefinition(["lung", "breast", "head & neck"])
DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-10")
GRID = dg.MultiPartitionsDefinition({"date": DAYS, "area": AREAS})

TABLES = """
CREATE SCHEMA scratch;
CREATE TABLE scratch.counts (area text, item text, n integer NOT NULL,
                             PRIMARY KEY (area, item));
CREATE TABLE scratch.daily (day date NOT NULL, item text, n integer);
CREATE TABLE scratch.grid (day date, area text, n integer NOT NULL, PRIMARY KEY (day, area));
CREATE TABLE scratch.everything (item text PRIMARY KEY, n integer NOT NULL);
CREATE TABLE scratch.seen (area text, rows integer NOT NULL);
"""

# What the next materialization of each asset returns, set by the test.
frames: dict[str, pd.DataFrame] = {}


@dg.asset(
    key=["scratch", "counts"],
    partitions_def=AREAS,
    metadata={"partition_expr": "area"},
    io_manager_key="pandas",
)
def counts() -> pd.DataFrame:
    return frames["counts"]


@dg.asset(
    key=["scratch", "seen"],
    ins={"upstream": dg.AssetIn(["scratch", "counts"])},
    partitions_def=AREAS,
    metadata={"partition_expr": "area"},
    io_manager_key="pandas",
)
def seen(context: dg.AssetExecutionContext, upstream: pd.DataFrame) -> pd.DataFrame:
    frames["loaded"] = upstream
    return pd.DataFrame({"rows": [len(upstream)]})  # the partition column is filled in


@dg.asset(
    key=["scratch", "daily"],
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": "day"},
    io_manager_key="pandas",
)
def daily() -> pd.DataFrame:
    return frames["daily"]


@dg.asset(
    key=["scratch", "grid"],
    partitions_def=GRID,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_expr": {"date": "day", "area": "area"}},
    io_manager_key="pandas",
)
def grid() -> pd.DataFrame:
    return frames["grid"]


@dg.asset(key=["scratch", "everything"], io_manager_key="pandas")
def everything() -> pd.DataFrame:
    return frames["everything"]


@pytest.fixture
def resources(database_url: str) -> Iterator[dict[str, Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TABLES)
    warehouse = WarehouseResource(database_url=database_url)
    frames.clear()
    yield {"pandas": PostgresPandasIOManager(warehouse=warehouse)}


def _table(url: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT * FROM scratch.{table} ORDER BY 1, 2").fetchall()


def _row_versions(url: str, table: str, where: str) -> list[str]:
    """Each row's xmin: it changes whenever the row is rewritten."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT xmin::text FROM scratch.{table} WHERE {where} ORDER BY 1")
        return [r[0] for r in rows]


def _run(asset: dg.AssetsDefinition, resources: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    # `seen` reads `counts`, which must be among the assets (not selected: it is only read).
    assets = [counts, asset] if asset is seen else [asset]
    result = dg.materialize(assets, selection=[asset], resources=resources, **kwargs)
    assert result.success
    node = asset.node_def.name
    metadata = result.asset_materializations_for_node(node)[-1].metadata
    return {name: value.value for name, value in metadata.items()}


def test_a_partition_replaces_its_own_slice_and_leaves_the_others(
    resources: dict[str, Any], database_url: str
) -> None:
    frames["counts"] = pd.DataFrame({"area": "lung", "item": ["a", "b", "c"], "n": [1, 2, 3]})
    _run(counts, resources, partition_key="lung")
    frames["counts"] = pd.DataFrame({"area": "head & neck", "item": ["a", "z"], "n": [7, 8]})
    _run(counts, resources, partition_key="head & neck")
    untouched = _row_versions(database_url, "counts", "area = 'head & neck'")

    # b changed, c gone, d new, a as it was.
    frames["counts"] = pd.DataFrame({"area": "lung", "item": ["a", "b", "d"], "n": [1, 5, 4]})
    metadata = _run(counts, resources, partition_key="lung")

    assert _table(database_url, "counts") == [
        ("head & neck", "a", 7),
        ("head & neck", "z", 8),
        ("lung", "a", 1),
        ("lung", "b", 5),
        ("lung", "d", 4),
    ]
    assert _row_versions(database_url, "counts", "area = 'head & neck'") == untouched
    assert (metadata["inserted"], metadata["updated"], metadata["unchanged"]) == (1, 1, 1)
    assert (metadata["deleted"], metadata["dagster/row_count"]) == (1, 3)

    again = _run(counts, resources, partition_key="lung")
    assert again["inserted"] == again["updated"] == again["deleted"] == 0


def test_rows_outside_the_partition_are_refused_and_nothing_is_written(
    resources: dict[str, Any], database_url: str
) -> None:
    frames["counts"] = pd.DataFrame({"area": "lung", "item": ["a"], "n": [1]})
    _run(counts, resources, partition_key="lung")
    frames["counts"] = pd.DataFrame({"area": ["breast", "lung"], "item": ["x", "a"], "n": [1, 9]})
    result = dg.materialize(
        [counts], resources=resources, partition_key="breast", raise_on_error=False
    )
    assert not result.success
    assert _table(database_url, "counts") == [("lung", "a", 1)]


def test_an_input_is_the_upstream_partitions_slice(
    resources: dict[str, Any], database_url: str
) -> None:
    for area, items in (("lung", ["a", "b"]), ("breast", ["a", "b", "c"])):
        frames["counts"] = pd.DataFrame({"area": area, "item": items, "n": 1})
        _run(counts, resources, partition_key=area)
    _run(seen, resources, partition_key="breast")
    assert list(frames["loaded"]["item"]) == ["a", "b", "c"]
    assert set(frames["loaded"]["area"]) == {"breast"}
    assert _table(database_url, "seen") == [("breast", 3)]


def test_a_range_run_of_days_replaces_those_days_of_a_table_without_a_key(
    resources: dict[str, Any], database_url: str
) -> None:
    days = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]).date
    frames["daily"] = pd.DataFrame({"day": days, "item": "x", "n": [1, 2, 3, 4]})
    tags = {
        "dagster/asset_partition_range_start": "2024-01-01",
        "dagster/asset_partition_range_end": "2024-01-04",
    }
    _run(daily, resources, tags=tags)
    frames["daily"] = pd.DataFrame({"day": days[1:3], "item": "y", "n": [20, 30]})
    tags = {
        "dagster/asset_partition_range_start": "2024-01-02",
        "dagster/asset_partition_range_end": "2024-01-03",
    }
    metadata = _run(daily, resources, tags=tags)
    assert [(r[0].isoformat(), r[1], r[2]) for r in _table(database_url, "daily")] == [
        ("2024-01-01", "x", 1),
        ("2024-01-02", "y", 20),
        ("2024-01-03", "y", 30),
        ("2024-01-04", "x", 4),
    ]
    assert (metadata["deleted"], metadata["inserted"]) == (2, 2)


def _cell(day: str, area: str) -> str:
    return dg.MultiPartitionKey({"date": day, "area": area})  # "area|date": dimensions by name


def test_a_multi_partition_range_replaces_its_days_times_areas(
    resources: dict[str, Any], database_url: str
) -> None:
    days = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).date
    frames["grid"] = pd.DataFrame(
        [(d, a, 1) for d in days for a in AREAS.get_partition_keys()],
        columns=["day", "area", "n"],
    )
    tags = {
        "dagster/asset_partition_range_start": _cell("2024-01-01", "lung"),
        "dagster/asset_partition_range_end": _cell("2024-01-03", "head & neck"),
    }
    _run(grid, resources, tags=tags)
    frames["grid"] = pd.DataFrame(
        [(d, a, 2) for d in days[1:] for a in ("lung", "breast")],
        columns=["day", "area", "n"],
    )
    tags = {
        "dagster/asset_partition_range_start": _cell("2024-01-02", "lung"),
        "dagster/asset_partition_range_end": _cell("2024-01-03", "breast"),
    }
    metadata = _run(grid, resources, tags=tags)
    stored = {(r[0].isoformat(), r[1]): r[2] for r in _table(database_url, "grid")}
    assert len(stored) == 9
    assert {k for k, n in stored.items() if n == 2} == {
        ("2024-01-02", "lung"),
        ("2024-01-02", "breast"),
        ("2024-01-03", "lung"),
        ("2024-01-03", "breast"),
    }
    assert (metadata["updated"], metadata["deleted"]) == (4, 0)


def test_an_unpartitioned_output_replaces_the_whole_table(
    resources: dict[str, Any], database_url: str
) -> None:
    frames["everything"] = pd.DataFrame({"item": ["a", "b"], "n": [1, 2]})
    _run(everything, resources)
    frames["everything"] = pd.DataFrame({"item": ["b", "c"], "n": [2, 3]})
    metadata = _run(everything, resources)
    assert _table(database_url, "everything") == [("b", 2), ("c", 3)]
    assert (metadata["inserted"], metadata["unchanged"], metadata["deleted"]) == (1, 1, 1)
    with psycopg.connect(database_url) as conn:  # its warehouse was migrated before the write
        assert conn.execute("SELECT to_regclass('analytics.drug_phases')").fetchone()[0]
