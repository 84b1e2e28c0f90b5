"""Landed documents of a source re-derived into its core tables, one day per transaction.

A parent row is rewritten only when its derivation or version changed; its child rows are
replaced only for parents whose upsert won."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import chain
from typing import Any

import orjson
import psycopg
from psycopg import sql

from bioloupe_data.memory import paused_gc
from bioloupe_data.pipelines.workers import DayWorkers, WorkerProcesses
from bioloupe_data.warehouse.documents import DeadLetter, record_dead_letters
from bioloupe_data.warehouse.statistics import GrowingTables
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
# Documents to derive from which a range's days run in worker processes (given a `worker_url`
# and more than one connection): starting them costs about a third of a second, which a daily
# increment of a few hundred documents would not win back.
PROCESS_MIN_DOCUMENTS = 3000


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
    # Bump when `derive` changes what it derives: every day is then derived again in full (the
    # merge still rewrites only rows whose derivation changed). It is also the asset's
    # code_version, so the UI marks the partitions stale.
    version: str

    @property
    def tables(self) -> list[str]:
        return [self.parent.name, *self.children]


@dataclass(slots=True)
class NormalizedDay:
    day: date
    documents: int = 0
    dead_letters: int = 0
    counts: dict[str, UpsertCounts] = field(default_factory=dict)
    # Rows derived and staged per table (documents skipped as unchanged derive none).
    rows: dict[str, int] = field(default_factory=dict)
    # Documents counted as unchanged without being read: their core row holds their version.
    unchanged_unread: int = 0


def normalize_days(
    connections: psycopg.Connection | Sequence[psycopg.Connection],
    spec: NormalizeSpec,
    days: Iterable[date],
    *,
    run_id: str,
    on_day: Callable[[NormalizedDay], None] | None = None,
    worker_url: str | None = None,
    process_min_documents: int = PROCESS_MIN_DOCUMENTS,
) -> list[NormalizedDay]:
    """Re-derive the core tables from the landed documents of each day, one transaction a day.

    A day last normalized by `spec.version` derives only its documents whose landed version
    (update time, snapshot, content hash, day) differs from their core row's, or that have
    none; the rest are counted as unchanged without being read. Any other day is derived in
    full. Given several connections, that many days are normalized side by side; `on_day` is
    called in this thread as each day commits. Returns the days in date order.

    With `worker_url` (the warehouse the connections are on), several connections and at
    least `process_min_documents` documents to derive over two days or more, the days'
    transactions run in as many worker processes as there are connections, so the
    derivations use as many cores."""
    conns = [connections] if isinstance(connections, psycopg.Connection) else list(connections)
    days = list(days)
    landed = _landed_counts(conns[0], spec.source, days)
    versions = _normalized_versions(conns[0], spec.source, days)
    growing = GrowingTables([spec.parent, *spec.children.values()])
    results: list[NormalizedDay] = []

    def committed(result: NormalizedDay) -> None:
        results.append(result)
        if on_day:
            on_day(result)

    with ExitStack() as stack:
        processes = None
        if (
            worker_url is not None
            and len(conns) > 1
            and _derives_at_least(conns[0], spec, days, landed, versions, process_min_documents)
        ):
            processes = stack.enter_context(WorkerProcesses(len(conns), worker_url))
        # Entered last, left first: the days in flight finish before the processes stop.
        workers = stack.enter_context(DayWorkers(conns, committed))
        for day in days:
            if not landed.get(day):
                committed(
                    NormalizedDay(
                        day,
                        counts={t: UpsertCounts() for t in spec.tables},
                        rows=dict.fromkeys(spec.tables, 0),
                    )
                )
                continue
            full = versions.get(day) != spec.version
            workers.submit(
                lambda conn, day=day, full=full: _normalize_landed_day(
                    conn, spec, day, landed[day], run_id, full, growing, processes
                )
            )
    return sorted(results, key=lambda r: r.day)


def _normalize_landed_day(
    conn: psycopg.Connection,
    spec: NormalizeSpec,
    day: date,
    landed: int,
    run_id: str,
    full: bool,
    growing: GrowingTables,
    processes: WorkerProcesses | None,
) -> NormalizedDay:
    growing.analyze_if_grown(conn)
    if processes is None:
        result = _normalize_day_transaction(conn, spec, day, landed, run_id, full)
    else:
        result = processes.run(_normalize_day_transaction, spec, day, landed, run_id, full)
    growing.wrote(result.counts[spec.parent.name].inserted)
    return result


def _normalize_day_transaction(
    conn: psycopg.Connection, spec: NormalizeSpec, day: date, landed: int, run_id: str, full: bool
) -> NormalizedDay:
    with conn.transaction():
        result = _normalize_day(conn, spec, day, run_id, full=full)
        result.unchanged_unread = landed - result.documents
        result.counts[spec.parent.name].unchanged += result.unchanged_unread
        result.rows[spec.parent.name] += result.unchanged_unread
        result.documents = landed
        _record_normalized_day(conn, spec, day, run_id)
    return result


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


def _normalized_versions(
    conn: psycopg.Connection, source: str, days: list[date]
) -> dict[date, str]:
    if not days:
        return {}
    rows = conn.execute(
        """
        SELECT partition_date, derivation_version FROM ops.normalized_days
        WHERE source = %s AND partition_date BETWEEN %s AND %s
        """,
        (source, min(days), max(days)),
    ).fetchall()
    return dict(rows)


def _record_normalized_day(
    conn: psycopg.Connection, spec: NormalizeSpec, day: date, run_id: str
) -> None:
    conn.execute(
        """
        INSERT INTO ops.normalized_days AS n
            (source, partition_date, derivation_version, run_id, normalized_at)
        VALUES (%s, %s, %s, %s, now())
        ON CONFLICT (source, partition_date) DO UPDATE SET
            derivation_version = EXCLUDED.derivation_version, run_id = EXCLUDED.run_id,
            normalized_at = EXCLUDED.normalized_at
        WHERE n.derivation_version IS DISTINCT FROM EXCLUDED.derivation_version
        """,
        (spec.source, day, spec.version, run_id),
    )


# A landed document `d` whose core row `p` is missing or holds another version.
_CORE_ROW_DIFFERS = sql.SQL(
    """
    (p.{key} IS NULL
     OR (p.source_updated_at, p.version_key, p.content_hash, p.partition_date)
        IS DISTINCT FROM (d.source_updated_at, d.version_key, d.content_hash, d.partition_date))
    """
)


def _core_row_differs(spec: NormalizeSpec) -> sql.Composable:
    return _CORE_ROW_DIFFERS.format(key=sql.Identifier(spec.parent_key))


def _derives_at_least(
    conn: psycopg.Connection,
    spec: NormalizeSpec,
    days: list[date],
    landed: dict[date, int],
    versions: dict[date, str],
    documents: int,
) -> bool:
    """Whether normalizing `days` derives at least `documents` documents, over at least two
    days (one day at a time gains nothing from more processes): every landed document of a
    day last normalized by another version, and those of the other days whose core row
    differs, counted only as far as needed."""
    with_documents = [day for day in days if landed.get(day)]
    if len(with_documents) < 2:
        return False
    full = sum(landed[day] for day in with_documents if versions.get(day) != spec.version)
    if full >= documents:
        return True
    others = [day for day in with_documents if versions.get(day) == spec.version]
    if not others:
        return False
    statement = sql.SQL(
        """
        SELECT count(*) FROM (
            SELECT FROM raw.documents AS d LEFT JOIN {parent} AS p ON p.{key} = d.doc_id
            WHERE d.source = %(source)s AND d.partition_date = ANY(%(days)s) AND {differs}
            LIMIT %(limit)s
        ) AS changed
        """
    ).format(
        parent=spec.parent.ident,
        key=sql.Identifier(spec.parent_key),
        differs=_core_row_differs(spec),
    )
    row = conn.execute(
        statement, {"source": spec.source, "days": others, "limit": documents - full}
    ).fetchone()
    return full + (int(row[0]) if row else 0) >= documents


def _landed_batches(
    conn: psycopg.Connection, spec: NormalizeSpec, day: date, *, full: bool
) -> Iterator[list[tuple[Any, ...]]]:
    """The day's landed documents in key order, in batches; unless `full`, only those whose
    core row is missing or holds another version."""
    statement = sql.SQL(
        """
        SELECT d.doc_id, d.payload::text, d.source_updated_at, d.version_key, d.content_hash
        FROM raw.documents AS d LEFT JOIN {parent} AS p ON p.{key} = d.doc_id
        WHERE d.source = %(source)s AND d.partition_date = %(day)s AND d.doc_id > %(after)s
          AND (%(full)s OR {differs})
        ORDER BY d.doc_id LIMIT %(limit)s
        """
    ).format(
        parent=spec.parent.ident,
        key=sql.Identifier(spec.parent_key),
        differs=_core_row_differs(spec),
    )
    after = ""
    while True:
        rows = conn.execute(
            statement,
            {"source": spec.source, "day": day, "after": after, "full": full, "limit": BATCH},
        ).fetchall()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def _normalize_day(
    conn: psycopg.Connection, spec: NormalizeSpec, day: date, run_id: str, *, full: bool
) -> NormalizedDay:
    result = NormalizedDay(day, rows=dict.fromkeys(spec.tables, 0))
    batches = _landed_batches(conn, spec, day, full=full)
    first = next(batches, None)
    if first is None:  # every document's core row holds its version: nothing to stage or merge
        result.counts = {name: UpsertCounts() for name in spec.tables}
        return result
    parent_staging = create_staging(conn, spec.parent)
    child_staging = {name: create_staging(conn, table) for name, table in spec.children.items()}
    letters: list[DeadLetter] = []
    normalized_at = datetime.now(UTC)
    for batch in chain([first], batches):
        parent_rows: list[tuple[Any, ...]] = []
        child_rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in spec.children}
        for doc_id, payload, updated_at, version_key, content_hash in batch:
            result.documents += 1
            try:
                with paused_gc():
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
