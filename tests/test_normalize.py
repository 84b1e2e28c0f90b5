"""Normalizing landed days: only documents whose landed version differs from their core row are
read again, unless the derivation's version changed; the warehouse ends the same either way."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest

from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC, _to_document
from bioloupe_data.pipelines.normalize import NormalizedDay, normalize_days
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.documents import land_documents
from bioloupe_data.warehouse.migrate import migrate

from conftest import CTGOV_DATA
from warehouse_helpers import digest

STUDIES = [json.loads(p.read_text()) for p in sorted(CTGOV_DATA.glob("NCT*.json"))[:60]]
DOCUMENTS = [_to_document(s) for s in STUDIES]
DAYS = sorted({d.partition_date for d in DOCUMENTS})


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as connection:
        migrate(connection)
        with connection.transaction():
            land_documents(connection, TRIALS_SPEC.source, DOCUMENTS)
        yield connection


def normalize(conn: psycopg.Connection, spec=TRIALS_SPEC) -> dict[date, NormalizedDay]:
    return {d.day: d for d in normalize_days(conn, spec, DAYS, run_id="test")}


def total(days: dict[date, NormalizedDay], field: str) -> int:
    return sum(getattr(counts, field) for d in days.values() for counts in [d.counts["trials"]])


def trial_row_versions(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT nct_id, xmin::text FROM core.trials").fetchall())


def test_a_second_normalization_reads_no_document_and_writes_nothing(
    conn: psycopg.Connection, database_url: str
) -> None:
    first = normalize(conn)
    assert total(first, "inserted") == len(DOCUMENTS)
    assert sum(d.unchanged_unread for d in first.values()) == 0
    written = trial_row_versions(conn)
    sites = digest(database_url, "core.trial_sites")

    again = normalize(conn)

    assert sum(d.unchanged_unread for d in again.values()) == len(DOCUMENTS)
    assert total(again, "unchanged") == len(DOCUMENTS)
    assert total(again, "inserted") + total(again, "updated") == 0
    assert sum(d.rows["trials"] for d in again.values()) == len(DOCUMENTS)  # rows of the days
    assert sum(d.rows["trial_sites"] for d in again.values()) == 0  # none derived again
    assert trial_row_versions(conn) == written
    assert digest(database_url, "core.trial_sites") == sites


def test_a_day_with_nothing_to_derive_is_not_staged(
    conn: psycopg.Connection, database_url: str
) -> None:
    normalize(conn)

    with connect(database_url) as fresh:  # a session of its own: its temporary tables are its own
        again = {d.day: d for d in normalize_days(fresh, TRIALS_SPEC, DAYS, run_id="test")}
        staging = fresh.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'stg\\_%' "
            "AND relnamespace = pg_my_temp_schema()"
        ).fetchone()

    assert total(again, "unchanged") == len(DOCUMENTS)
    assert staging == (0,)


def test_only_the_document_whose_landed_version_changed_is_derived_again(
    conn: psycopg.Connection,
) -> None:
    normalize(conn)
    study = json.loads(json.dumps(STUDIES[3]))
    study["protocolSection"]["identificationModule"]["briefTitle"] += " (amended)"
    study["derivedSection"]["miscInfoModule"]["versionHolder"] = "2099-01-01"  # a later snapshot
    amended = _to_document(study)
    with conn.transaction():
        land_documents(conn, TRIALS_SPEC.source, [amended])

    again = normalize(conn)

    day = again[amended.partition_date]
    assert day.counts["trials"].updated == 1
    assert sum(d.unchanged_unread for d in again.values()) == len(DOCUMENTS) - 1
    title = conn.execute(
        "SELECT brief_title FROM core.trials WHERE nct_id = %s", (amended.doc_id,)
    ).fetchone()
    assert title is not None and title[0].endswith("(amended)")


def test_a_missing_core_row_is_derived_again(conn: psycopg.Connection) -> None:
    normalize(conn)
    lost = DOCUMENTS[5].doc_id
    conn.execute("DELETE FROM core.trials WHERE nct_id = %s", (lost,))

    again = normalize(conn)

    assert total(again, "inserted") == 1
    assert conn.execute("SELECT 1 FROM core.trials WHERE nct_id = %s", (lost,)).fetchone()


def test_a_new_derivation_version_reads_every_document_and_rewrites_only_what_it_changes(
    conn: psycopg.Connection, database_url: str
) -> None:
    normalize(conn)
    written = trial_row_versions(conn)
    before = {t: digest(database_url, f"core.{t}") for t in TRIALS_SPEC.tables}
    bumped = dataclasses.replace(TRIALS_SPEC, version=TRIALS_SPEC.version + "-next")

    again = normalize(conn, bumped)

    assert sum(d.unchanged_unread for d in again.values()) == 0  # all read and derived
    assert total(again, "unchanged") == len(DOCUMENTS)  # the same derivation: nothing written
    assert trial_row_versions(conn) == written
    assert {t: digest(database_url, f"core.{t}") for t in TRIALS_SPEC.tables} == before
    versions = conn.execute(
        "SELECT DISTINCT derivation_version FROM ops.normalized_days WHERE source = %s",
        (TRIALS_SPEC.source,),
    ).fetchall()
    assert versions == [(bumped.version,)]

    third = normalize(conn, bumped)  # recorded: the next run reads nothing again
    assert sum(d.unchanged_unread for d in third.values()) == len(DOCUMENTS)
