"""The planner's statistics of tables a range is filling, kept current while they grow.

A range backfill can grow a table from nothing to hundreds of thousands of rows in one run.
Until the table is analyzed the planner has to guess what it holds, and where autovacuum is off
or has not come round yet it goes on guessing: a day's merge then reads a whole child table to
find the few hundred rows of that day's parents, a cost that grows with the table, so the run
slows down day after day. A range therefore analyzes the tables it writes each time they have
doubled since the rows their statistics describe: a handful of ANALYZEs over a long range, none
over a daily increment into a large table."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import psycopg
from psycopg import sql

from bioloupe_data.warehouse.upsert import Table

# Below this many new rows a table's statistics are left alone, whatever it held before.
MIN_NEW_ROWS = 5_000


class GrowingTables:
    """Tables one range writes, analyzed as the first of them (the one `wrote` counts) grows.

    Shared by the threads of a range's day workers: `wrote` counts what a day wrote;
    `analyze_if_grown` runs on a worker's connection between days, outside any transaction."""

    def __init__(self, tables: Sequence[Table], min_new_rows: int | None = None) -> None:
        if not tables:
            raise ValueError("at least one table is needed")
        self.tables = tuple(tables)
        self.min_new_rows = MIN_NEW_ROWS if min_new_rows is None else min_new_rows
        self.analyzed = 0
        self._lock = threading.Lock()
        self._described: float | None = None  # rows the current statistics describe
        self._written = 0  # rows written since
        self._analyzing = False

    def wrote(self, rows: int) -> None:
        with self._lock:
            self._written += rows

    def analyze_if_grown(self, conn: psycopg.Connection) -> bool:
        """ANALYZE every table when the rows written since the last statistics reach as many as
        those statistics describe (and at least `min_new_rows`). Returns whether it did."""
        with self._lock:
            if self._analyzing:
                return False
            if self._described is None:
                self._described = _rows_described(conn, self.tables[0])
            written = self._written
            if written < max(self.min_new_rows, self._described):
                return False
            self._analyzing = True
        try:
            for table in self.tables:
                conn.execute(sql.SQL("ANALYZE {}").format(table.ident))
        finally:
            with self._lock:
                self._analyzing = False
        with self._lock:
            self._described += written
            self._written -= written
            self.analyzed += 1
        return True


def _rows_described(conn: psycopg.Connection, table: Table) -> float:
    """The row count of the table's statistics: 0 for a table never analyzed."""
    row = conn.execute(
        "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = %s::regclass",
        (table.qualified_name,),
    ).fetchone()
    return float(row[0]) if row else 0.0
