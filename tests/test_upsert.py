"""The bulk upsert engine against a real PostgreSQL: counts, no needless writes, version order,
staging deduplication, child synchronisation and order independence."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.upsert import (
    MergeResult,
    Table,
    UpsertCounts,
    copy_rows,
    create_staging,
    merge_versioned,
    sync_children,
)

COLUMNS = ("key", "payload", "source_updated_at", "version_key", "content_hash")
ITEMS = Table("t", "items", COLUMNS, ("key",))
MIRROR = Table("t", "items_mirror", COLUMNS, ("key",))
PARTS = Table("t", "item_parts", ("item_key", "ordinal", "value"), ("item_key", "ordinal"))
ALL_CHANGES = ("payload", "source_updated_at", "version_key", "content_hash")
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Writes:
    """What PostgreSQL itself counted as written to a table."""

    inserted: int
    updated: int
    deleted: int

    def __sub__(self, other: Writes) -> Writes:
        return Writes(
            self.inserted - other.inserted,
            self.updated - other.updated,
            self.deleted - other.deleted,
        )


def _create_tables(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA t")
    for table in (ITEMS, MIRROR):
        conn.execute(
            sql.SQL(
                """CREATE TABLE {} (
                       key text PRIMARY KEY,
                       payload text NOT NULL,
                       source_updated_at timestamptz NOT NULL,
                       version_key text NOT NULL,
                       content_hash text NOT NULL)"""
            ).format(table.ident)
        )
    conn.execute(
        """CREATE TABLE t.item_parts (
               item_key text NOT NULL,
               ordinal integer NOT NULL,
               value text NOT NULL,
               PRIMARY KEY (item_key, ordinal))"""
    )


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as connection:
        _create_tables(connection)
        yield connection


def item(
    key: str, day: int, version: str = "v1", content: str = "c1", payload: str | None = None
) -> Row:
    """A row of the test table; its payload follows from its content unless given."""
    return (
        key,
        payload if payload is not None else f"{key}:{content}",
        EPOCH + timedelta(days=day),
        version,
        content,
    )


def _writes(conn: psycopg.Connection, table: Table) -> Writes:
    """The backend's not yet flushed counters for `table`: since PostgreSQL 15 they may still
    include earlier transactions of the session, so callers take the difference."""
    row = conn.execute(
        """SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables
           WHERE schemaname = %s AND relname = %s""",
        (table.schema, table.name),
    ).fetchone()
    return Writes(*row) if row else Writes(0, 0, 0)


def merge(
    conn: psycopg.Connection,
    rows: Sequence[Row],
    *,
    table: Table = ITEMS,
    allow_same_version: bool = False,
    change_columns: Sequence[str] = ALL_CHANGES,
) -> tuple[MergeResult, Writes]:
    """Stage `rows` and merge them in one committed transaction; also return what PostgreSQL
    counted as written to the target in that transaction."""
    with conn.transaction():
        before = _writes(conn, table)
        staging = create_staging(conn, table)
        copy_rows(conn, staging, table.columns, rows)
        result = merge_versioned(
            conn,
            table,
            staging,
            change_columns=change_columns,
            allow_same_version=allow_same_version,
        )
        writes = _writes(conn, table) - before
    return result, writes


def sync(
    conn: psycopg.Connection, children: Sequence[Row], parents: Sequence[str]
) -> tuple[UpsertCounts, Writes]:
    with conn.transaction():
        before = _writes(conn, PARTS)
        staging = create_staging(conn, PARTS)
        copy_rows(conn, staging, PARTS.columns, children)
        counts = sync_children(conn, PARTS, staging, "item_key", parents)
        writes = _writes(conn, PARTS) - before
    return counts, writes


def rows_of(conn: psycopg.Connection, table: Table = ITEMS) -> list[Row]:
    return conn.execute(
        sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, table.columns)),
            table.ident,
            sql.SQL(", ").join(map(sql.Identifier, table.key)),
        )
    ).fetchall()


def row_versions(conn: psycopg.Connection, table: Table = ITEMS) -> dict[Any, str]:
    """xmin of every row: it changes whenever a row is rewritten, even with the same values."""
    key = sql.Identifier(table.key[0])
    return dict(
        conn.execute(sql.SQL("SELECT {}, xmin::text FROM {}").format(key, table.ident)).fetchall()
    )


NO_WRITES = Writes(0, 0, 0)


# ----------------------------------------------------------------------------- merge_versioned


def test_first_merge_inserts_every_row(conn: psycopg.Connection) -> None:
    rows = [item("b", 1), item("a", 1), item("c", 2)]

    result, writes = merge(conn, rows)

    assert result.counts == UpsertCounts(inserted=3)
    assert result.changed_keys == [("a",), ("b",), ("c",)]
    assert writes == Writes(3, 0, 0)
    assert rows_of(conn) == sorted(rows)


def test_same_rows_again_write_nothing(conn: psycopg.Connection) -> None:
    rows = [item("a", 1), item("b", 1), item("c", 2)]
    merge(conn, rows)
    before = row_versions(conn)

    result, writes = merge(conn, rows)

    assert result.counts == UpsertCounts(unchanged=3)
    assert result.changed_keys == []
    assert writes == NO_WRITES
    assert row_versions(conn) == before
    assert rows_of(conn) == sorted(rows)


def test_same_rows_again_write_nothing_with_allow_same_version(conn: psycopg.Connection) -> None:
    rows = [item("a", 1), item("b", 1)]
    merge(conn, rows, allow_same_version=True)
    before = row_versions(conn)

    result, writes = merge(conn, rows, allow_same_version=True)

    assert result.counts == UpsertCounts(unchanged=2)
    assert writes == NO_WRITES
    assert row_versions(conn) == before


def test_newer_version_replaces_only_its_row(conn: psycopg.Connection) -> None:
    merge(conn, [item("a", 1), item("b", 1)])
    before = row_versions(conn)

    newer = item("a", 2, content="c2")
    result, writes = merge(conn, [newer, item("b", 1)])

    assert result.counts == UpsertCounts(updated=1, unchanged=1)
    assert result.changed_keys == [("a",)]
    assert writes == Writes(0, 1, 0)
    assert rows_of(conn) == [newer, item("b", 1)]
    assert row_versions(conn)["b"] == before["b"]


@pytest.mark.parametrize("allow_same_version", [False, True])
@pytest.mark.parametrize(
    "older",
    [
        item("a", 1, "v9", "c9"),  # older timestamp, even with larger version and hash
        item("a", 2, "v1", "c9"),  # same timestamp, older version key
        item("a", 2, "v2", "c1"),  # same timestamp and version key, smaller content hash
    ],
    ids=["timestamp", "version_key", "content_hash"],
)
def test_older_version_never_overwrites_newer(
    conn: psycopg.Connection, older: Row, allow_same_version: bool
) -> None:
    newest = item("a", 2, "v2", "c2")
    merge(conn, [newest], allow_same_version=allow_same_version)

    result, writes = merge(conn, [older], allow_same_version=allow_same_version)

    assert result.counts == UpsertCounts(unchanged=1)
    assert result.changed_keys == []
    assert writes == NO_WRITES
    assert rows_of(conn) == [newest]


def test_same_version_with_other_content_is_kept_without_allow_same_version(
    conn: psycopg.Connection,
) -> None:
    stored = item("a", 1, payload="derived by code v1")
    merge(conn, [stored])

    result, writes = merge(conn, [item("a", 1, payload="derived by code v2")])

    assert result.counts == UpsertCounts(unchanged=1)
    assert writes == NO_WRITES
    assert rows_of(conn) == [stored]


def test_same_version_with_other_content_is_rewritten_with_allow_same_version(
    conn: psycopg.Connection,
) -> None:
    merge(conn, [item("a", 1, payload="derived by code v1"), item("b", 1)], allow_same_version=True)

    rederived = item("a", 1, payload="derived by code v2")
    result, writes = merge(conn, [rederived, item("b", 1)], allow_same_version=True)

    assert result.counts == UpsertCounts(updated=1, unchanged=1)
    assert result.changed_keys == [("a",)]
    assert writes == Writes(0, 1, 0)
    assert rows_of(conn) == [rederived, item("b", 1)]


def test_newer_version_with_same_change_columns_is_not_rewritten(
    conn: psycopg.Connection,
) -> None:
    """Only the change columns decide whether a newer version is a change."""
    stored = item("a", 1, "v1", payload="same")
    merge(conn, [stored])

    result, writes = merge(conn, [item("a", 1, "v2", payload="same")], change_columns=["payload"])

    assert result.counts == UpsertCounts(unchanged=1)
    assert writes == NO_WRITES
    assert rows_of(conn) == [stored]


def test_duplicates_in_one_batch_keep_the_newest_version(conn: psycopg.Connection) -> None:
    batch = [
        item("a", 1, "v1", "c1"),
        item("a", 3, "v1", "c3"),
        item("a", 2, "v1", "c2"),
        item("b", 1, "v1", "c1"),
        item("b", 1, "v2", "c1"),
        item("c", 1, "v1", "c1"),
        item("c", 1, "v1", "c2"),
        item("d", 1),
        item("d", 1),
    ]

    result, writes = merge(conn, batch)

    assert result.counts == UpsertCounts(inserted=4)
    assert writes == Writes(4, 0, 0)
    assert rows_of(conn) == [
        item("a", 3, "v1", "c3"),
        item("b", 1, "v2", "c1"),
        item("c", 1, "v1", "c2"),
        item("d", 1),
    ]


def test_duplicates_in_one_batch_update_a_stored_row_once(conn: psycopg.Connection) -> None:
    merge(conn, [item("a", 2, content="c2")])

    result, writes = merge(
        conn, [item("a", 3, content="c3"), item("a", 1, content="c1"), item("a", 4, content="c4")]
    )

    assert result.counts == UpsertCounts(updated=1)
    assert writes == Writes(0, 1, 0)
    assert rows_of(conn) == [item("a", 4, content="c4")]


def test_changed_keys_are_sorted_and_only_the_written_ones(conn: psycopg.Connection) -> None:
    merge(conn, [item(k, 5) for k in ("k03", "k05", "k07", "k09")])

    batch = [
        item("k09", 6, content="c2"),  # updated
        item("k01", 1),  # inserted
        item("k05", 5),  # unchanged
        item("k07", 1, content="c0"),  # older: ignored
        item("k08", 1),  # inserted
        item("k03", 7, content="c3"),  # updated
        item("k02", 1),  # inserted
    ]
    random.Random(7).shuffle(batch)

    result, _ = merge(conn, batch)

    assert result.changed_keys == [("k01",), ("k02",), ("k03",), ("k08",), ("k09",)]
    assert result.counts == UpsertCounts(inserted=3, updated=2, unchanged=2)


def test_staging_starts_empty_in_every_transaction(conn: psycopg.Connection) -> None:
    """The staging table is reused per session: one day's rows never leak into the next."""
    merge(conn, [item("a", 1), item("b", 1)])

    result, writes = merge(conn, [item("c", 1)])

    assert result.counts == UpsertCounts(inserted=1)
    assert writes == Writes(1, 0, 0)
    with conn.transaction():
        staging = create_staging(conn, ITEMS)
        copy_rows(conn, staging, ITEMS.columns, [item("z", 1)])
        again = create_staging(conn, ITEMS)
        assert again == staging
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(again)).fetchone() == (0,)


