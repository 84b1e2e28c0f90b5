"""One source day landed in one transaction: documents merged into raw.documents, dead letters
recorded, and the fetch bookkeeping written to ops.partition_fetches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg

from bioloupe_data.warehouse.documents import (
    DeadLetter,
    Document,
    FetchRecord,
    land_documents,
    record_dead_letters,
    record_fetch,
)
from bioloupe_data.warehouse.statistics import GrowingTables
from bioloupe_data.warehouse.upsert import UpsertCounts


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@dataclass(slots=True)
class LandedDay:
    day: date
    received: int = 0
    landed: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    dead_letters: int = 0
    source_total: int | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """The range of days one source request covered, and the total the source reported."""

    start: date
    end: date
    source_total: int | None


def land_day(
    conn: psycopg.Connection,
    source: str,
    day: date,
    items: Iterable[Document | DeadLetter],
    *,
    run_id: str,
    chunk: Chunk,
    growing: GrowingTables,
) -> LandedDay:
    """Land one day's documents and dead letters and record the fetch, all or nothing.
    `growing` is the range's `raw.documents`: its statistics are refreshed first when due."""
    result = LandedDay(day, source_total=chunk.source_total)
    letters: list[DeadLetter] = []

    def documents() -> Iterator[Document]:
        for item in items:
            result.received += 1
            if isinstance(item, DeadLetter):
                letters.append(item)
            else:
                yield item

    growing.analyze_if_grown(conn)
    with conn.transaction():
        _, counts = land_documents(conn, source, documents())
        record_dead_letters(conn, source, run_id, letters)
        result.landed = counts.inserted + counts.updated + counts.unchanged
        result.counts = counts
        result.dead_letters = len(letters)
        record_fetch(
            conn,
            source,
            FetchRecord(
                partition_date=day,
                run_id=run_id,
                fetched_at=datetime.now(UTC),
                chunk_start=chunk.start,
                chunk_end=chunk.end,
                source_total=chunk.source_total,
                received=result.received,
                landed=result.landed,
                counts=counts,
                dead_letters=len(letters),
            ),
        )
    growing.wrote(result.counts.inserted)
    return result
