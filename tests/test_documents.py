"""Landing into raw.documents, fetch bookkeeping and dead letters, on a migrated warehouse."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from bioloupe_data.warehouse.documents import (
    PAYLOAD_EXCERPT_CHARS,
    DeadLetter,
    Document,
    FetchRecord,
    dead_letter_count,
    fill_digests,
    land_documents,
    merge_documents,
    record_dead_letters,
    record_fetch,
    stage_documents,
)
from bioloupe_data.warehouse.upsert import UpsertCounts

SOURCE = "clinicaltrials_gov"
DAY = date(2024, 3, 1)


def doc(
    doc_id: str,
    day: date = DAY,
    *,
    content: str = "c1",
    version: str = "2024_03_01",
) -> Document:
    """A document whose payload carries its content and its snapshot version."""
    payload = {"id": doc_id, "content": content, "versionHolder": version}
    return Document(
        doc_id=doc_id,
        payload_json=json.dumps(payload),
        source_updated_at=datetime(day.year, day.month, day.day, tzinfo=UTC),
        version_key=version,
        content_hash=f"hash-{content}",
        partition_date=day,
    )


def land(
    conn: psycopg.Connection, documents: Sequence[Document], source: str = SOURCE
) -> tuple[int, UpsertCounts]:
    with conn.transaction():
        return land_documents(conn, source, documents)


def stored(conn: psycopg.Connection, source: str = SOURCE) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        """SELECT doc_id, payload, source_updated_at, version_key, content_hash, partition_date,
                  landed_at, xmin::text
           FROM raw.documents WHERE source = %s ORDER BY doc_id""",
        (source,),
    ).fetchall()
    names = ("payload", "source_updated_at", "version_key", "content_hash", "partition_date")
    return {
        r[0]: {**dict(zip(names, r[1:6], strict=True)), "landed_at": r[6], "xmin": r[7]}
        for r in rows
    }


def as_stored(d: Document) -> dict[str, Any]:
    return {
        "payload": json.loads(d.payload_json),
        "source_updated_at": d.source_updated_at,
        "version_key": d.version_key,
        "content_hash": d.content_hash,
        "partition_date": d.partition_date,
    }


def content_of(conn: psycopg.Connection, source: str = SOURCE) -> dict[str, dict[str, Any]]:
    """The stored documents without the bookkeeping that says when they were written."""
    return {
        k: {c: v for c, v in row.items() if c not in ("landed_at", "xmin")}
        for k, row in stored(conn, source).items()
    }


# ----------------------------------------------------------------------------- land_documents


def test_land_documents_inserts_and_counts(conn: psycopg.Connection) -> None:
    documents = [doc("NCT02"), doc("NCT01"), doc("NCT03", DAY + timedelta(days=1))]

    staged, counts = land(conn, documents)

    assert staged == 3
    assert counts == UpsertCounts(inserted=3)
    assert content_of(conn) == {d.doc_id: as_stored(d) for d in documents}
    assert all(row["landed_at"] is not None for row in stored(conn).values())


def test_landing_the_same_documents_again_changes_nothing(conn: psycopg.Connection) -> None:
    documents = [doc("NCT01"), doc("NCT02")]
    land(conn, documents)
    before = stored(conn)

    staged, counts = land(conn, documents)

    assert staged == 2
    assert counts == UpsertCounts(unchanged=2)
    assert stored(conn) == before  # not even landed_at or the row version moved


def test_a_newer_version_replaces_the_stored_document(conn: psycopg.Connection) -> None:
    land(conn, [doc("NCT01"), doc("NCT02")])
    before = stored(conn)
    later = DAY + timedelta(days=5)
    newer = doc("NCT01", later, content="c2", version="2024_03_06")

    staged, counts = land(conn, [newer, doc("NCT02")])

    assert (staged, counts) == (2, UpsertCounts(updated=1, unchanged=1))
    after = stored(conn)
    assert content_of(conn)["NCT01"] == as_stored(newer)
    assert after["NCT01"]["landed_at"] > before["NCT01"]["landed_at"]
    assert after["NCT02"] == before["NCT02"]


def test_a_new_content_hash_on_the_same_day_replaces(conn: psycopg.Connection) -> None:
    """A correction published the same day: same timestamp, later snapshot, other content."""
    land(conn, [doc("NCT01", content="c1", version="2024_03_01")])
    corrected = doc("NCT01", content="c2", version="2024_03_02")

    _, counts = land(conn, [corrected])

    assert counts == UpsertCounts(updated=1)
    assert content_of(conn)["NCT01"] == as_stored(corrected)


@pytest.mark.parametrize(
    "older",
    [
        doc("NCT01", DAY - timedelta(days=1), content="c9", version="2024_03_09"),
        doc("NCT01", DAY, content="c2", version="2024_02_28"),
    ],
    ids=["earlier_update_date", "earlier_snapshot"],
)
def test_an_older_version_is_ignored(conn: psycopg.Connection, older: Document) -> None:
    newest = doc("NCT01", DAY, content="c1", version="2024_03_01")
    land(conn, [newest])
    before = stored(conn)

    staged, counts = land(conn, [older])

    assert (staged, counts) == (1, UpsertCounts(unchanged=1))
    assert stored(conn) == before


def test_a_newer_snapshot_with_the_same_content_is_not_rewritten(
    conn: psycopg.Connection,
) -> None:
    """A daily re-run gets a new versionHolder for an unchanged study; that is no change."""
    land(conn, [doc("NCT01", version="2024_03_01")])
    before = stored(conn)

    _, counts = land(conn, [doc("NCT01", version="2024_03_02")])

    assert counts == UpsertCounts(unchanged=1)
    assert stored(conn) == before


def test_landing_order_does_not_matter(conn: psycopg.Connection) -> None:
    old = [doc("NCT01", content="c1"), doc("NCT02", DAY + timedelta(days=1), content="c1")]
    new = [
        doc("NCT01", DAY + timedelta(days=2), content="c2", version="2024_03_03"),
        doc("NCT02", DAY + timedelta(days=1), content="c2", version="2024_03_03"),
    ]
    land(conn, old, source="forward")
    land(conn, new, source="forward")
    land(conn, new, source="backward")
    land(conn, old, source="backward")

    assert content_of(conn, "forward") == content_of(conn, "backward")
    assert content_of(conn, "forward") == {d.doc_id: as_stored(d) for d in new}


def test_same_content_snapshots_converge_whatever_the_landing_order(
    conn: psycopg.Connection,
) -> None:
    """DESIGN: partitions processed in any order or replayed converge to the same warehouse.

    Two snapshots of one unchanged study differ only in versionHolder (`version_key` and the
    payload). Landed oldest first the warehouse keeps the first snapshot; newest first it keeps
    the second — the stored version_key and payload depend on the order of landing.
    """
    first = doc("NCT01", content="c1", version="2024_03_01")
    second = doc("NCT01", content="c1", version="2024_03_02")
    land(conn, [first], source="forward")
    land(conn, [second], source="forward")
    land(conn, [second], source="backward")
    land(conn, [first], source="backward")

    forward, backward = content_of(conn, "forward"), content_of(conn, "backward")
    assert forward == backward, (
        f"order-dependent landing: oldest first keeps version_key "
        f"{forward['NCT01']['version_key']!r}, newest first keeps "
        f"{backward['NCT01']['version_key']!r}"
    )


def test_a_page_repeating_a_document_lands_its_newest_version(conn: psycopg.Connection) -> None:
    newest = doc("NCT01", DAY + timedelta(days=1), content="c2", version="2024_03_02")
    page = [doc("NCT01"), newest, doc("NCT02"), doc("NCT01")]

    staged, counts = land(conn, page)

    assert staged == 4
    assert counts == UpsertCounts(inserted=2)
    assert content_of(conn)["NCT01"] == as_stored(newest)


def test_sources_are_kept_apart(conn: psycopg.Connection) -> None:
    land(conn, [doc("X1", content="from a")], source="a")

    _, counts = land(conn, [doc("X1", content="from b")], source="b")

    assert counts == UpsertCounts(inserted=1)
    assert content_of(conn, "a")["X1"]["content_hash"] == "hash-from a"
    assert content_of(conn, "b")["X1"]["content_hash"] == "hash-from b"


def test_landing_streams_a_generator(conn: psycopg.Connection) -> None:
    documents = (doc(f"NCT{i:05d}") for i in range(1500))

    staged, counts = land(conn, list(documents))
    with conn.transaction():
        again = land_documents(conn, SOURCE, (doc(f"NCT{i:05d}") for i in range(1500)))

    assert (staged, counts) == (1500, UpsertCounts(inserted=1500))
    assert again == (1500, UpsertCounts(unchanged=1500))


def test_landing_nothing_does_nothing(conn: psycopg.Connection) -> None:
    land(conn, [doc("NCT01")])
    before = stored(conn)

    with conn.transaction():
        empty_list = land_documents(conn, SOURCE, [])
        empty_generator = land_documents(conn, SOURCE, iter(()))

    assert empty_list == (0, UpsertCounts())
    assert empty_generator == (0, UpsertCounts())
    assert stored(conn) == before


# ----------------------------------------------------------------------------- record_fetch


def fetch(run_id: str, day: date = DAY, *, landed: int = 2, total: int | None = 10) -> FetchRecord:
    return FetchRecord(
        partition_date=day,
        run_id=run_id,
        fetched_at=datetime(2024, 3, 10, 12, tzinfo=UTC),
        chunk_start=day,
        chunk_end=day + timedelta(days=6),
        source_total=total,
        received=3,
        landed=landed,
        counts=UpsertCounts(inserted=1, updated=1, unchanged=landed - 2),
        dead_letters=1,
    )


def fetches(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        """SELECT source, partition_date, run_id, fetched_at, chunk_start, chunk_end,
                  source_total, received, landed, inserted, updated, unchanged, dead_letters
           FROM ops.partition_fetches ORDER BY source, partition_date"""
    ).fetchall()


def test_record_fetch_keeps_one_row_per_source_and_day(conn: psycopg.Connection) -> None:
    with conn.transaction():
        record_fetch(conn, SOURCE, fetch("run-1"))
    with conn.transaction():
        record_fetch(conn, SOURCE, fetch("run-2", landed=5, total=None))
        record_fetch(conn, SOURCE, fetch("run-2", DAY + timedelta(days=1)))
        record_fetch(conn, "pubmed", fetch("run-3"))

    rows = fetches(conn)

    assert [(r[0], r[1], r[2]) for r in rows] == [
        (SOURCE, DAY, "run-2"),
        (SOURCE, DAY + timedelta(days=1), "run-2"),
        ("pubmed", DAY, "run-3"),
    ]
    latest = fetch("run-2", landed=5, total=None)
    assert rows[0] == (
        SOURCE,
        DAY,
        "run-2",
        latest.fetched_at,
        DAY,
        DAY + timedelta(days=6),
        None,
        3,
        5,
        1,
        1,
        3,
        1,
    )


# ----------------------------------------------------------------------------- dead letters


def letter(doc_id: str = "NCT01", reason: str = "missing_nct_id", **kw: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "doc_id": doc_id,
        "partition_date": DAY,
        "reason": reason,
        "stage": "land",
        "detail": "no identificationModule.nctId",
        "payload_excerpt": '{"protocolSection": {}}',
    }
    fields.update(kw)
    return DeadLetter(**fields)


def letters(conn: psycopg.Connection) -> list[dict[str, Any]]:
    cur = conn.execute(
        """SELECT source, doc_id, partition_date, reason, stage, detail, payload_excerpt, run_id,
                  first_seen_at, last_seen_at
           FROM ops.dead_letters ORDER BY source, doc_id, reason"""
    )
    names = [c.name for c in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_the_same_dead_letter_twice_is_one_row(conn: psycopg.Connection) -> None:
    with conn.transaction():
        record_dead_letters(conn, SOURCE, "run-1", [letter()])
    (first,) = letters(conn)

    with conn.transaction():
        record_dead_letters(conn, SOURCE, "run-2", [letter(detail="still no nctId")])
    (second,) = letters(conn)

    assert second["first_seen_at"] == first["first_seen_at"]
    assert second["last_seen_at"] > first["last_seen_at"]
    assert (second["run_id"], second["detail"]) == ("run-2", "still no nctId")
    assert dead_letter_count(conn, SOURCE, DAY) == 1


def test_dead_letters_are_keyed_by_doc_day_and_reason(conn: psycopg.Connection) -> None:
    batch = [
        letter(),
        letter(),  # repeated within one call
        letter(reason="bad_date"),
        letter(doc_id="NCT02"),
        letter(partition_date=DAY + timedelta(days=1)),
    ]
    with conn.transaction():
        record_dead_letters(conn, SOURCE, "run-1", batch)
        record_dead_letters(conn, "pubmed", "run-1", [letter()])

    keys = [(r["source"], r["doc_id"], r["partition_date"], r["reason"]) for r in letters(conn)]
    assert keys == [
        (SOURCE, "NCT01", DAY, "bad_date"),
        (SOURCE, "NCT01", DAY, "missing_nct_id"),
        (SOURCE, "NCT01", DAY + timedelta(days=1), "missing_nct_id"),
        (SOURCE, "NCT02", DAY, "missing_nct_id"),
        ("pubmed", "NCT01", DAY, "missing_nct_id"),
    ]
    assert dead_letter_count(conn, SOURCE, DAY) == 3
    assert dead_letter_count(conn, SOURCE, DAY + timedelta(days=1)) == 1
    assert dead_letter_count(conn, "pubmed", DAY + timedelta(days=1)) == 0


def test_no_dead_letters_writes_nothing(conn: psycopg.Connection) -> None:
    with conn.transaction():
        record_dead_letters(conn, SOURCE, "run-1", [])

    assert letters(conn) == []


def test_dead_letters_store_text_postgresql_would_reject(conn: psycopg.Connection) -> None:
    """A bad record is exactly where NUL characters and lone surrogates turn up."""
    nasty = letter(
        doc_id="NCT\x0001",
        detail="bad \ud800 surrogate and \x00 NUL",
        payload_excerpt="x" * (PAYLOAD_EXCERPT_CHARS + 500) + "\x00",
    )
    with conn.transaction():
        record_dead_letters(conn, SOURCE, "run-1", [nasty])

    (row,) = letters(conn)
    assert "\x00" not in row["doc_id"]
    assert row["doc_id"].startswith("NCT")
    assert row["detail"].startswith("bad ")
    assert row["detail"].endswith(" NUL")
    assert row["payload_excerpt"] == "x" * PAYLOAD_EXCERPT_CHARS


def test_the_unchanged_shortcut_never_skips_what_the_merge_would_write(
    conn: psycopg.Connection,
) -> None:
    """Every pair of a stored and an incoming version (update day, snapshot, content, partition
    day): landed through `land_documents`, which skips documents it judges unchanged, the table
    ends exactly as the merge alone leaves it."""
    days = (DAY, DAY + timedelta(days=1))
    variants = [
        (updated, version, content, partition)
        for updated in days
        for version in ("2024_03_01", "2024_03_02")
        for content in ("c1", "c2")
        for partition in days
    ]

    def variant(doc_id: str, spec: tuple[date, str, str, date]) -> Document:
        updated, version, content, partition = spec
        base = doc(doc_id, updated, content=content, version=version)
        return Document(
            base.doc_id,
            base.payload_json,
            base.source_updated_at,
            base.version_key,
            base.content_hash,
            partition,
        )

    pairs = [
        (f"NCT{i:03d}{j:03d}", old, new)
        for i, old in enumerate(variants)
        for j, new in enumerate(variants)
    ]
    land(conn, [variant(doc_id, old) for doc_id, old, _ in pairs])
    land(conn, [variant(doc_id, new) for doc_id, _, new in pairs])
    shortcut = content_of(conn)

    conn.execute("TRUNCATE raw.documents")
    land(conn, [variant(doc_id, old) for doc_id, old, _ in pairs])
    with conn.transaction():  # the merge alone, every incoming document staged
        incoming = [variant(doc_id, new) for doc_id, _, new in pairs]
        merge_documents(conn, stage_documents(conn, SOURCE, incoming))

    assert len(shortcut) == len(pairs) == 256
    assert shortcut == content_of(conn)


def test_a_refetch_of_unchanged_documents_counts_them_once_each(conn: psycopg.Connection) -> None:
    documents = [doc(f"NCT{i:05d}") for i in range(2500)]  # more than one lookup batch
    land(conn, documents)
    before = stored(conn)

    staged, counts = land(conn, [*documents, documents[0]])  # a page may repeat a document

    assert (staged, counts) == (2501, UpsertCounts(unchanged=2500))
    assert stored(conn) == before


# ----------------------------------------------------------------------------- digests


def digests(conn: psycopg.Connection) -> dict[str, bytes | None]:
    return dict(conn.execute("SELECT doc_id, source_digest FROM raw.documents ORDER BY doc_id"))


def test_an_unchanged_refetch_fills_in_a_missing_digest_where_it_describes_the_stored_one(
    conn: psycopg.Connection,
) -> None:
    land(conn, [doc("NCT01"), doc("NCT02", version="")])  # landed before digests
    again = [
        replace(doc("NCT01", version="2024_03_02"), source_digest=b"d1"),
        # the stored study has no snapshot date: a digest leaving one out is not its own
        replace(doc("NCT02", version="2024_03_02"), source_digest=b"d2"),
    ]
    before = stored(conn)

    _, counts = land(conn, again)

    assert counts == UpsertCounts(unchanged=2)
    assert digests(conn) == {"NCT01": b"d1", "NCT02": None}
    after = stored(conn)
    assert {k: {**v, "xmin": None} for k, v in after.items()} == {
        k: {**v, "xmin": None} for k, v in before.items()
    }  # nothing else written


def test_a_digest_is_not_filled_in_over_a_row_changed_since_it_was_read(
    conn: psycopg.Connection,
) -> None:
    land(conn, [doc("NCT01", content="c2")])
    read_before = replace(doc("NCT01", content="c1"), source_digest=b"stale")
    with conn.transaction():
        fill_digests(conn, SOURCE, [read_before])
    assert digests(conn) == {"NCT01": None}
    with conn.transaction():
        fill_digests(conn, SOURCE, [replace(doc("NCT01", content="c2"), source_digest=b"d")])
    assert digests(conn) == {"NCT01": b"d"}