def test_copy_rows_returns_the_number_of_rows_streamed(conn: psycopg.Connection) -> None:
    with conn.transaction():
        staging = create_staging(conn, ITEMS)
        written = copy_rows(conn, staging, ITEMS.columns, (item(f"k{i}", i) for i in range(250)))
        staged = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(staging)).fetchone()
    assert written == 250
    assert staged == (250,)


def test_a_rolled_back_merge_leaves_the_table_as_it_was(conn: psycopg.Connection) -> None:
    merge(conn, [item("a", 1)])

    with pytest.raises(RuntimeError), conn.transaction():
        staging = create_staging(conn, ITEMS)
        copy_rows(conn, staging, ITEMS.columns, [item("a", 2, content="c2"), item("b", 1)])
        merge_versioned(conn, ITEMS, staging, change_columns=ALL_CHANGES, allow_same_version=False)
        raise RuntimeError("the day failed after the merge")

    assert rows_of(conn) == [item("a", 1)]


# ----------------------------------------------------------------------------- order independence


def test_old_then_new_and_new_then_old_give_identical_rows(conn: psycopg.Connection) -> None:
    old = [item("a", 1, "v1", "c1"), item("b", 3, "v1", "c1"), item("c", 1, "v1", "c1")]
    new = [item("a", 2, "v1", "c2"), item("b", 3, "v2", "c1"), item("c", 1, "v1", "c2")]

    for batch in (old, new):
        merge(conn, batch, table=ITEMS)
    for batch in (new, old):
        merge(conn, batch, table=MIRROR)

    assert rows_of(conn, ITEMS) == rows_of(conn, MIRROR) == sorted(new)


