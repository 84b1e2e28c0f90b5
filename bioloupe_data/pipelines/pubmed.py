"""PubMed days, end to end without Dagster: search a range of days by modification date, fetch
it, and land it day by day; normalize landed days into `core.publications` and its children.

efetch returns a range's articles in PMID order, not by day, so a range is first spooled into a
session temporary table (bounded memory: one efetch batch at a time) and then landed one day per
transaction from there. The partition day is the article's `DateRevised` (else its entrez date);
an article whose day falls outside the searched range (PubMed's modification date can differ
from `DateRevised`) is landed on the nearest day of the range.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import orjson
import psycopg
from psycopg import sql

from bioloupe_data.pipelines.landing import Chunk, LandedDay, days_between, land_day
from bioloupe_data.pipelines.normalize import (
    BOOKKEEPING_COLUMNS,
    Derived,
    NormalizeSpec,
)
from bioloupe_data.sources.http import SourceError
from bioloupe_data.sources.pubmed.client import SOURCE, PubmedClient
from bioloupe_data.sources.pubmed.parser import (
    CHILD_TABLES,
    PUBLICATION_COLUMNS,
    ArticleParseError,
    ArticleXml,
    iter_pubmed_xml,
    parse_article,
)
from bioloupe_data.sources.pubmed.slicing import article_digest, cut_articles
from bioloupe_data.warehouse.documents import DOCUMENTS, DeadLetter, Document, stored_versions
from bioloupe_data.warehouse.statistics import GrowingTables
from bioloupe_data.warehouse.upsert import Table, copy_rows

PUBLICATIONS = Table(
    "core", "publications", (*PUBLICATION_COLUMNS, *BOOKKEEPING_COLUMNS), ("pmid",)
)
PUBLICATION_CHILDREN = {
    name: Table("core", name, tuple(columns), ("pmid", "ordinal"))
    for name, columns in CHILD_TABLES.items()
}
SPOOL = sql.Identifier("pubmed_spool")
SPOOL_COLUMNS = (
    "doc_id",
    "payload_json",
    "source_updated_at",
    "version_key",
    "content_hash",
    "partition_date",
    "source_digest",
)
EXCERPT_CHARS = 2000


def _derive_publication(payload: Any) -> Derived:
    if not isinstance(payload, dict) or not isinstance(payload.get("xml"), str):
        raise ArticleParseError("not_an_article", "landed payload has no article XML")
    parsed = parse_article(payload["xml"])
    return Derived(parsed.pmid, parsed.publication, parsed.children, parsed.derivation_hash)


PUBLICATIONS_SPEC = NormalizeSpec(
    SOURCE, PUBLICATIONS, PUBLICATION_CHILDREN, "pmid", _derive_publication, version="1"
)


def _to_document(article: ArticleXml, start: date, end: date) -> Document:
    identity = article.identity()
    return Document(
        doc_id=identity.pmid,
        payload_json=_payload_json(identity.pmid, article.xml),
        source_updated_at=datetime.combine(identity.modified, time(), UTC),
        version_key=identity.version_key,
        content_hash=identity.content_hash,
        partition_date=_range_day(identity.modified, start, end),
        source_digest=article_digest(article.xml),
    )


def _payload_json(pmid: str, xml: str) -> str:
    return orjson.dumps({"pmid": pmid, "xml": xml}).decode()


def _range_day(modified: date, start: date, end: date) -> date:
    return min(max(modified, start), end)


def _stored_documents(
    conn: psycopg.Connection, body: bytes, start: date, end: date
) -> list[Document] | None:
    """The body's documents when it holds only articles (`cut_articles`) and every one is, byte
    for byte, the XML stored for its PMID: what parsing would read off those bytes (key, day,
    version, content hash) is what was stored with them, so none is parsed, and the body is
    well-formed since each article was when it was stored. None when any article is new or
    changed, or the body holds anything else: it is then parsed as a whole."""
    cuts = cut_articles(body)
    if not cuts:
        return None
    stored = stored_versions(conn, SOURCE, [cut.pmid for cut in cuts])
    if len(stored) < len({cut.pmid for cut in cuts}):
        return None  # a new article: not worth hashing the others
    documents = []
    for cut in cuts:
        version = stored[cut.pmid]
        if version.source_digest != cut.digest:
            return None  # a changed article
        updated_at = version.source_updated_at
        documents.append(
            Document(
                doc_id=cut.pmid,
                # the stored XML's own bytes: they decode
                payload_json=_payload_json(cut.pmid, cut.markup.decode("utf-8")),
                source_updated_at=updated_at,
                version_key=version.version_key,
                content_hash=version.content_hash,
                partition_date=_range_day(updated_at.astimezone(UTC).date(), start, end),
                source_digest=version.source_digest,
            )
        )
    return documents


def _create_spool(conn: psycopg.Connection) -> None:
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (doc_id text, payload_json text, "
            "source_updated_at timestamptz, version_key text, content_hash text, "
            "partition_date date, source_digest bytea) ON COMMIT PRESERVE ROWS"
        ).format(SPOOL)
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS pubmed_spool_day ON {} (partition_date)").format(SPOOL)
    )
    conn.execute(sql.SQL("TRUNCATE {}").format(SPOOL))


def _spooled(conn: psycopg.Connection, day: date) -> Iterator[Document]:
    with conn.cursor(name=None) as cursor:
        cursor.execute(
            sql.SQL("SELECT {} FROM {} WHERE partition_date = %s ORDER BY doc_id").format(
                sql.SQL(", ").join(map(sql.Identifier, SPOOL_COLUMNS)), SPOOL
            ),
            (day,),
        )
        for row in cursor:
            yield Document(*row)


def _spool_row(document: Document) -> tuple[Any, ...]:
    return tuple(getattr(document, column) for column in SPOOL_COLUMNS)


def spool_range(
    conn: psycopg.Connection, client: PubmedClient, start: date, end: date
) -> tuple[int, dict[date, list[DeadLetter]]]:
    """Fetch every article of the range into the spool; return the source's total and the
    articles that could not be landed, by day."""
    _create_spool(conn)
    letters: dict[date, list[DeadLetter]] = defaultdict(list)
    plan = client.plan(start, end)
    for part in plan.parts:
        for body in client.fetch(part):
            known = _stored_documents(conn, body, start, end)
            if known is not None:
                copy_rows(conn, SPOOL, SPOOL_COLUMNS, map(_spool_row, known))
                continue
            rows = []
            try:
                for item in iter_pubmed_xml(body):
                    if not isinstance(item, ArticleXml):
                        continue  # efetch never answers with deletions; update files do
                    try:
                        document = _to_document(item, start, end)
                    except ArticleParseError as exc:
                        doc_id = item.pmid or "unidentified"
                        letters[start].append(
                            DeadLetter(
                                doc_id,
                                start,
                                exc.reason,
                                "landing",
                                str(exc),
                                item.xml[:EXCERPT_CHARS],
                            )
                        )
                        continue
                    rows.append(_spool_row(document))
            except ArticleParseError as exc:  # the body itself is broken: fetch it again
                raise SourceError(f"{SOURCE}: efetch answered with unreadable XML: {exc}") from None
            copy_rows(conn, SPOOL, SPOOL_COLUMNS, rows)
    conn.execute(sql.SQL("ANALYZE {}").format(SPOOL))
    return plan.total, letters


def land_range(
    connections: psycopg.Connection | Sequence[psycopg.Connection],
    client: PubmedClient,
    start: date,
    end: date,
    *,
    run_id: str,
    on_day: Callable[[LandedDay], None] | None = None,
) -> list[LandedDay]:
    """Search, fetch and land every article modified in start..end, one day per transaction.

    The range is spooled into a temporary table of one session first, so every day is landed
    from that session: of several connections, only the first is used."""
    conn = connections if isinstance(connections, psycopg.Connection) else connections[0]
    total, letters = spool_range(conn, client, start, end)
    chunk = Chunk(start, end, total)
    growing = GrowingTables([DOCUMENTS])
    results = []
    for day in days_between(start, end):
        items: list[Document | DeadLetter] = list(_spooled(conn, day))
        items += letters.get(day, [])
        result = land_day(conn, SOURCE, day, items, run_id=run_id, chunk=chunk, growing=growing)
        results.append(result)
        if on_day:
            on_day(result)
    conn.execute(sql.SQL("TRUNCATE {}").format(SPOOL))
    return results
