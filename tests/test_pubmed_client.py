"""The PubMed client over real HTTP against the replay server on the real articles: a range's
search and its efetch batches."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.pubmed import ArticleXml, article_identity, iter_pubmed_xml
from bioloupe_data.sources.pubmed.client import EFETCH_PATH, PubmedClient

from conftest import REALDATA
from warehouse_helpers import link_files

ARTICLES = sorted((REALDATA / "pubmed" / "articles").glob("*.xml"))
YEAR = 2019
BATCH = 10


def _pmids(body: bytes) -> list[str | None]:
    return [item.pmid for item in iter_pubmed_xml(body) if isinstance(item, ArticleXml)]


def test_the_next_batch_is_requested_while_the_caller_still_holds_this_one(
    tmp_path: Path,
) -> None:
    articles = [p for p in ARTICLES if article_identity(p.read_bytes()).modified.year == YEAR]
    assert len(articles) > 3 * BATCH
    with ReplayServer(link_files(articles, tmp_path / "served")) as server:
        client = PubmedClient.create(server.url, "all[sb]", fetch_batch=BATCH)
        plan = client.plan(date(YEAR, 1, 1), date(YEAR, 12, 31))
        (part,) = plan.parts
        bodies = client.fetch(part)
        first = next(bodies)
        deadline = time.monotonic() + 5.0
        while server.requests_by_path().get(EFETCH_PATH, 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        requested_while_held = server.requests_by_path().get(EFETCH_PATH, 0)
        rest = list(bodies)
        efetches = server.requests_by_path().get(EFETCH_PATH, 0)
        client.close()

    assert requested_while_held == 2
    fetched = [pmid for body in (first, *rest) for pmid in _pmids(body)]
    assert sorted(fetched) == sorted(p.stem for p in articles)
    # One request a batch: nothing is requested past the last one.
    assert efetches == 1 + len(rest) == -(-len(articles) // BATCH)
