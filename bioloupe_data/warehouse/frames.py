"""pandas DataFrames in and out of warehouse tables, a slice at a time (no dagster import).

A slice is the rows matching every `SliceFilter` (a partition column equal to one of some keys,
or inside a time window); no filter is the whole table. `write_frame` makes the slice equal to
the frame in one transaction: the frame is COPYed into a temporary table, then, for a table
with a primary key, rows of the slice missing from the frame are deleted, new rows inserted and
changed rows updated, identical rows left unwritten; a table without one has its slice deleted
and the frame inserted. Rows of the frame outside the slice are refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from bioloupe_data.warehouse.upsert import UpsertCounts, copy_rows

_STAGING = sql.Identifier("frame_staging")


@dataclass(frozen=True, slots=True)
class SliceFilter:
    """`column` equal to one of `values`, or, with `window`, in [start, end)."""

    column: str
    values: tuple[Any, ...] = ()
    window: tuple[datetime, datetime] | None = None


@dataclass(frozen=True, slots=True)
class TableInfo:
    columns: dict[str, str]  # name -> PostgreSQL type, in table order
    key: tuple[str, ...]


def table_info(conn: psycopg.Connection, schema: str, table: str) -> TableInfo:
    columns = dict(
        conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (sql.Identifier(schema, table).as_string(conn),),
        ).fetchall()
    )
    if not columns:
        raise LookupError(f"table {schema}.{table} does not exist (add it in a migration)")
    key = conn.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n) ON TRUE "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.n",
        (sql.Identifier(schema, table).as_string(conn),),
    ).fetchall()
    return TableInfo(columns, tuple(name for (name,) in key))


def _bound(value: datetime, column_type: str) -> date | datetime:
    # A daily partition's window starts at midnight in its timezone: its calendar day is the
    # date, compared as a date (a timestamptz comparison would depend on the session timezone).
    return value.date() if column_type == "date" else value


def _where(filters: Sequence[SliceFilter], info: TableInfo) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    for f in filters:
        if f.column not in info.columns:
            raise KeyError(f"partition column {f.column!r} is not a column of the table")
        column = sql.Identifier(f.column)
        if f.window is not None:
            column_type = info.columns[f.column]
            parts.append(sql.SQL("{0} >= %s AND {0} < %s").format(column))
            params += [_bound(f.window[0], column_type), _bound(f.window[1], column_type)]
        else:
            parts.append(sql.SQL("{} = ANY(%s)").format(column))
            params.append(list(f.values))
    return sql.SQL(" AND ").join(parts), params


def _rows(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """Plain Python values (NaN, NaT and NA as None) for COPY."""
    plain = frame.astype(object).where(frame.notna(), None)
    return plain.itertuples(index=False, name=None)


def _with_partition_columns(frame: pd.DataFrame, filters: Sequence[SliceFilter]) -> pd.DataFrame:
    """A frame of one partition may leave out its partition column: it is filled in."""
    missing = {
        f.column: f.values[0]
        for f in filters
        if f.column not in frame.columns and f.window is None and len(f.values) == 1
    }
    return frame.assign(**missing) if missing else frame


def write_frame(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    frame: pd.DataFrame,
    filters: Sequence[SliceFilter] = (),
) -> UpsertCounts:
    """Make the slice of `schema.table` equal to `frame`, in one transaction."""
    frame = _with_partition_columns(frame, filters)
    info = table_info(conn, schema, table)
    columns = [str(c) for c in frame.columns]
    unknown = sorted(set(columns) - set(info.columns))
    if unknown:
        raise KeyError(f"{schema}.{table} has no columns {unknown}")
    absent = sorted({f.column for f in filters} - set(columns))
    if absent:
        raise KeyError(f"the frame for {schema}.{table} lacks its partition columns {absent}")
    target = sql.Identifier(schema, table)
    listed = sql.SQL(", ").join(map(sql.Identifier, columns))
    with conn.transaction():
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                _STAGING, listed, target
            )
        )
        staged = copy_rows(conn, _STAGING, columns, _rows(frame))
        where, params = _where(filters, info)
        outside = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE ({}) IS NOT TRUE").format(_STAGING, where),
            params,
        ).fetchone()
        if outside and outside[0]:
            raise ValueError(
                f"{outside[0]} rows of the frame for {schema}.{table} lie outside the slice "
                "being written (check the partition column)"
            )
        if info.key and set(info.key) <= set(columns):
            return _merge(conn, target, info, columns, filters, staged)
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE {}").format(target, where), params
        ).rowcount
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                target, listed, listed, _STAGING
            )
        )
    return UpsertCounts(inserted=staged, deleted=deleted)


def _merge(
    conn: psycopg.Connection,
    target: sql.Identifier,
    info: TableInfo,
    columns: list[str],
    filters: Sequence[SliceFilter],
    staged: int,
) -> UpsertCounts:
    key = sql.SQL(", ").join(map(sql.Identifier, info.key))
    same_key = sql.SQL(" AND ").join(
        sql.SQL("t.{0} = gone.{0}").format(sql.Identifier(k)) for k in info.key
    )
    where, params = _where(filters, info)
    # EXCEPT rather than NOT EXISTS: rows just written have no statistics yet, and a
    # nested-loop anti join would compare every pair.
    deleted = conn.execute(
        sql.SQL(
            "DELETE FROM {target} AS t USING (SELECT {key} FROM {target} WHERE {where} "
            "EXCEPT SELECT {key} FROM {staging}) AS gone WHERE {same_key}"
        ).format(target=target, key=key, where=where, staging=_STAGING, same_key=same_key),
        params,
    ).rowcount
    values = [c for c in columns if c not in info.key]
    listed = sql.SQL(", ").join(map(sql.Identifier, columns))
    if values:
        on_conflict = sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in values
            ),
            sql.SQL(", ").join(sql.Identifier("t", c) for c in values),
            sql.SQL(", ").join(sql.Identifier("excluded", c) for c in values),
        )
    else:
        on_conflict = sql.SQL("DO NOTHING")
    row = conn.execute(
        sql.SQL(
            "WITH written AS (INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {staging} "
            "ORDER BY {key} ON CONFLICT ({key}) {on_conflict} RETURNING (t.xmax = 0) AS ins) "
            "SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM written"
        ).format(target=target, cols=listed, staging=_STAGING, key=key, on_conflict=on_conflict)
    ).fetchone()
    inserted, updated = row if row else (0, 0)
    return UpsertCounts(inserted, updated, staged - inserted - updated, deleted)


def read_frame(
    conn: psycopg.Connection, schema: str, table: str, filters: Sequence[SliceFilter] = ()
) -> pd.DataFrame:
    """The slice as a DataFrame, in primary-key order, with the table's columns."""
    info = table_info(conn, schema, table)
    where, params = _where(filters, info)
    order = (
        sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, info.key)))
        if info.key
        else sql.SQL("")
    )
    cursor = conn.execute(
        sql.SQL("SELECT * FROM {} WHERE {}{}").format(sql.Identifier(schema, table), where, order),
        params,
    )
    return pd.DataFrame(cursor.fetchall(), columns=list(info.columns))
