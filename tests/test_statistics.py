"""A range keeps the planner's statistics of the tables it fills, and its statements are planned
for the table as it is, not as it was when the range started on an empty one."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import psycopg
import pytest

from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC, _to_document, land_range
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.pipelines.normalize import normalize_days
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.warehouse import statistics
from bioloupe_data.warehouse.documents import Document, land_documents
from bioloupe_data.warehouse.statistics import GrowingTables
from bioloupe_data.warehouse.upsert import Table

from conftest import CTGOV_DATA

GROWING = Table("public", "growing", ("id",), ("id",))


def _rows_described(conn: psycopg.Connection, table: str) -> float:
    row = conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table,)
    ).fetchone()
    assert row is not None
    return float(row[0])


def _grow_then_analyze(
    conn: psycopg.Connection, tables: GrowingTables, rows: int
) -> tuple[bool, float]:
    """Write `rows` more rows, count them, and ask for statistics: (analyzed, rows described)."""
    conn.execute(
        "INSERT INTO growing SELECT (SELECT coalesce(max(id), 0) FROM growing) + g "
        "FROM generate_series(1, %s) AS g",
        (rows,),
    )
    tables.wrote(rows)
    return tables.analyze_if_grown(conn), _rows_described(conn, "growing")


def test_a_table_is_analyzed_each_time_it_has_doubled_since_its_statistics(
    conn: psycopg.Connection,
) -> None:
    conn.execute("CREATE TABLE growing (id int PRIMARY KEY)")
    tables = GrowingTables([GROWING], min_new_rows=100)

    assert _grow_then_analyze(conn, tables, 99) == (False, -1)  # never analyzed
    assert _grow_then_analyze(conn, tables, 1) == (True, 100)
    assert _grow_then_analyze(conn, tables, 99) == (False, 100)
    assert _grow_then_analyze(conn, tables, 1) == (True, 200)
    assert tables.analyzed == 2


def test_a_small_increment_into_a_large_analyzed_table_is_not_analyzed_again(
    conn: psycopg.Connection,
) -> None:
    conn.execute("CREATE TABLE growing (id int PRIMARY KEY)")
    conn.execute("INSERT INTO growing SELECT generate_series(1, 20000)")
    conn.execute("ANALYZE growing")
    tables = GrowingTables([GROWING], min_new_rows=100)

    assert _grow_then_analyze(conn, tables, 19_999) == (False, 20_000)
    assert _grow_then_analyze(conn, tables, 1) == (True, 40_000)


def test_a_range_into_an_empty_warehouse_leaves_statistics_on_every_table_it_filled(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, ctgov_replay: ReplayServer
) -> None:
    monkeypatch.setattr(statistics, "MIN_NEW_ROWS", 10)
    documents = [_to_document(json.loads(p.read_text())) for p in CTGOV_DATA.glob("NCT*.json")]
    newest = sorted(d.partition_date for d in documents)[-80:]
    start, end = newest[0], newest[-1]
    client = ClinicalTrialsClient.create(ctgov_replay.url, "all")
    try:
        landed = land_range(conn, client, start, end, run_id="t")
    finally:
        client.close()
    assert sum(d.counts.inserted for d in landed) >= 80
    assert _rows_described(conn, "raw.documents") > 0

    normalize_days(conn, TRIALS_SPEC, days_between(start, end), run_id="t")

    for table in ("core.trials", "core.trial_sites", "core.trial_conditions"):
        assert _rows_described(conn, table) > 0, table


def _document(doc_id: str) -> Document:
    return Document(
        doc_id=doc_id,
        payload_json=json.dumps({"id": doc_id}),
        source_updated_at=datetime(2024, 1, 2, tzinfo=UTC),
        version_key="v1",
        content_hash=doc_id,
        partition_date=date(2024, 1, 2),
    )


def test_a_merge_run_first_on_an_empty_table_probes_the_key_once_the_table_is_large(
    conn: psycopg.Connection,
) -> None:
    """Planned once on an empty table and kept, the merge would go on reading the whole table:
    each day of a long backfill would cost more than the one before."""
    for i in range(10):  # more executions than it takes a client to prepare a statement
        with conn.transaction():
            land_documents(conn, "test", [_document(f"early-{i}")])
    conn.execute(
        """
        INSERT INTO raw.documents
            (source, doc_id, payload, source_updated_at, version_key, content_hash,
             partition_date, landed_at)
        SELECT 'test', 'bulk-' || g, '{}'::jsonb, now(), 'v1', 'h', '2024-01-01', now()
        FROM generate_series(1, 300000) AS g
        """
    )

    scans = "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = 'raw.documents'::regclass"
    with conn.transaction():  # the counter is read in one transaction: it cannot be flushed
        before = conn.execute(scans).fetchone()
        _, counts = land_documents(conn, "test", [_document("late")])
        after = conn.execute(scans).fetchone()

    assert counts.inserted == 1
    assert before == after
