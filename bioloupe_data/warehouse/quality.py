"""Data quality of landed source days: measured in SQL from `raw.documents`,
`ops.partition_fetches` and `ops.dead_letters`, and judged day by day.

No Dagster here: `bioloupe_data.checks` turns each day's verdicts into asset check evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg import sql

from bioloupe_data.sources.clinicaltrials import SOURCE as CLINICALTRIALS_SOURCE
from bioloupe_data.sources.pubmed import SOURCE as PUBMED_SOURCE
from bioloupe_data.warehouse.upsert import Table

SAMPLE_SIZE = 10
DEFAULT_MAX_DEAD_LETTER_RATE = 0.05
DEFAULT_MIN_DEAD_LETTERS = 3


@dataclass(frozen=True, slots=True)
class DocumentRules:
    """What every landed document of one source must satisfy.

    The SQL fragments are constants of this module. `extract` is evaluated once per
    `raw.documents` row as `p`, the part of the payload the rules read; `payload_key` and the
    `required` conditions are evaluated over `p` (and the row's `partition_date`). Reading `p`
    instead of `payload` in every rule decompresses each payload once, not once per rule.
    """

    key_format: str  # POSIX regular expression
    key_format_label: str
    extract: sql.SQL
    payload_key: sql.SQL  # the key as the payload itself states it
    required: Mapping[str, sql.SQL]  # field -> condition that holds when the field is present


RULES: dict[str, DocumentRules] = {
    CLINICALTRIALS_SOURCE: DocumentRules(
        key_format=r"^NCT[0-9]{8}$",
        key_format_label="NCT########",
        extract=sql.SQL("payload -> 'protocolSection'"),
        payload_key=sql.SQL("p #>> '{identificationModule,nctId}'"),
        required={
            "briefTitle": sql.SQL("btrim(p #>> '{identificationModule,briefTitle}') <> ''"),
            "overallStatus": sql.SQL("btrim(p #>> '{statusModule,overallStatus}') <> ''"),
            # The day a study belongs to is its last update post date: the two must agree.
            "lastUpdatePostDate": sql.SQL(
                "p #>> '{statusModule,lastUpdatePostDateStruct,date}' = partition_date::text"
            ),
        },
    ),
    PUBMED_SOURCE: DocumentRules(
        key_format=r"^[1-9][0-9]*$",
        key_format_label="a PMID",
        extract=sql.SQL("payload ->> 'xml'"),
        # The first <PMID> of a <PubmedArticle> is MedlineCitation's own.
        payload_key=sql.SQL(r"substring(p from '<PMID[^>]*>\s*([0-9]+)\s*</PMID>')"),
        required={
            "PubmedArticle": sql.SQL(r"p ~ '^\s*<PubmedArticle[\s>]'"),
            # An empty <ArticleTitle/> beside a <VernacularTitle> is a real PubMed record.
            "ArticleTitle": sql.SQL(r"p ~ '<(ArticleTitle|VernacularTitle)[\s>/]'"),
            "Journal": sql.SQL(r"p ~ '<Journal[\s>]'"),
        },
    ),
}


@dataclass(frozen=True, slots=True)
class DeadLetterThreshold:
    """A day fails when more than `max_rate` of the records received were dead-lettered and at
    least `min_count` were: on a day of three records, one bad record is not a trend."""

    max_rate: float = DEFAULT_MAX_DEAD_LETTER_RATE
    min_count: int = DEFAULT_MIN_DEAD_LETTERS


@dataclass(frozen=True, slots=True)
class DayDocuments:
    """What the documents landed on one day look like."""

    documents: int = 0
    blank_keys: int = 0
    malformed_keys: int = 0
    mismatched_keys: int = 0
    duplicate_keys: int = 0
    key_sample: list[str] = field(default_factory=list)
    incomplete: int = 0
    missing_by_field: dict[str, int] = field(default_factory=dict)
    field_sample: list[str] = field(default_factory=list)

    @property
    def bad_keys(self) -> int:
        return self.blank_keys + self.malformed_keys + self.mismatched_keys + self.duplicate_keys


@dataclass(frozen=True, slots=True)
class Fetch:
    """The latest fetch of one day, and what was recorded over the whole chunk it came in."""

    run_id: str
    chunk_start: date
    chunk_end: date
    source_total: int | None
    received: int
    landed: int
    dead_letters: int
    chunk_days_recorded: int
    chunk_landed: int
    chunk_dead_letters: int

    @property
    def chunk_days(self) -> int:
        return (self.chunk_end - self.chunk_start).days + 1

    @property
    def superseded(self) -> bool:
        """Some days of the chunk were fetched again since (by a later run or a retry of a
        shorter range), so the chunk's own rows no longer add up to its total."""
        return self.chunk_days_recorded < self.chunk_days

    @property
    def chunk_accounted(self) -> int:
        return self.chunk_landed + self.chunk_dead_letters


@dataclass(frozen=True, slots=True)
class DayDeadLetters:
    by_reason: dict[str, int]
    sample: list[str]


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    description: str
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DayVerdicts:
    keys: Verdict
    required_fields: Verdict
    dead_letters: Verdict
    completeness: Verdict


def measure_documents(
    conn: psycopg.Connection,
    source: str,
    start: date,
    end: date,
    *,
    sample_size: int = SAMPLE_SIZE,
) -> dict[date, DayDocuments]:
    """Keys and required fields of the documents landed on each day of start..end (days
    without documents are left out)."""
    rules = RULES[source]
    fields = list(rules.required)
    present = sql.SQL(", ").join(
        sql.SQL("coalesce({}, false) AS {}").format(condition, sql.Identifier(f"has_{i}"))
        for i, condition in enumerate(rules.required.values())
    )
    missing = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {} THEN NULL ELSE {} END").format(
            sql.Identifier(f"has_{i}"), sql.Literal(name)
        )
        for i, name in enumerate(fields)
    )
    missing_counts = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE NOT {})").format(sql.Identifier(f"has_{i}"))
        for i in range(len(fields))
    )
    query = sql.SQL(
        """
        WITH docs AS MATERIALIZED (
            SELECT partition_date, doc_id, {payload_key} AS payload_key, {present}
            FROM (
                SELECT partition_date, doc_id, {extract} AS p
                FROM raw.documents
                WHERE source = %(source)s AND partition_date BETWEEN %(start)s AND %(end)s
                OFFSET 0  -- a fence: `p` is computed once per row, not inlined into each rule
            ) AS extracted
        ),
        judged AS (
            SELECT *,
                CASE
                    WHEN doc_id IS NULL OR btrim(doc_id) = '' THEN 'blank key'
                    WHEN doc_id !~ %(key_format)s THEN 'not ' || %(key_format_label)s
                    WHEN payload_key IS DISTINCT FROM doc_id
                        THEN 'payload states ' || coalesce(payload_key, 'no key')
                END AS key_problem,
                array_remove(ARRAY[{missing}]::text[], NULL) AS missing
            FROM docs
        )
        SELECT partition_date,
            count(*),
            count(*) FILTER (WHERE key_problem = 'blank key'),
            count(*) FILTER (WHERE key_problem LIKE 'not %%'),
            count(*) FILTER (WHERE key_problem LIKE 'payload states %%'),
            count(*) - count(DISTINCT doc_id),
            (array_agg(coalesce(doc_id, '(null)') || ': ' || key_problem ORDER BY doc_id)
                FILTER (WHERE key_problem IS NOT NULL))[1:%(sample)s::int],
            count(*) FILTER (WHERE cardinality(missing) > 0),
            (array_agg(doc_id || ': missing ' || array_to_string(missing, ', ') ORDER BY doc_id)
                FILTER (WHERE cardinality(missing) > 0))[1:%(sample)s::int],
            {missing_counts}
        FROM judged
        GROUP BY partition_date
        """
    ).format(
        extract=rules.extract,
        payload_key=rules.payload_key,
        present=present,
        missing=missing,
        missing_counts=missing_counts,
    )
    rows = conn.execute(
        query,
        {
            "source": source,
            "start": start,
            "end": end,
            "key_format": rules.key_format,
            "key_format_label": rules.key_format_label,
            "sample": sample_size,
        },
    ).fetchall()
    measured = {}
    for row in rows:
        day, documents, blank, malformed, mismatched, duplicates, key_sample, incomplete = row[:8]
        field_sample, *by_field = row[8:]
        measured[day] = DayDocuments(
            documents=documents,
            blank_keys=blank,
            malformed_keys=malformed,
            mismatched_keys=mismatched,
            duplicate_keys=duplicates,
            key_sample=list(key_sample or []),
            incomplete=incomplete,
            missing_by_field={name: n for name, n in zip(fields, by_field, strict=True) if n},
            field_sample=list(field_sample or []),
        )
    return measured


