"""The PubMed client over real HTTP against the replay server on the real articles: a range's
search and its efetch batches."""

from __future__ import annotations

import itertools
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic_pubmed_day
from bioloupe_data.sources.pubmed import ArticleXml, article_identity, iter_pubmed_xml
from bioloupe_data.sources.pubmed import client as client_module
from bioloupe_data.sources.pubmed.client import (
    EFETCH_PATH,
    ESEARCH_PATH,
    PubmedClient,
    _day_runs,
)

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


def test_a_range_over_the_esearch_limit_is_split_by_runs_of_days_its_count_calls_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limits scaled down (as if efetch could page through 50 records, parts aimed at 40):
    6 days of 30 articles are 5 runs of days, the 2-day run split again into its days; every
    article is fetched once, with 8 searches (halving PMID ranges took 50)."""
    monkeypatch.setattr(client_module, "MAX_RETRIEVABLE", 50)
    monkeypatch.setattr(client_module, "PART_TARGET", 40)
    folder = tmp_path / "served"
    days = [date(2024, 5, 1) + timedelta(days=i) for i in range(6)]
    for index, day in enumerate(days):
        write_synthetic_pubmed_day(folder, day, 30, seed=index, first_pmid=90_000_000 + 100 * index)
    with ReplayServer(folder) as server:
        client = PubmedClient.create(server.url, "all[sb]")
        plan = client.plan(days[0], days[-1])
        fetched = [
            pmid for part in plan.parts for body in client.fetch(part) for pmid in _pmids(body)
        ]
        searches = server.requests_by_path().get(ESEARCH_PATH, 0)
        client.close()

    assert plan.total == 180
    assert [part.count for part in plan.parts] == [30] * 6
    assert plan.searches == searches == 8
    assert len(fetched) == len(set(fetched)) == 180


def test_day_runs_cover_the_range_in_order_without_overlap() -> None:
    first, last = date(2024, 1, 1), date(2024, 1, 31)
    for count in (1, 2, 4, 7, 31, 40):
        runs = _day_runs(first, last, count)
        assert len(runs) == min(count, 31)
        assert runs[0][0] == first and runs[-1][1] == last
        for (_, end), (start, _) in itertools.pairwise(runs):
            assert start == end + timedelta(days=1)
        lengths = {(b - a).days + 1 for a, b in runs}
        assert max(lengths) - min(lengths) <= 1
