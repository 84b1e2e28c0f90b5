"""Normalizing landed days: only documents whose landed version differs from their core row are
read again, unless the derivation's version changed; the warehouse ends the same either way."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from bioloupe_data.assets.normalize import TRIALS_NORMALIZATION, build_normalization_asset
from bioloupe_data.partitions import RANGE_END_TAG, RANGE_START_TAG, daily_partitions
from bioloupe_data.pipelines import normalize as normalize_module
from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC, _to_document
from bioloupe_data.pipelines.normalize import NormalizedDay, normalize_days
from bioloupe_data.resources import WarehouseResource
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


_FAILING_TRIAL = DOCUMENTS[7].doc_id


def _derive_or_fail(payload: dict) -> object:
    """TRIALS_SPEC's derivation, failing for one trial with an error that is not bad input
    (module level: worker processes import it by name)."""
    if payload["protocolSection"]["identificationModule"]["nctId"] == _FAILING_TRIAL:
        raise RuntimeError(f"derivation crashed on {_FAILING_TRIAL}")
    return TRIALS_SPEC.derive(payload)


def _truncate_core(conn: psycopg.Connection) -> None:
    tables = [TRIALS_SPEC.parent, *TRIALS_SPEC.children.values()]
    conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(t.ident for t in tables)))


def _recording_processes(monkeypatch: pytest.MonkeyPatch) -> list[date]:
    """The days normalize_days hands to worker processes, from now on."""
    in_workers: list[date] = []

    class RecordedWorkerProcesses(normalize_module.WorkerProcesses):
        def run(self, work, *args):  # type: ignore[no-untyped-def]
            in_workers.append(args[1])  # (spec, day, ...)
            return super().run(work, *args)

    monkeypatch.setattr(normalize_module, "WorkerProcesses", RecordedWorkerProcesses)
    return in_workers


def test_days_normalized_in_worker_processes_end_as_in_this_one(
    conn: psycopg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_threads = {d.day: d for d in normalize_days(conn, TRIALS_SPEC, DAYS, run_id="test")}
    expected = {t: digest(database_url, f"core.{t}") for t in TRIALS_SPEC.tables}
    _truncate_core(conn)
    conn.execute("TRUNCATE ops.normalized_days")
    in_workers = _recording_processes(monkeypatch)
    committed: list[date] = []
    with connect(database_url) as other:
        in_processes = normalize_days(
            [conn, other],
            TRIALS_SPEC,
            DAYS,
            run_id="test",
            on_day=lambda day: committed.append(day.day),
            worker_url=database_url,
            process_min_documents=len(DOCUMENTS),
        )

    assert sorted(in_workers) == sorted(committed) == DAYS
    assert {d.day: d for d in in_processes} == in_threads
    assert {t: digest(database_url, f"core.{t}") for t in TRIALS_SPEC.tables} == expected


def test_a_range_with_fewer_documents_to_derive_stays_in_this_process(
    conn: psycopg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_processes(*args: object) -> None:
        raise AssertionError("worker processes started")

    normalize(conn)
    study = json.loads(json.dumps(STUDIES[3]))
    study["protocolSection"]["identificationModule"]["briefTitle"] += " (amended)"
    study["derivedSection"]["miscInfoModule"]["versionHolder"] = "2099-01-01"
    with conn.transaction():
        land_documents(conn, TRIALS_SPEC.source, [_to_document(study)])
    monkeypatch.setattr(normalize_module, "WorkerProcesses", no_processes)

    with connect(database_url) as other:  # one document to derive again, of 60 landed
        again = normalize_days(
            [conn, other],
            TRIALS_SPEC,
            DAYS,
            run_id="test",
            worker_url=database_url,
            process_min_documents=2,
        )

    assert total({d.day: d for d in again}, "updated") == 1


def test_a_single_day_stays_in_this_process_however_many_documents_it_derives(
    conn: psycopg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_processes(*args: object) -> None:
        raise AssertionError("worker processes started")

    busiest = max(DAYS, key=lambda day: sum(d.partition_date == day for d in DOCUMENTS))
    monkeypatch.setattr(normalize_module, "WorkerProcesses", no_processes)

    with connect(database_url) as other:  # one day at a time: more processes gain nothing
        (normalized,) = normalize_days(
            [conn, other],
            TRIALS_SPEC,
            [busiest],
            run_id="test",
            worker_url=database_url,
            process_min_documents=1,
        )

    assert normalized.counts["trials"].inserted == normalized.documents > 0


def test_the_normalization_asset_derives_a_range_in_worker_processes_past_its_threshold(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_day = date(2024, 3, 4)
    range_days = [first_day + timedelta(days=i) for i in range(3)]
    redated = [
        dataclasses.replace(d, partition_date=range_days[i % 3]) for i, d in enumerate(DOCUMENTS)
    ]
    with connect(database_url) as conn:
        migrate(conn)
        with conn.transaction():
            land_documents(conn, TRIALS_SPEC.source, redated)
    in_workers = _recording_processes(monkeypatch)

    def materialize(
        process_min_documents: int, days: list[date] = range_days
    ) -> dg.ExecuteInProcessResult:
        warehouse = WarehouseResource(
            database_url=database_url, process_min_documents=process_min_documents
        )
        return dg.materialize(
            [build_normalization_asset(TRIALS_NORMALIZATION, daily_partitions("2024-01-01"))],
            resources={"warehouse": warehouse},
            tags={RANGE_START_TAG: str(days[0]), RANGE_END_TAG: str(days[-1])},
        )

    first = materialize(process_min_documents=len(DOCUMENTS))
    assert sorted(in_workers) == range_days
    events = first.asset_materializations_for_node(TRIALS_NORMALIZATION.key.to_python_identifier())
    # The run's own materialization of each partition, at its end, has that day's counts.
    run_events = {m.partition: m.metadata for m in events if "partitions_in_run" in m.metadata}
    assert sorted(run_events) == [str(day) for day in range_days]
    assert sum(m["inserted"].value for m in run_events.values()) == len(DOCUMENTS)
    assert all(m["inserted"].value < len(DOCUMENTS) for m in run_events.values())
    # Per-table figures of a range are the run's: none of its days carries them. A one-day
    # run is its day, and does.
    per_table = {f"{table}.rows" for table in TRIALS_SPEC.children}
    assert not any(per_table & m.keys() for m in run_events.values())
    one_day = materialize(process_min_documents=len(DOCUMENTS), days=range_days[:1])
    (day_event,) = [
        m
        for m in one_day.asset_materializations_for_node(
            TRIALS_NORMALIZATION.key.to_python_identifier()
        )
        if "partitions_in_run" in m.metadata
    ]
    assert per_table <= day_event.metadata.keys()
    assert day_event.metadata["unchanged"].value == run_events[str(range_days[0])]["inserted"].value

    in_workers.clear()
    with connect(database_url) as conn:  # one more document than the range has to derive
        _truncate_core(conn)
    materialize(process_min_documents=len(DOCUMENTS) + 1)
    assert in_workers == []
    with connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM core.trials").fetchone() == (len(DOCUMENTS),)


def test_a_day_failing_in_a_worker_process_rolls_back_alone_and_fails_the_range(
    conn: psycopg.Connection, database_url: str
) -> None:
    crashing = dataclasses.replace(TRIALS_SPEC, derive=_derive_or_fail)
    failing_day = DOCUMENTS[7].partition_date
    with (
        connect(database_url) as other,
        pytest.raises(RuntimeError, match=f"derivation crashed on {_FAILING_TRIAL}"),
    ):
        normalize_days(
            [conn, other],
            crashing,
            DAYS,
            run_id="test",
            worker_url=database_url,
            process_min_documents=1,
        )

    recorded = {d for (d,) in conn.execute("SELECT partition_date FROM ops.normalized_days")}
    assert failing_day not in recorded
    per_day = dict(
        conn.execute("SELECT partition_date, count(*) FROM core.trials GROUP BY 1").fetchall()
    )
    landed = {day: sum(d.partition_date == day for d in DOCUMENTS) for day in DAYS}
    assert failing_day not in per_day  # nothing of the failing day
    assert per_day == {day: landed[day] for day in recorded}  # the days that committed, whole
