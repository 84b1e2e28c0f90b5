"""Landing: `raw.documents`, fetch bookkeeping in `ops.partition_fetches`, and dead letters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import chain
from typing import Any

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
    ),
    ("source", "doc_id"),
)
# What makes a stored document different; a newer snapshot with the same content is not a change.
DOCUMENT_CHANGE_COLUMNS = ("content_hash", "source_updated_at", "partition_date")
PAYLOAD_EXCERPT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Document:
    doc_id: str
    payload_json: str
    source_updated_at: datetime
    version_key: str
    content_hash: str
    partition_date: date


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

    Returns (documents staged, counts). Must run inside the caller's transaction.
    """
    rows = _document_rows(source, documents)
    first = next(rows, None)
    if first is None:
        return 0, UpsertCounts()
    staging = create_staging(conn, DOCUMENTS)
    staged = copy_rows(conn, staging, DOCUMENTS.columns, chain([first], rows))
    result = merge_versioned(
        conn,
        DOCUMENTS,
        staging,
        change_columns=DOCUMENT_CHANGE_COLUMNS,
        allow_same_version=False,
        earliest_snapshot_of_same_content=True,
    )
    return staged, result.counts


def _document_rows(source: str, documents: Iterable[Document]) -> Iterator[tuple[Any, ...]]:
    landed_at = datetime.now(UTC)
    for d in documents:
        yield (
            source,
            d.doc_id,
            d.payload_json,
            d.source_updated_at,
            d.version_key,
            d.content_hash,
            d.partition_date,
            landed_at,
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
                    _clean(letter.doc_id),
                    letter.partition_date,
                    letter.reason,
                    letter.stage,
                    _clean(letter.detail),
                    _clean(letter.payload_excerpt[:PAYLOAD_EXCERPT_CHARS]),
                    run_id,
                )
                for letter in letters
            ],
        )


def _clean(text: str) -> str:
    """Text PostgreSQL accepts: no NUL characters, no lone surrogates."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "replace").decode("utf-8")


def dead_letter_count(conn: psycopg.Connection, source: str, day: date) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM ops.dead_letters WHERE source = %s AND partition_date = %s"),
        (source, day),
    ).fetchone()
    return row[0] if row else 0