def recorded_fetches(
    conn: psycopg.Connection, source: str, start: date, end: date
) -> dict[date, Fetch]:
    """The fetch recorded for each day of start..end, with the totals of its whole chunk."""
    rows = conn.execute(
        """
        WITH days AS (
            SELECT * FROM ops.partition_fetches
            WHERE source = %(source)s AND partition_date BETWEEN %(start)s AND %(end)s
        ),
        chunks AS (
            SELECT g.run_id, g.chunk_start, g.chunk_end, count(*) AS days_recorded,
                sum(g.landed) AS landed, sum(g.dead_letters) AS dead_letters
            FROM (SELECT DISTINCT run_id, chunk_start, chunk_end FROM days) AS k
            JOIN ops.partition_fetches AS g
                ON g.source = %(source)s
                AND g.partition_date BETWEEN k.chunk_start AND k.chunk_end
                AND (g.run_id, g.chunk_start, g.chunk_end)
                    = (k.run_id, k.chunk_start, k.chunk_end)
            GROUP BY g.run_id, g.chunk_start, g.chunk_end
        )
        SELECT d.partition_date, d.run_id, d.chunk_start, d.chunk_end, d.source_total,
            d.received, d.landed, d.dead_letters, c.days_recorded, c.landed, c.dead_letters
        FROM days AS d JOIN chunks AS c USING (run_id, chunk_start, chunk_end)
        """,
        {"source": source, "start": start, "end": end},
    ).fetchall()
    return {
        row[0]: Fetch(
            run_id=row[1],
            chunk_start=row[2],
            chunk_end=row[3],
            source_total=row[4],
            received=row[5],
            landed=row[6],
            dead_letters=row[7],
            chunk_days_recorded=row[8],
            chunk_landed=int(row[9]),
            chunk_dead_letters=int(row[10]),
        )
        for row in rows
    }


