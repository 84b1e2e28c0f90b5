"""ClinicalTrials.gov days, end to end without Dagster: fetch a range of days and land it day by
day, and normalize landed days into `core.trials` and its child tables.

Each day commits in its own transaction; `on_day` is called after each commit so the caller can
record that day as done.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby
from typing import Any

import orjson
import psycopg

from bioloupe_data.sources.clinicaltrials import (
    CHILD_TABLES,
    SOURCE,
    TRIAL_COLUMNS,
    ClinicalTrialsClient,
    StudyParseError,
    parse_study,
    study_identity,
)
from bioloupe_data.sources.http import SourceError
from bioloupe_data.warehouse.documents import (
    DeadLetter,
    Document,
    FetchRecord,
    land_documents,
    record_dead_letters,
    record_fetch,
)
from bioloupe_data.warehouse.upsert import (
    Table,
    UpsertCounts,
    copy_rows,
    create_staging,
    merge_versioned,
    sync_children,
)

TRIAL_BOOKKEEPING = (
    "source_updated_at",
    "version_key",
    "content_hash",
    "derivation_hash",
    "partition_date",
    "normalized_at",
)
TRIALS = Table("core", "trials", (*TRIAL_COLUMNS, *TRIAL_BOOKKEEPING), ("nct_id",))
CHILDREN = {
    name: Table("core", name, tuple(columns), ("nct_id", "ordinal"))
    for name, columns in CHILD_TABLES.items()
}
# Everything a re-derivation can change; the content and version are compared as well so a
# newer landed version always reaches core even if it derives identical rows.
TRIAL_CHANGE_COLUMNS = ("derivation_hash", *TRIAL_BOOKKEEPING[:3], "partition_date")
NORMALIZE_BATCH = 500
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


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


@dataclass(slots=True)
class NormalizedDay:
    day: date
    documents: int = 0
    dead_letters: int = 0
    counts: dict[str, UpsertCounts] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- landing


def _to_document(study: Any) -> Document:
    identity = study_identity(study)
    try:
        payload = orjson.dumps(study).decode()
    except TypeError as exc:  # e.g. a lone surrogate in a string
        raise StudyParseError("unserializable_payload", str(exc)) from exc
    if _JSON_NUL.search(payload):
        raise StudyParseError("nul_character", "PostgreSQL text cannot hold NUL (\\u0000)")
    return Document(
        doc_id=identity.nct_id,
        payload_json=payload,
        source_updated_at=datetime.combine(identity.last_update_post_date, time(), UTC),
        version_key=identity.version_key,
        content_hash=identity.content_hash,
        partition_date=identity.last_update_post_date,
    )


def _excerpt(study: Any) -> str:
    try:
        return orjson.dumps(study).decode()[:2000]
    except TypeError:
        return repr(study)[:2000]


def _doc_id_of(study: Any) -> str:
    try:
        nct_id = study["protocolSection"]["identificationModule"]["nctId"]
        if isinstance(nct_id, str) and nct_id:
            return nct_id
    except (KeyError, TypeError):
        pass
    return "unidentified:" + _sha(_excerpt(study))


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def _classified(
    pages: Iterable[list[Any]], start: date, end: date
) -> Iterator[tuple[date, Document | DeadLetter]]:
    """Each study with the day it belongs to; a study that cannot be landed becomes a dead
    letter of the day being read when it arrived."""
    current = start
    for studies in pages:
        for study in studies:
            try:
                document = _to_document(study)
            except StudyParseError as exc:
                yield current, _dead_letter(study, current, exc.reason, str(exc), "landing")
                continue
            if not start <= document.partition_date <= end:
                detail = f"last update {document.partition_date} outside {start}..{end}"
                yield (
                    current,
                    _dead_letter(study, current, "outside_requested_range", detail, "landing"),
                )
                continue
            if document.partition_date < current:
                raise SourceError(
                    f"{SOURCE}: studies not sorted by LastUpdatePostDate "
                    f"({document.doc_id} dated {document.partition_date} after {current})"
                )
            current = document.partition_date
            yield current, document


def _dead_letter(study: Any, day: date, reason: str, detail: str, stage: str) -> DeadLetter:
    return DeadLetter(_doc_id_of(study), day, reason, stage, detail, _excerpt(study))


def land_range(
    conn: psycopg.Connection,
    client: ClinicalTrialsClient,
    start: date,
    end: date,
    *,
    run_id: str,
    on_day: Callable[[LandedDay], None] | None = None,
) -> list[LandedDay]:
    """Fetch every study updated in start..end with one paged query and land it day by day."""
    total: list[int | None] = [None]

    def pages() -> Iterator[list[Any]]:
        for page in client.iter_pages(start, end):
            if page.page_number == 0:
                total[0] = page.total_count
            yield page.studies

    results: list[LandedDay] = []
    pending_days = iter(days_between(start, end))

    def commit(day: date, items: Iterable[Document | DeadLetter]) -> None:
        result = _land_day(conn, day, items, run_id=run_id, start=start, end=end, total=total)
        results.append(result)
        if on_day:
            on_day(result)

    for day, group in groupby(_classified(pages(), start, end), key=lambda item: item[0]):
        for empty_day in pending_days:
            if empty_day == day:
                break
            commit(empty_day, ())
        commit(day, (item for _, item in group))
    for empty_day in pending_days:
        commit(empty_day, ())
    return results


def _land_day(
    conn: psycopg.Connection,
    day: date,
    items: Iterable[Document | DeadLetter],
    *,
    run_id: str,
    start: date,
    end: date,
    total: list[int | None],
) -> LandedDay:
    result = LandedDay(day)
    letters: list[DeadLetter] = []

    def documents() -> Iterator[Document]:
        for item in items:
            result.received += 1
            if isinstance(item, DeadLetter):
                letters.append(item)
            else:
                yield item

    with conn.transaction():
        _, counts = land_documents(conn, SOURCE, documents())
        record_dead_letters(conn, SOURCE, run_id, letters)
        result.landed = counts.inserted + counts.updated + counts.unchanged
        result.counts = counts
        result.dead_letters = len(letters)
        result.source_total = total[0]
        record_fetch(
            conn,
            SOURCE,
            FetchRecord(
                partition_date=day,
                run_id=run_id,
                fetched_at=datetime.now(UTC),
                chunk_start=start,
                chunk_end=end,
                source_total=total[0],
                received=result.received,
                landed=result.landed,
                counts=counts,
                dead_letters=len(letters),
            ),
        )
    return result


# ----------------------------------------------------------------------------- normalizing


def normalize_days(
    conn: psycopg.Connection,
    days: Iterable[date],
    *,
    run_id: str,
    on_day: Callable[[NormalizedDay], None] | None = None,
) -> list[NormalizedDay]:
    """Re-derive core.trials and its child tables from the landed documents of each day."""
    days = list(days)
    landed = _landed_counts(conn, days)
    results = []
    for day in days:
        if landed.get(day):
            with conn.transaction():
                result = _normalize_day(conn, day, run_id)
        else:
            result = _empty_normalized_day(day)
        results.append(result)
        if on_day:
            on_day(result)
    return results


def _landed_counts(conn: psycopg.Connection, days: list[date]) -> dict[date, int]:
    if not days:
        return {}
    rows = conn.execute(
        """
        SELECT partition_date, count(*) FROM raw.documents
        WHERE source = %s AND partition_date BETWEEN %s AND %s GROUP BY partition_date
        """,
        (SOURCE, min(days), max(days)),
    ).fetchall()
    return dict(rows)


def _empty_normalized_day(day: date) -> NormalizedDay:
    tables = ["trials", *CHILDREN]
    return NormalizedDay(
        day, counts={t: UpsertCounts() for t in tables}, rows=dict.fromkeys(tables, 0)
    )


def _landed_batches(conn: psycopg.Connection, day: date) -> Iterator[list[tuple[Any, ...]]]:
    after = ""
    while True:
        rows = conn.execute(
            """
            SELECT doc_id, payload::text, source_updated_at, version_key, content_hash
            FROM raw.documents
            WHERE source = %s AND partition_date = %s AND doc_id > %s
            ORDER BY doc_id LIMIT %s
            """,
            (SOURCE, day, after, NORMALIZE_BATCH),
        ).fetchall()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def _normalize_day(conn: psycopg.Connection, day: date, run_id: str) -> NormalizedDay:
    result = NormalizedDay(day)
    trial_staging = create_staging(conn, TRIALS)
    child_staging = {name: create_staging(conn, table) for name, table in CHILDREN.items()}
    result.rows = dict.fromkeys(["trials", *CHILDREN], 0)
    letters: list[DeadLetter] = []
    normalized_at = datetime.now(UTC)
    for batch in _landed_batches(conn, day):
        trial_rows: list[tuple[Any, ...]] = []
        child_rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in CHILDREN}
        for doc_id, payload, updated_at, version_key, content_hash in batch:
            result.documents += 1
            study = orjson.loads(payload)
            try:
                parsed = parse_study(study)
            except StudyParseError as exc:
                letters.append(
                    DeadLetter(doc_id, day, exc.reason, "normalize", str(exc), payload[:2000])
                )
                continue
            bookkeeping = (updated_at, version_key, content_hash, parsed.derivation_hash, day)
            trial_rows.append((*parsed.trial, *bookkeeping, normalized_at))
            for name in CHILDREN:
                child_rows[name].extend(parsed.children[name])
        result.rows["trials"] += copy_rows(conn, trial_staging, TRIALS.columns, trial_rows)
        for name, table in CHILDREN.items():
            result.rows[name] += copy_rows(
                conn, child_staging[name], table.columns, child_rows[name]
            )
    # Core follows raw.documents, which keeps the earliest snapshot of identical content.
    merged = merge_versioned(
        conn,
        TRIALS,
        trial_staging,
        change_columns=TRIAL_CHANGE_COLUMNS,
        allow_same_version=True,
        earliest_snapshot_of_same_content=True,
    )
    result.counts["trials"] = merged.counts
    changed = [key[0] for key in merged.changed_keys]
    for name, table in CHILDREN.items():
        result.counts[name] = sync_children(conn, table, child_staging[name], "nct_id", changed)
    record_dead_letters(conn, SOURCE, run_id, letters)
    result.dead_letters = len(letters)
    return result
