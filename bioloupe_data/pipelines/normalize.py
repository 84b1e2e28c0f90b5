"""Landed documents of a source re-derived into its core tables, one day per transaction.

A parent row is rewritten only when its derivation or version changed; its child rows are
replaced only for parents whose upsert won."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
import psycopg

from bioloupe_data.warehouse.documents import DeadLetter, record_dead_letters
from bioloupe_data.warehouse.upsert import (
    Table,
    UpsertCounts,
    copy_rows,
    create_staging,
    merge_versioned,
    sync_children,
)

BOOKKEEPING_COLUMNS = (
    "source_updated_at",
    "version_key",
    "content_hash",
    "derivation_hash",
    "partition_date",
    "normalized_at",
)
# Everything a re-derivation can change; the content and version are compared as well so a
# newer landed version always reaches core even if it derives identical rows.
CHANGE_COLUMNS = ("derivation_hash", "source_updated_at", "version_key", "content_hash")
BATCH = 500
PAYLOAD_EXCERPT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Derived:
    """What a parser derives from one landed document."""

    key: str
    row: tuple[Any, ...]
    children: dict[str, list[tuple[Any, ...]]]
    derivation_hash: str


@dataclass(frozen=True, slots=True)
class NormalizeSpec:
    source: str
    parent: Table
    children: dict[str, Table]
    parent_key: str
    # Raises a ValueError with a `reason` attribute (the dead letter's reason) for a document
    # that cannot be derived.
    derive: Callable[[Any], Derived]

    @property
    def tables(self) -> list[str]:
        return [self.parent.name, *self.children]


@dataclass(slots=True)
class NormalizedDay:
    day: date
    documents: int = 0
    dead_letters: int = 0
    counts: dict[str, UpsertCounts] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


def normalize_days(
    conn: psycopg.Connection,
    spec: NormalizeSpec,
    days: Iterable[date],
    *,
    run_id: str,
    on_day: Callable[[NormalizedDay], None] | None = None,
) -> list[NormalizedDay]:
    """Re-derive the core tables from the landed documents of each day."""
    days = list(days)
    landed = _landed_counts(conn, spec.source, days)
    results = []
    for day in days:
        if landed.get(day):
            with conn.transaction():
                result = _normalize_day(conn, spec, day, run_id)
        else:
            result = NormalizedDay(
                day,
                counts={t: UpsertCounts() for t in spec.tables},
                rows=dict.fromkeys(spec.tables, 0),
            )
        results.append(result)
        if on_day:
            on_day(result)
    return results


def _landed_counts(conn: psycopg.Connection, source: str, days: list[date]) -> dict[date, int]:
    if not days:
        return {}
    rows = conn.execute(
        """
        SELECT partition_date, count(*) FROM raw.documents
        WHERE source = %s AND partition_date BETWEEN %s AND %s GROUP BY partition_date
        """,
        (source, min(days), max(days)),
    ).fetchall()
    return dict(rows)


def _landed_batches(
    conn: psycopg.Connection, source: str, day: date
) -> Iterator[list[tuple[Any, ...]]]:
    after = ""
    while True:
        rows = conn.execute(
            """
            SELECT doc_id, payload::text, source_updated_at, version_key, content_hash
            FROM raw.documents
            WHERE source = %s AND partition_date = %s AND doc_id > %s
            ORDER BY doc_id LIMIT %s
            """,
            (source, day, after, BATCH),
        ).fetchall()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def _normalize_day(
    conn: psycopg.Connection, spec: NormalizeSpec, day: date, run_id: str
) -> NormalizedDay:
    result = NormalizedDay(day, rows=dict.fromkeys(spec.tables, 0))
    parent_staging = create_staging(conn, spec.parent)
    child_staging = {name: create_staging(conn, table) for name, table in spec.children.items()}
    letters: list[DeadLetter] = []
    normalized_at = datetime.now(UTC)
    for batch in _landed_batches(conn, spec.source, day):
        parent_rows: list[tuple[Any, ...]] = []
        child_rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in spec.children}
        for doc_id, payload, updated_at, version_key, content_hash in batch:
            result.documents += 1
            try:
                derived = spec.derive(orjson.loads(payload))
            except ValueError as exc:
                reason = getattr(exc, "reason", "derivation_failed")
                letters.append(
                    DeadLetter(
                        doc_id, day, reason, "normalize", str(exc), payload[:PAYLOAD_EXCERPT_CHARS]
                    )
                )
                continue
            bookkeeping = (updated_at, version_key, content_hash, derived.derivation_hash, day)
            parent_rows.append((*derived.row, *bookkeeping, normalized_at))
            for name in spec.children:
                child_rows[name].extend(derived.children[name])
        result.rows[spec.parent.name] += copy_rows(
            conn, parent_staging, spec.parent.columns, parent_rows
        )
        for name, table in spec.children.items():
            result.rows[name] += copy_rows(
                conn, child_staging[name], table.columns, child_rows[name]
            )
    # Core follows raw.documents, which keeps the earliest snapshot of identical content.
    merged = merge_versioned(
        conn,
        spec.parent,
        parent_staging,
        change_columns=(*CHANGE_COLUMNS, "partition_date"),
        allow_same_version=True,
        earliest_snapshot_of_same_content=True,
    )
    result.counts[spec.parent.name] = merged.counts
    changed = [key[0] for key in merged.changed_keys]
    for name, table in spec.children.items():
        result.counts[name] = sync_children(
            conn, table, child_staging[name], spec.parent_key, changed
        )
    record_dead_letters(conn, spec.source, run_id, letters)
    result.dead_letters = len(letters)
    return result