def test_old_then_new_and_new_then_old_give_identical_rows_with_allow_same_version(
    conn: psycopg.Connection,
) -> None:
    old = [item("a", 1, "v1", "c1"), item("b", 3, "v1", "c1")]
    new = [item("a", 2, "v1", "c2"), item("b", 3, "v2", "c1")]

    for batch in (old, new):
        merge(conn, batch, table=ITEMS, allow_same_version=True)
    for batch in (new, old):
        merge(conn, batch, table=MIRROR, allow_same_version=True)

    assert rows_of(conn, ITEMS) == rows_of(conn, MIRROR) == sorted(new)


_versions = st.tuples(
    st.sampled_from(["a", "b", "c"]),  # key
    st.integers(min_value=0, max_value=3),  # day
    st.sampled_from(["v1", "v2"]),  # version key
    st.sampled_from(["c1", "c2", "c3"]),  # content hash
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(st.lists(_versions, min_size=1, max_size=4), min_size=1, max_size=5),
    seed=st.integers(min_value=0, max_value=2**16),
    allow_same_version=st.booleans(),
)
def test_any_order_of_batches_converges_to_the_newest_version(
    conn: psycopg.Connection,
    batches: list[list[tuple[str, int, str, str]]],
    seed: int,
    allow_same_version: bool,
) -> None:
    conn.execute("TRUNCATE t.items, t.items_mirror")
    as_rows = [[item(k, day, version, content) for k, day, version, content in b] for b in batches]
    shuffled = list(as_rows)
    random.Random(seed).shuffle(shuffled)

    for batch in as_rows:
        merge(conn, batch, table=ITEMS, allow_same_version=allow_same_version)
    for batch in shuffled:
        merge(conn, batch, table=MIRROR, allow_same_version=allow_same_version)

    newest: dict[str, Row] = {}
    for row in (r for b in as_rows for r in b):
        if row[0] not in newest or row[2:] > newest[row[0]][2:]:
            newest[row[0]] = row
    assert rows_of(conn, ITEMS) == rows_of(conn, MIRROR) == sorted(newest.values())

    # Replaying everything once more writes nothing.
    for batch in shuffled:
        result, writes = merge(conn, batch, table=MIRROR, allow_same_version=allow_same_version)
        assert result.counts.written == 0
        assert writes == NO_WRITES


