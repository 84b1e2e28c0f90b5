"""PubMed landing without Dagster: every real article over the years they span, landed and
normalized by the code the assets run; a re-fetch lands the article that changed, leaves the rest
alone and counts everything it received; articles stored byte for byte as fetched are recognised
without parsing them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import date
from pathlib import Path

import psycopg
import pytest

from bioloupe_data.pipelines import pubmed
from bioloupe_data.pipelines.landing import LandedDay, days_between
from bioloupe_data.pipelines.normalize import NormalizedDay, normalize_days
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic_pubmed_day
from bioloupe_data.sources.pubmed import (
    ArticleParseError,
    ArticleXml,
    article_identity,
    iter_pubmed_xml,
)
from bioloupe_data.sources.pubmed.client import PubmedClient
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.digest import table_digest
from bioloupe_data.warehouse.documents import Document, land_documents
from bioloupe_data.warehouse.migrate import migrate

from conftest import REALDATA
from warehouse_helpers import (
    clean_pass,
    count,
    link_files,
    pass_totals,
    warehouse_digest,
    write_counters,
)

DAY = date(2024, 3, 5)
ARTICLES = 40
REAL_ARTICLES = sorted((REALDATA / "pubmed" / "articles").glob("*.xml"))
PUBLICATIONS = pubmed.PUBLICATIONS_SPEC.parent.name


def _expected_authors(path: Path) -> int:
    return len(re.findall(rb"<Author[\s>]", path.read_bytes()))


def _expected_year(path: Path) -> int:
    text = path.read_text()
    pub_date = re.search(r"<PubDate>(.*?)</PubDate>", text, re.S)
    assert pub_date is not None
    year = re.search(r"(\d{4})", pub_date.group(1))
    assert year is not None
    return int(year.group(1))


def _land_and_normalize(
    folder: Path, database_url: str, start: date, end: date, run_id: str
) -> tuple[list[LandedDay], list[NormalizedDay], int]:
    """Every day of start..end searched, fetched and landed over HTTP, then normalized, as the
    two assets' steps do; with the number of requests the server answered."""
    with (
        ReplayServer(folder) as server,
        closing(PubmedClient.create(server.url, "all[sb]")) as client,
        connect(database_url) as conn,
    ):
        landed = pubmed.land_range(conn, client, start, end, run_id=run_id)
        normalized = normalize_days(
            conn, pubmed.PUBLICATIONS_SPEC, days_between(start, end), run_id=run_id
        )
        return landed, normalized, server.request_count


# Every day of the twenty-two years the real articles span, twice. What so long a range costs
# Dagster (a run per year, a few events per day and asset) is measured in bench/ (bench.backfill);
# the articles of the busiest months go through it in test_pubmed_backfill.
def test_every_real_article_lands_once_and_a_refetch_of_every_day_rewrites_nothing(
    database_url: str, tmp_path: Path
) -> None:
    folder = link_files(REAL_ARTICLES, tmp_path / "served")
    days = [article_identity(p.read_bytes()).modified for p in REAL_ARTICLES]
    first_day, last_day = min(days), max(days)
    span = (last_day - first_day).days + 1
    assert span > 20 * 365
    with connect(database_url) as conn:
        migrate(conn)

    landed, normalized, _ = _land_and_normalize(folder, database_url, first_day, last_day, "one")

    assert pass_totals(landed, normalized, PUBLICATIONS) == clean_pass(
        span, 255, PUBLICATIONS, new=True
    )
    assert count(database_url, "core.publications") == 255
    assert count(database_url, "ops.dead_letters") == 0
    assert count(database_url, "ops.partition_fetches", "source = 'pubmed'") == span
    assert count(database_url, "core.publications", "coalesce(title, '') = ''") == 0
    with psycopg.connect(database_url) as conn:
        authors = dict(
            conn.execute(
                "SELECT pmid, count(*) FROM core.publication_authors GROUP BY pmid"
            ).fetchall()
        )
        years = dict(conn.execute("SELECT pmid, publication_year FROM core.publications"))
    for path in REAL_ARTICLES:
        assert authors.get(path.stem, 0) == _expected_authors(path), path.name
        assert years[path.stem] == _expected_year(path), path.name

    counters_before = write_counters(database_url)
    rows_before = warehouse_digest(database_url)

    landed, normalized, requests = _land_and_normalize(
        folder, database_url, first_day, last_day, "two"
    )

    assert requests > 0  # it fetched them again...
    assert pass_totals(landed, normalized, PUBLICATIONS) == clean_pass(  # ...and wrote nothing
        span, 255, PUBLICATIONS, new=False
    )
    assert write_counters(database_url) == counters_before
    assert warehouse_digest(database_url) == rows_before


def _revise_one_article(path: Path) -> str:
    """Publish a second version of the first article of a synthetic day file, with a new
    title, the same day; return its PMID."""
    body = path.read_text(encoding="utf-8")
    found = re.search(r"<PMID Version=\"1\">(\d+)</PMID>", body)
    assert found
    revised = body.replace(found.group(0), found.group(0).replace('"1"', '"2"'), 1)
    revised = revised.replace("<ArticleTitle>", "<ArticleTitle>Revised: ", 1)
    path.write_text(revised, encoding="utf-8")
    return found.group(1)


@contextmanager
def _served_day(folder: Path, seed: int) -> Iterator[tuple[ReplayServer, PubmedClient]]:
    """A synthetic day of ARTICLES articles on DAY, served by the replay server, and a client."""
    write_synthetic_pubmed_day(folder, DAY, ARTICLES, seed=seed)
    with ReplayServer(folder) as server, closing(PubmedClient.create(server.url, "all[sb]")) as c:
        yield server, c


