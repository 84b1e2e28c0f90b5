"""Reading the warehouse the way a user checks it: row counts, row digests, and PostgreSQL's own
write counters; the spans of days to check it over; and what a pass over them reported."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

from bioloupe_data.pipelines.landing import LandedDay
from bioloupe_data.pipelines.normalize import NormalizedDay
from bioloupe_data.warehouse.digest import table_digest
from bioloupe_data.warehouse.digest import warehouse_digest as digest_of_warehouse


def pass_totals(
    landed: Sequence[LandedDay], normalized: Sequence[NormalizedDay], parent: str
) -> dict[str, int]:
    """What one landing and normalizing pass over a range reported, added up over its days
    (`parent`: the normalized table whose counts to add up)."""
    return {
        "days landed": len(landed),
        "days normalized": len(normalized),
        "received": sum(d.received for d in landed),
        "landed": sum(d.landed for d in landed),
        "dead letters": sum(d.dead_letters for d in landed),
        "inserted": sum(d.counts.inserted for d in landed),
        "updated": sum(d.counts.updated for d in landed),
        "unchanged": sum(d.counts.unchanged for d in landed),
        f"{parent} inserted": sum(d.counts[parent].inserted for d in normalized),
        f"{parent} updated": sum(d.counts[parent].updated for d in normalized),
        f"{parent} unchanged": sum(d.counts[parent].unchanged for d in normalized),
    }


def clean_pass(days: int, records: int, parent: str, *, new: bool) -> dict[str, int]:
    """`pass_totals` of a pass over `days` that received `records` records and landed and
    normalized every one: all inserted when `new`, else all unchanged."""
    inserted, unchanged = (records, 0) if new else (0, records)
    return {
        "days landed": days,
        "days normalized": days,
        "received": records,
        "landed": records,
        "dead letters": 0,
        "inserted": inserted,
        "updated": 0,
        "unchanged": unchanged,
        f"{parent} inserted": inserted,
        f"{parent} updated": 0,
        f"{parent} unchanged": unchanged,
    }


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


def sessions_opened(url: str) -> int:
    """Sessions ever opened on the database of `url`. PostgreSQL counts a session as it ends, so
    the one reading this is not among them yet, but is in the next reading."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def digest(url: str, table: str) -> str:
    """The project's digest of `table` (write-time columns left out)."""
    with psycopg.connect(url) as conn:
        return table_digest(conn, table)


def warehouse_digest(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return digest_of_warehouse(conn)


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


def tables_holding(url: str, needles: tuple[str, ...]) -> list[str]:
    """`schema.table` of every row of every table in the database at `url` whose text holds
    one of `needles`."""
    found = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            for needle in needles:
                hit = conn.execute(
                    sql.SQL("SELECT 1 FROM {} AS t WHERE strpos(t::text, %s) > 0 LIMIT 1").format(
                        sql.Identifier(schema, table)
                    ),
                    (needle,),
                ).fetchone()
                if hit:
                    found.append(f"{schema}.{table}")
    return found


def files_holding(folder: Path, needles: tuple[str, ...]) -> list[Path]:
    return [
        path
        for path in folder.rglob("*")
        if path.is_file() and any(n.encode() in path.read_bytes() for n in needles)
    ]


def busiest_years(days: Sequence[date], years: int) -> tuple[date, date]:
    """The `years` consecutive calendar years holding most of `days`, cut to the span of `days`."""
    first_year, last_year = min(days).year, max(days).year
    first = max(
        range(first_year, max(first_year, last_year - years + 1) + 1),
        key=lambda year: sum(year <= d.year < year + years for d in days),
    )
    return max(date(first, 1, 1), min(days)), min(date(first + years - 1, 12, 31), max(days))