# ----------------------------------------------------------------------------- sync_children


def part(parent: str, ordinal: int, value: str) -> Row:
    return (parent, ordinal, value)


def parts_of(conn: psycopg.Connection) -> list[Row]:
    return rows_of(conn, PARTS)


def part_versions(conn: psycopg.Connection) -> dict[tuple[str, int], str]:
    return {
        (parent, ordinal): xmin
        for parent, ordinal, xmin in conn.execute(
            "SELECT item_key, ordinal, xmin::text FROM t.item_parts"
        ).fetchall()
    }


@pytest.fixture
def with_parts(conn: psycopg.Connection) -> list[Row]:
    initial = [
        part("a", 0, "a0"),
        part("a", 1, "a1"),
        part("a", 2, "a2"),
        part("b", 0, "b0"),
        part("b", 1, "b1"),
    ]
    counts, writes = sync(conn, initial, ["a", "b"])
    assert counts == UpsertCounts(inserted=5)
    assert writes == Writes(5, 0, 0)
    return initial


def test_sync_children_replaces_only_the_children_of_the_given_parents(
    conn: psycopg.Connection, with_parts: list[Row]
) -> None:
    before = part_versions(conn)
    staged = [
        part("a", 0, "a0"),  # identical
        part("a", 1, "a1 changed"),  # changed
        part("a", 3, "a3"),  # new; a/2 vanished
        part("b", 0, "b0 changed"),  # b lost its own upsert: must not be touched
    ]

    counts, writes = sync(conn, staged, ["a"])

    assert (counts.inserted, counts.updated, counts.deleted) == (1, 1, 1)
    assert writes == Writes(1, 1, 1)
    assert parts_of(conn) == [
        part("a", 0, "a0"),
        part("a", 1, "a1 changed"),
        part("a", 3, "a3"),
        part("b", 0, "b0"),
        part("b", 1, "b1"),
    ]
    after = part_versions(conn)
    assert after[("a", 0)] == before[("a", 0)]
    assert after[("b", 0)] == before[("b", 0)]
    assert after[("b", 1)] == before[("b", 1)]


