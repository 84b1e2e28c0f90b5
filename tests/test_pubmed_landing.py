"""PubMed landing without Dagster: a re-fetch lands the article that changed, leaves the rest alone
and counts everything it received."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import psycopg

from bioloupe_data.pipelines import pubmed
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic_pubmed_day
from bioloupe_data.sources.pubmed.client import PubmedClient

DAY = date(2024, 3, 5)
ARTICLES = 40


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


def test_a_refetch_lands_the_revised_article_and_counts_the_rest_unchanged(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    folder = tmp_path / "served"
    write_synthetic_pubmed_day(folder, DAY, ARTICLES, seed=11)
    with ReplayServer(folder) as server:
        client = PubmedClient.create(server.url, "all[sb]")
        try:
            (first,) = pubmed.land_range(conn, client, DAY, DAY, run_id="first")
            assert (first.received, first.counts.inserted) == (ARTICLES, ARTICLES)

            pmid = _revise_one_article(folder / "pubmed" / f"{DAY.isoformat()}.xml")
            server.reload()

            (again,) = pubmed.land_range(conn, client, DAY, DAY, run_id="again")
        finally:
            client.close()

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