def test_a_refetch_lands_the_revised_article_and_counts_the_rest_unchanged(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    folder = tmp_path / "served"
    with _served_day(folder, seed=11) as (server, client):
        (first,) = pubmed.land_range(conn, client, DAY, DAY, run_id="first")
        assert (first.received, first.counts.inserted) == (ARTICLES, ARTICLES)

        pmid = _revise_one_article(folder / "pubmed" / f"{DAY.isoformat()}.xml")
        server.reload()

        (again,) = pubmed.land_range(conn, client, DAY, DAY, run_id="again")

    assert (again.received, again.landed, again.dead_letters) == (ARTICLES, ARTICLES, 0)
    assert (again.counts.inserted, again.counts.updated, again.counts.unchanged) == (
        0,
        1,
        ARTICLES - 1,
    )
    fetch = conn.execute(
        "SELECT received, landed, updated, unchanged FROM ops.partition_fetches "
        "WHERE source = 'pubmed' AND partition_date = %s",
        (DAY,),
    ).fetchone()
    assert fetch == (ARTICLES, ARTICLES, 1, ARTICLES - 1)
    titles = conn.execute(
        "SELECT payload->>'xml' LIKE '%%<ArticleTitle>Revised: %%' FROM raw.documents "
        "WHERE source = 'pubmed' AND doc_id = %s",
        (pmid,),
    ).fetchone()
    assert titles == (True,)
    assert conn.execute("SELECT count(*) FROM raw.documents").fetchone() == (ARTICLES,)


REAL_SETS = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "pubmed" / "sets"
RANGE = (date(2015, 1, 1), date(2020, 12, 31))  # some real articles fall on either side


def _parsed_documents(body: bytes) -> list[Document]:
    articles = [a for a in iter_pubmed_xml(body) if isinstance(a, ArticleXml)]
    return [pubmed._to_document(a, *RANGE) for a in articles]


def test_articles_stored_byte_for_byte_read_back_as_parsing_them_reads_them(
    conn: psycopg.Connection,
) -> None:
    bodies = [p.read_bytes() for p in sorted(REAL_SETS.glob("*.xml"))]
    bodies = [b for b in bodies if b"<DeleteCitation" not in b]
    with conn.transaction():
        for body in bodies:
            assert pubmed._stored_documents(conn, body, *RANGE) is None  # nothing stored yet
            land_documents(conn, "pubmed", _parsed_documents(body))

    # the day is the stored update time's UTC day, whatever the session's time zone
    conn.execute("SET TIME ZONE 'America/New_York'")
    compared = 0
    for body in bodies:
        assert pubmed._stored_documents(conn, body, *RANGE) == _parsed_documents(body)
        compared += len(_parsed_documents(body))
    assert compared > 200

    # one article changed at the source, even in layout only: the body is parsed again
    body = next(b for b in bodies if b.count(b"<PubmedArticle>") > 50)
    relaid = body.replace(b"<PMID Version=", b"<PMID  Version=", 1)
    assert _parsed_documents(relaid)[0].content_hash == _parsed_documents(body)[0].content_hash
    assert pubmed._stored_documents(conn, relaid, *RANGE) is None


@pytest.mark.parametrize("damage", [b"<Unclosed>", b"&nbsp;"])
def test_a_known_body_damaged_between_its_articles_is_parsed_and_so_refused(
    conn: psycopg.Connection, damage: bytes
) -> None:
    body = (REAL_SETS / "PathwayCommons__ncbiutils__tests_data_pubmed.xml").read_bytes()
    with conn.transaction():
        land_documents(conn, "pubmed", _parsed_documents(body))
    damaged = body.replace(b"</PubmedArticle>", b"</PubmedArticle>" + damage, 1)
    assert pubmed._stored_documents(conn, body, *RANGE) is not None
    assert pubmed._stored_documents(conn, damaged, *RANGE) is None
    with pytest.raises(ArticleParseError, match="not well-formed"):
        _parsed_documents(damaged)


def test_a_refetch_of_an_unchanged_day_parses_no_article_and_writes_nothing(
    conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _served_day(tmp_path / "served", seed=12) as (_, client):
        pubmed.land_range(conn, client, DAY, DAY, run_id="first")
        before = table_digest(conn, "raw.documents")

        def no_parsing(body: bytes) -> None:
            raise AssertionError("an unchanged article was parsed")

        monkeypatch.setattr(pubmed, "iter_pubmed_xml", no_parsing)
        (again,) = pubmed.land_range(conn, client, DAY, DAY, run_id="again")

    assert (again.received, again.counts.unchanged, again.counts.updated) == (ARTICLES, ARTICLES, 0)
    assert table_digest(conn, "raw.documents") == before


def test_digests_of_articles_landed_before_they_were_kept_are_filled_in(
    conn: psycopg.Connection,
) -> None:
    body = (REAL_SETS / "xizhou__pubMR__pubmed_result.xml").read_bytes()
    with conn.transaction():
        land_documents(conn, "pubmed", _parsed_documents(body))
    conn.execute("UPDATE raw.documents SET source_digest = NULL")
    conn.execute("DELETE FROM ops.schema_migrations WHERE version = '010_source_digest'")

    assert migrate(conn) == ["010_source_digest"]
    assert pubmed._stored_documents(conn, body, *RANGE) == _parsed_documents(body)