def test_sync_children_counts_unchanged_rows(
    conn: psycopg.Connection, with_parts: list[Row]
) -> None:
    staged = [part("a", 0, "a0"), part("a", 1, "a1"), part("a", 2, "a2 changed")]

    counts, writes = sync(conn, staged, ["a"])

    assert counts == UpsertCounts(updated=1, unchanged=2)
    assert writes == Writes(0, 1, 0)


def test_sync_children_again_writes_nothing(
    conn: psycopg.Connection, with_parts: list[Row]
) -> None:
    before = part_versions(conn)

    counts, writes = sync(conn, with_parts, ["b", "a"])

    assert counts == UpsertCounts(unchanged=5)
    assert writes == NO_WRITES
    assert part_versions(conn) == before


def test_sync_children_removes_all_children_of_a_parent_that_has_none_now(
    conn: psycopg.Connection, with_parts: list[Row]
) -> None:
    counts, writes = sync(conn, [part("a", 0, "a0")], ["a", "b"])

    assert (counts.inserted, counts.updated, counts.deleted) == (0, 0, 4)
    assert writes == Writes(0, 0, 4)
    assert parts_of(conn) == [part("a", 0, "a0")]


def test_sync_children_without_parents_touches_nothing(
    conn: psycopg.Connection, with_parts: list[Row]
) -> None:
    before = part_versions(conn)

    counts, writes = sync(conn, [part("a", 0, "gone?"), part("c", 0, "c0")], [])

    assert counts == UpsertCounts(unchanged=2)
    assert writes == NO_WRITES
    assert parts_of(conn) == sorted(with_parts)
    assert part_versions(conn) == before


def test_merge_then_sync_changed_parents_in_one_transaction(conn: psycopg.Connection) -> None:
    """The pattern the pipelines use: children follow only the parents whose upsert won."""
    merge(conn, [item("a", 2, content="c2"), item("b", 1)])
    sync(conn, [part("a", 0, "a0 v2"), part("b", 0, "b0 v1")], ["a", "b"])

    with conn.transaction():
        staging = create_staging(conn, ITEMS)
        copy_rows(conn, staging, ITEMS.columns, [item("a", 1), item("b", 2, content="c2")])
        merged = merge_versioned(
            conn, ITEMS, staging, change_columns=ALL_CHANGES, allow_same_version=False
        )
        child_staging = create_staging(conn, PARTS)
        copy_rows(
            conn, child_staging, PARTS.columns, [part("a", 0, "a0 v1"), part("b", 0, "b0 v2")]
        )
        counts = sync_children(
            conn, PARTS, child_staging, "item_key", [k[0] for k in merged.changed_keys]
        )

    assert merged.changed_keys == [("b",)]
    assert counts.updated == 1
    assert parts_of(conn) == [part("a", 0, "a0 v2"), part("b", 0, "b0 v2")]


# ----------------------------------------------------------------------------- UpsertCounts


def test_upsert_counts_add_written_and_metadata() -> None:
    total = UpsertCounts(inserted=1, unchanged=5)
    total.add(UpsertCounts(inserted=2, updated=3, unchanged=1, deleted=4))

    assert total == UpsertCounts(inserted=3, updated=3, unchanged=6, deleted=4)
    assert total.written == 10
    assert total.as_metadata() == {"inserted": 3, "updated": 3, "unchanged": 6, "deleted": 4}
