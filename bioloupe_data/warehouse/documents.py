"""Landing: `raw.documents`, fetch bookkeeping in `ops.partition_fetches`, and dead letters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import islice
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from bioloupe_data.warehouse.upsert import (
    Table,
    UpsertCounts,
    copy_rows,
    create_staging,
    merge_versioned,
)

DOCUMENTS = Table(
    "raw",
    "documents",
    (
        "source",
        "doc_id",
        "payload",
        "source_updated_at",
        "version_key",
        "content_hash",
        "partition_date",
        "landed_at",
        "source_digest",
    ),
    ("source", "doc_id"),
)
# What makes a stored document different; a newer snapshot with the same content is not a change.
DOCUMENT_CHANGE_COLUMNS = ("content_hash", "source_updated_at", "partition_date")
PAYLOAD_EXCERPT_CHARS = 2000
# Documents looked up and staged together: memory is bounded by one batch of payloads.
LOOKUP_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Document:
    doc_id: str
    # The payload's JSON text, or its UTF-8 bytes (decoded only if the document is staged).
    payload_json: str | bytes
    source_updated_at: datetime
    version_key: str
    content_hash: str
    partition_date: date
    # SHA-256 of the source's bytes the payload keeps, by which a re-fetch of the same bytes
    # is recognised: PubMed's XML; ClinicalTrials.gov's study JSON without its snapshot date.
    source_digest: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    doc_id: str
    partition_date: date
    reason: str
    stage: str
    detail: str
    payload_excerpt: str


@dataclass(frozen=True, slots=True)
class FetchRecord:
    partition_date: date
    run_id: str
    fetched_at: datetime
    chunk_start: date
    chunk_end: date
    source_total: int | None
    received: int
    landed: int
    counts: UpsertCounts
    dead_letters: int


def land_documents(
    conn: psycopg.Connection, source: str, documents: Iterable[Document]
) -> tuple[int, UpsertCounts]:
    """Stream documents into staging with COPY and merge them into raw.documents.

    Documents arrive in batches of `LOOKUP_BATCH`; for each batch the stored versions are read
    in one query, and a document the merge would certainly leave alone (see `_certainly_unchanged`)
    is counted as unchanged without being staged, so a re-fetch of unchanged documents never
    ships their payloads to the server. Returns (documents received, counts). Must run inside
    the caller's transaction.
    """
    received = 0
    staging: sql.Identifier | None = None
    staged_ids: set[str] = set()
    skipped_ids: set[str] = set()
    undigested: list[Document] = []
    for batch in _batches(documents, LOOKUP_BATCH):
        received += len(batch)
        stored = stored_versions(conn, source, [d.doc_id for d in batch])
        fresh = []
        for document in batch:
            version = stored.get(document.doc_id)
            if _certainly_unchanged(document, version):
                skipped_ids.add(document.doc_id)
                if _digest_to_fill(document, version):
                    undigested.append(document)
            else:
                fresh.append(document)
                staged_ids.add(document.doc_id)
        if fresh:
            staging = stage_documents(conn, source, fresh, staging)
    fill_digests(conn, source, undigested)
    counts = UpsertCounts(unchanged=len(skipped_ids - staged_ids))
    if staging is not None:
        counts.add(merge_documents(conn, staging))
    return received, counts


def stage_documents(
    conn: psycopg.Connection,
    source: str,
    documents: Iterable[Document],
    staging: sql.Identifier | None = None,
) -> sql.Identifier:
    """COPY `documents` into `staging` (a new staging table when None) and return it."""
    staging = staging or create_staging(conn, DOCUMENTS)
    copy_rows(conn, staging, DOCUMENTS.columns, _document_rows(source, documents))
    return staging


def merge_documents(conn: psycopg.Connection, staging: sql.Identifier) -> UpsertCounts:
    """Merge a staging table of documents into raw.documents under the version rule."""
    return merge_versioned(
        conn,
        DOCUMENTS,
        staging,
        change_columns=DOCUMENT_CHANGE_COLUMNS,
        allow_same_version=False,
        earliest_snapshot_of_same_content=True,
    ).counts


def _batches(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


class StoredVersion(NamedTuple):
    source_updated_at: datetime
    version_key: str
    content_hash: str
    partition_date: date
    source_digest: bytes | None


def stored_versions(
    conn: psycopg.Connection, source: str, doc_ids: Sequence[str]
) -> dict[str, StoredVersion]:
    """The stored version of each of `doc_ids` that `raw.documents` holds, in one query."""
    rows = conn.execute(
        """
        SELECT d.doc_id, d.source_updated_at, d.version_key, d.content_hash, d.partition_date,
               d.source_digest
        FROM unnest(%s::text[]) AS k(doc_id)
        JOIN raw.documents AS d ON d.source = %s AND d.doc_id = k.doc_id
        """,
        (list(doc_ids), source),
    ).fetchall()
    return {row[0]: StoredVersion(*row[1:]) for row in rows}


def _digest_to_fill(document: Document, stored: StoredVersion | None) -> bool:
    """True for a document landed before its source had digests, fetched again with the same
    content on the same day, and a version (snapshot date) where the stored one has one: its
    digest then describes the stored document too."""
    return (
        stored is not None
        and stored.source_digest is None
        and document.source_digest is not None
        and document.content_hash == stored.content_hash
        and document.source_updated_at == stored.source_updated_at
        and document.partition_date == stored.partition_date
        and bool(document.version_key) == bool(stored.version_key)
    )


def fill_digests(conn: psycopg.Connection, source: str, documents: Sequence[Document]) -> None:
    """Store the digests of stored documents that have none, in one statement: once written, a
    re-fetch of the same bytes is recognised by them (only the digest is written, once). A row
    another run changed since it was read keeps its own; rows are locked in key order."""
    if not documents:
        return
    conn.execute(
        """
        WITH fill AS (
            SELECT d.source, d.doc_id, f.digest
            FROM unnest(%s::text[], %s::bytea[], %s::text[], %s::timestamptz[], %s::date[])
                AS f(doc_id, digest, content_hash, source_updated_at, partition_date)
            JOIN raw.documents AS d ON d.source = %s AND d.doc_id = f.doc_id
            WHERE d.source_digest IS NULL AND d.content_hash = f.content_hash
              AND d.source_updated_at = f.source_updated_at
              AND d.partition_date = f.partition_date
            ORDER BY d.doc_id
            FOR UPDATE OF d
        )
        UPDATE raw.documents AS d SET source_digest = fill.digest
        FROM fill WHERE d.source = fill.source AND d.doc_id = fill.doc_id
        """,
        (
            [d.doc_id for d in documents],
            [d.source_digest for d in documents],
            [d.content_hash for d in documents],
            [d.source_updated_at for d in documents],
            [d.partition_date for d in documents],
            source,
        ),
    )


def _certainly_unchanged(document: Document, stored: StoredVersion | None) -> bool:
    """True when `merge_versioned` would not write `document` over the stored version: an older
    source version, or the same content on the same day in the same or a later snapshot. Any
    other case goes to the merge, which decides (this is a shortcut, never the rule)."""
    if stored is None:
        return False
    if document.source_updated_at < stored.source_updated_at:
        return True
    return (
        document.source_updated_at == stored.source_updated_at
        and document.content_hash == stored.content_hash
        and document.partition_date == stored.partition_date
        and document.version_key >= stored.version_key
    )


def _document_rows(source: str, documents: Iterable[Document]) -> Iterator[tuple[Any, ...]]:
    landed_at = datetime.now(UTC)
    for d in documents:
        yield (
            source,
            d.doc_id,
            d.payload_json if isinstance(d.payload_json, str) else d.payload_json.decode(),
            d.source_updated_at,
            d.version_key,
            d.content_hash,
            d.partition_date,
            landed_at,
            d.source_digest,
        )


def record_fetch(conn: psycopg.Connection, source: str, fetch: FetchRecord) -> None:
    conn.execute(
        """
        INSERT INTO ops.partition_fetches AS f (source, partition_date, run_id, fetched_at,
            chunk_start, chunk_end, source_total, received, landed, inserted, updated, unchanged,
            dead_letters)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (source, partition_date) DO UPDATE SET
            run_id = EXCLUDED.run_id, fetched_at = EXCLUDED.fetched_at,
            chunk_start = EXCLUDED.chunk_start, chunk_end = EXCLUDED.chunk_end,
            source_total = EXCLUDED.source_total, received = EXCLUDED.received,
            landed = EXCLUDED.landed, inserted = EXCLUDED.inserted, updated = EXCLUDED.updated,
            unchanged = EXCLUDED.unchanged, dead_letters = EXCLUDED.dead_letters
        """,
        (
            source,
            fetch.partition_date,
            fetch.run_id,
            fetch.fetched_at,
            fetch.chunk_start,
            fetch.chunk_end,
            fetch.source_total,
            fetch.received,
            fetch.landed,
            fetch.counts.inserted,
            fetch.counts.updated,
            fetch.counts.unchanged,
            fetch.dead_letters,
        ),
    )


def record_dead_letters(
    conn: psycopg.Connection, source: str, run_id: str, letters: Sequence[DeadLetter]
) -> None:
    """Upsert dead letters on (source, doc_id, partition_date, reason), pipelined in one trip."""
    if not letters:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO ops.dead_letters AS d (source, doc_id, partition_date, reason, stage,
                detail, payload_excerpt, run_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (source, doc_id, partition_date, reason) DO UPDATE SET
                stage = EXCLUDED.stage, detail = EXCLUDED.detail,
                payload_excerpt = EXCLUDED.payload_excerpt, run_id = EXCLUDED.run_id,
                last_seen_at = now()
            """,
            [
                (
                    source,
                    storable_text(letter.doc_id),
                    letter.partition_date,
                    letter.reason,
                    letter.stage,
                    storable_text(letter.detail),
                    storable_text(letter.payload_excerpt[:PAYLOAD_EXCERPT_CHARS]),
                    run_id,
                )
                for letter in letters
            ],
        )


def storable_text(text: str) -> str:
    """Text PostgreSQL accepts: no NUL characters, no lone surrogates."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "replace").decode("utf-8")


def dead_letter_count(conn: psycopg.Connection, source: str, day: date) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM ops.dead_letters WHERE source = %s AND partition_date = %s"),
        (source, day),
    ).fetchone()
    return row[0] if row else 0
