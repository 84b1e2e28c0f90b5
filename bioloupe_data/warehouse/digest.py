"""Deterministic checksums of the warehouse's contents, per table and per day: two warehouses
with equal digests hold the same data, whatever order, runs or retries produced it.

Columns that record when a row was written (`landed_at`, `normalized_at`) are left out: they
say when, not what. So are the `ops` tables, which record the runs themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import psycopg
from psycopg import sql

WRITE_TIME_COLUMNS = frozenset({"landed_at", "normalized_at", "updated_at"})
DIGESTED_SCHEMAS = ("raw", "core")


def _columns(conn: psycopg.Connection, schema: str, name: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, name),
    ).fetchall()
    if not rows:
        raise ValueError(f"no table {schema}.{name}")
    return [column for (column,) in rows if column not in WRITE_TIME_COLUMNS]


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.partition(".")
    if not name:
        raise ValueError(f"expected schema.table, got {table!r}")
    return schema, name


def table_digest(conn: psycopg.Connection, table: str) -> str:
    """`rows:md5` over every row of `table` (`schema.name`), rows in a canonical order."""
    schema, name = _split(table)
    listed = sql.SQL(", ").join(sql.Identifier(c) for c in _columns(conn, schema, name))
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) "
            "FROM (SELECT {} FROM {}) AS r"
        ).format(listed, sql.Identifier(schema, name))
    ).fetchone()
    return f"{row[0]}:{row[1]}" if row else "0:"


def day_digests(
    conn: psycopg.Connection,
    table: str,
    *,
    parent: str | None = None,
    key: Sequence[str] = (),
) -> dict[date, str]:
    """`rows:md5` per `partition_date` of `table`; a child table without a day of its own is
    grouped by its `parent`'s day, joined on `key`."""
    schema, name = _split(table)
    columns = _columns(conn, schema, name)
    listed = sql.SQL(", ").join(sql.Identifier("t", c) for c in columns)
    if parent is None:
        source = sql.SQL("{} AS t").format(sql.Identifier(schema, name))
        day = sql.SQL("t.partition_date")
    else:
        if not key:
            raise ValueError("a child table needs the key that joins it to its parent")
        parent_schema, parent_name = _split(parent)
        joined = sql.SQL(" AND ").join(
            sql.SQL("p.{0} = t.{0}").format(sql.Identifier(k)) for k in key
        )
        source = sql.SQL("{} AS t JOIN {} AS p ON {}").format(
            sql.Identifier(schema, name), sql.Identifier(parent_schema, parent_name), joined
        )
        day = sql.SQL("p.partition_date")
    rows = conn.execute(
        sql.SQL(
            "SELECT d, count(*), md5(string_agg(r, E'\\n' ORDER BY r)) "
            "FROM (SELECT {day} AS d, ROW({listed})::text AS r FROM {source}) AS x GROUP BY d"
        ).format(day=day, listed=listed, source=source)
    ).fetchall()
    return {d: f"{n}:{h}" for d, n, h in rows}


def warehouse_digest(
    conn: psycopg.Connection, schemas: Sequence[str] = DIGESTED_SCHEMAS
) -> dict[str, str]:
    """The digest of every table of `schemas`, by `schema.name`."""
    tables = conn.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema = ANY(%s) AND table_type = 'BASE TABLE' ORDER BY 1",
        (list(schemas),),
    ).fetchall()
    return {table: table_digest(conn, table) for (table,) in tables}