def landing_dead_letters(
    conn: psycopg.Connection,
    source: str,
    start: date,
    end: date,
    *,
    sample_size: int = SAMPLE_SIZE,
) -> dict[date, DayDeadLetters]:
    """The landing rejects of each day's latest fetch: counts by reason and a sample of keys."""
    rows = conn.execute(
        """
        SELECT d.partition_date, d.reason, count(*),
            (array_agg(d.doc_id ORDER BY d.doc_id))[1:%(sample)s::int]
        FROM ops.dead_letters AS d
        JOIN ops.partition_fetches AS f
            ON f.source = d.source AND f.partition_date = d.partition_date AND f.run_id = d.run_id
        WHERE d.source = %(source)s AND d.stage = 'landing'
            AND d.partition_date BETWEEN %(start)s AND %(end)s
        GROUP BY d.partition_date, d.reason
        ORDER BY d.partition_date, count(*) DESC, d.reason
        """,
        {"source": source, "start": start, "end": end, "sample": sample_size},
    ).fetchall()
    letters: dict[date, DayDeadLetters] = {}
    for day, reason, n, doc_ids in rows:
        found = letters.setdefault(day, DayDeadLetters({}, []))
        found.by_reason[reason] = n
        room = sample_size - len(found.sample)
        found.sample.extend(f"{doc_id} ({reason})" for doc_id in doc_ids[:room])
    return letters


def judge_days(
    conn: psycopg.Connection,
    source: str,
    start: date,
    end: date,
    threshold: DeadLetterThreshold,
) -> dict[date, DayVerdicts]:
    """Every check's verdict for every day of start..end."""
    documents = measure_documents(conn, source, start, end)
    fetches = recorded_fetches(conn, source, start, end)
    letters = landing_dead_letters(conn, source, start, end)
    rules = RULES[source]
    verdicts = {}
    day = start
    while day <= end:
        fetch = fetches.get(day)
        found = documents.get(day, DayDocuments())
        verdicts[day] = DayVerdicts(
            keys=judge_keys(found, rules),
            required_fields=judge_required_fields(found, rules),
            dead_letters=judge_dead_letters(fetch, letters.get(day), threshold),
            completeness=judge_completeness(fetch),
        )
        day += timedelta(days=1)
    return verdicts


def judge_keys(found: DayDocuments, rules: DocumentRules) -> Verdict:
    metadata: dict[str, Any] = {
        "documents": found.documents,
        "blank_keys": found.blank_keys,
        "malformed_keys": found.malformed_keys,
        "keys_differing_from_payload": found.mismatched_keys,
        "duplicate_keys": found.duplicate_keys,
    }
    if found.key_sample:
        metadata["offending_keys_sample"] = found.key_sample
    if not found.bad_keys:
        return Verdict(True, f"{found.documents} documents, every key valid and unique.", metadata)
    return Verdict(
        False,
        f"{found.bad_keys} of {found.documents} documents have a blank, duplicate or invalid key "
        f"(expected {rules.key_format_label}, equal to the payload's own): "
        + ", ".join(found.key_sample),
        metadata,
    )


