"""Reading the warehouse the way a user checks it: row counts, row digests, and PostgreSQL's own
write counters."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from psycopg import sql

# Columns that record when a row was written, not what it says.
WRITE_TIME_COLUMNS = ("landed_at", "normalized_at")


def count(url: str, table: str, where: str = "TRUE") -> int:
    schema, name = table.split(".")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                sql.Identifier(schema, name), sql.SQL(where)
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


def core_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema = 'core' ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def digest(url: str, table: str) -> str:
    """An md5 over every row of `table` (write-time columns left out), in key order."""
    schema, name = table.split(".")
    with psycopg.connect(url) as conn:
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema, name),
            ).fetchall()
            if r[0] not in WRITE_TIME_COLUMNS
        ]
        listed = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) "
                "FROM (SELECT {} FROM {}) AS r"
            ).format(listed, sql.Identifier(schema, name))
        ).fetchone()
    assert row is not None
    return f"{row[0]}:{row[1]}"


def warehouse_digest(url: str) -> dict[str, str]:
    return {table: digest(url, table) for table in ["raw.documents", *core_tables(url)]}


def write_counters(url: str) -> dict[str, tuple[int, int, int]]:
    """Rows inserted, updated and deleted per raw/core table, as PostgreSQL counts them.

    Backends flush their counters when they exit; wait until every other session on the
    database is gone so the numbers are final.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            others = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if others and others[0] == 0:
                break
            time.sleep(0.1)
        time.sleep(0.2)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del "
            "FROM pg_stat_user_tables WHERE schemaname IN ('raw', 'core') ORDER BY 1"
        ).fetchall()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def link_files(files: list[Path], folder: Path) -> Path:
    """A data folder for the replay server holding exactly these files (as symlinks: the real
    records stay in ../shared)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        (folder / file.name).symlink_to(file)
    return folder