def judge_required_fields(found: DayDocuments, rules: DocumentRules) -> Verdict:
    metadata: dict[str, Any] = {
        "documents": found.documents,
        "incomplete_documents": found.incomplete,
        "required_fields": list(rules.required),
    }
    if found.missing_by_field:
        metadata["missing_by_field"] = found.missing_by_field
        metadata["incomplete_sample"] = found.field_sample
    if not found.incomplete:
        return Verdict(
            True, f"{found.documents} documents, none missing a required field.", metadata
        )
    return Verdict(
        False,
        f"{found.incomplete} of {found.documents} documents lack a required field: "
        + "; ".join(found.field_sample),
        metadata,
    )


def judge_dead_letters(
    fetch: Fetch | None, letters: DayDeadLetters | None, threshold: DeadLetterThreshold
) -> Verdict:
    metadata: dict[str, Any] = {
        "max_rate": threshold.max_rate,
        "min_count": threshold.min_count,
    }
    if fetch is None:
        return Verdict(True, "No fetch recorded for this day: nothing was rejected.", metadata)
    rate = fetch.dead_letters / fetch.received if fetch.received else 0.0
    metadata |= {
        "received": fetch.received,
        "dead_letters": fetch.dead_letters,
        "rate": round(rate, 4),
    }
    if letters is not None:
        metadata["by_reason"] = letters.by_reason
        metadata["dead_letters_sample"] = letters.sample
    summary = f"{fetch.dead_letters} of {fetch.received} records rejected ({rate:.1%})"
    if fetch.dead_letters >= threshold.min_count and rate > threshold.max_rate:
        sample = ", ".join(letters.sample) if letters else ""
        return Verdict(
            False,
            f"{summary}, over the limit of {threshold.max_rate:.1%}; see ops.dead_letters: "
            + sample,
            metadata,
        )
    return Verdict(True, f"{summary}, within the limit of {threshold.max_rate:.1%}.", metadata)


def judge_completeness(fetch: Fetch | None) -> Verdict:
    if fetch is None:
        return Verdict(False, "No fetch recorded for this day in ops.partition_fetches.", {})
    chunk = f"{fetch.chunk_start}..{fetch.chunk_end}"
    metadata: dict[str, Any] = {
        "chunk": chunk,
        "fetch_run_id": fetch.run_id,
        "source_total": fetch.source_total,
        "chunk_landed": fetch.chunk_landed,
        "chunk_dead_letters": fetch.chunk_dead_letters,
        "day_received": fetch.received,
        "day_landed": fetch.landed,
    }
    if fetch.source_total is None:
        return Verdict(False, f"The source reported no total for the fetch of {chunk}.", metadata)
    accounted = fetch.chunk_accounted
    metadata["difference"] = accounted - fetch.source_total
    counted = (
        f"the source counted {fetch.source_total} records for {chunk}; "
        f"{fetch.chunk_landed} landed and {fetch.chunk_dead_letters} dead-lettered"
    )
    if fetch.superseded:
        # Only what is left of the chunk can be compared: it may not exceed the total.
        metadata["chunk_days_still_recorded"] = fetch.chunk_days_recorded
        metadata["chunk_days"] = fetch.chunk_days
        passed = accounted <= fetch.source_total
        return Verdict(
            passed,
            f"{counted} on the {fetch.chunk_days_recorded} of {fetch.chunk_days} days not "
            "fetched again since"
            + (" (no more than the total)." if passed else ", more than the total."),
            metadata,
        )
    if accounted == fetch.source_total:
        return Verdict(True, counted.capitalize() + ".", metadata)
    return Verdict(
        False,
        counted.capitalize()
        + f": {abs(accounted - fetch.source_total)} "
        + ("missing." if accounted < fetch.source_total else "too many."),
        metadata,
    )


# ---------------------------------------------------------------------------------------------
# Integrity of the core tables


def orphan_counts(
    conn: psycopg.Connection, parent: Table, children: Mapping[str, Table], key: str
) -> dict[str, int]:
    """Rows of each child table whose parent row (`key` in `parent`) is missing: the core child
    tables carry no foreign keys (migration 009), so this is what verifies them."""
    if not children:
        return {}
    counts = sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT {name}, count(*) FROM {child} AS c "
            "WHERE NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE p.{key} = c.{key})"
        ).format(
            name=sql.Literal(name),
            child=child.ident,
            parent=parent.ident,
            key=sql.Identifier(key),
        )
        for name, child in children.items()
    )
    return {name: int(n) for name, n in conn.execute(counts).fetchall()}
