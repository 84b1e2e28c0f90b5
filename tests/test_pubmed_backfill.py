"""PubMed through Dagster into PostgreSQL: the real articles and synthetic ones, served over HTTP
by the replay server's E-utilities, backfilled by the code the CLI and the UI run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from bioloupe_data.assets.ingestion import PUBMED_LANDING_KEY
from bioloupe_data.assets.normalize import PUBLICATIONS_KEY
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic, write_synthetic_pubmed_day
from bioloupe_data.runner import BackfillReport
from bioloupe_data.sources.pubmed import article_identity

from conftest import REALDATA, backfill
from warehouse_helpers import busiest_years, count, link_files, warehouse_digest, write_counters

KEYS = [PUBMED_LANDING_KEY, PUBLICATIONS_KEY]
ARTICLES = sorted((REALDATA / "pubmed" / "articles").glob("*.xml"))


def _counts(report: BackfillReport, key: dg.AssetKey) -> dict[str, int]:
    return report.assets[key.to_user_string()].counts


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> Iterator[tuple[ReplayServer, Path]]:
    folder = tmp_path / "served"
    folder.mkdir()
    with ReplayServer(folder) as server:
        monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
        monkeypatch.setenv("PUBMED_BASE_URL", server.url)
        monkeypatch.setenv("PUBMED_QUERY", "all[sb]")
        monkeypatch.setenv("CTGOV_BASE_URL", server.url)
        monkeypatch.setenv("CTGOV_SCOPE", "all")
        monkeypatch.setenv("BIOLOUPE_START_DATE", "1990-01-01")
        # As the CLI sets it: per-partition planned and materialization events in batches.
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
        yield server, folder


def _expected_authors(path: Path) -> int:
    return len(re.findall(rb"<Author[\s>]", path.read_bytes()))


def _expected_year(path: Path) -> int:
    text = path.read_text()
    pub_date = re.search(r"<PubDate>(.*?)</PubDate>", text, re.S)
    assert pub_date is not None
    year = re.search(r"(\d{4})", pub_date.group(1))
    assert year is not None
    return int(year.group(1))


# Every day of twenty years, checked and recorded: the slowest test of the suite, on the
# command's own Dagster storage; the re-run covers the four years holding most of the articles
# (see test_clinicaltrials_backfill).
@pytest.mark.timeout(1500)
def test_every_real_article_lands_once_and_a_second_backfill_rewrites_nothing(
    served: tuple[ReplayServer, Path], database_url: str, command_instance: dg.DagsterInstance
) -> None:
    server, folder = served
    link_files(ARTICLES, folder)
    server.reload()
    days = [article_identity(p.read_bytes()).modified for p in ARTICLES]
    first_day, last_day = min(days), max(days)

    report = backfill(KEYS, first_day, last_day, command_instance)

    assert report.failed is None
    for key in KEYS:
        assert _counts(report, key) == {"inserted": 255, "updated": 0, "unchanged": 0}
        materialized = command_instance.get_materialized_partitions(key)
        assert len(materialized) == (last_day - first_day).days + 1  # as the UI shows
    assert count(database_url, "core.publications") == 255
    assert count(database_url, "ops.dead_letters") == 0
    assert count(database_url, "core.publications", "coalesce(title, '') = ''") == 0
    with psycopg.connect(database_url) as conn:
        authors = dict(
            conn.execute(
                "SELECT pmid, count(*) FROM core.publication_authors GROUP BY pmid"
            ).fetchall()
        )
        years = dict(conn.execute("SELECT pmid, publication_year FROM core.publications"))
    for path in ARTICLES:
        assert authors.get(path.stem, 0) == _expected_authors(path), path.name
        assert years[path.stem] == _expected_year(path), path.name

    requests_before = server.request_count
    counters_before = write_counters(database_url)
    rows_before = warehouse_digest(database_url)

    start, end = busiest_years(days, 4)
    articles_again = sum(start <= day <= end for day in days)
    assert articles_again > 255 / 2

    again = backfill(KEYS, start, end, command_instance)

    assert again.failed is None
    assert server.request_count > requests_before
    for key in KEYS:
        assert _counts(again, key) == {"inserted": 0, "updated": 0, "unchanged": articles_again}
    assert write_counters(database_url) == counters_before
    assert warehouse_digest(database_url) == rows_before


def test_a_day_over_the_esearch_limit_is_fetched_whole_by_pmid_ranges(
    served: tuple[ReplayServer, Path], database_url: str
) -> None:
    server, folder = served
    day = date(2024, 2, 29)
    write_synthetic_pubmed_day(folder, day, 10_400, seed=3)
    server.reload()

    report = backfill(KEYS, day, day)

    assert report.failed is None
    assert count(database_url, "raw.documents", "source = 'pubmed'") == 10_400
    assert count(database_url, "core.publications") == 10_400
    assert (
        count(
            database_url,
            "ops.partition_fetches",
            f"source = 'pubmed' AND partition_date = '{day}' AND source_total = landed",
        )
        == 1
    )


def test_synthetic_publications_citing_synthetic_trials_are_linked(
    served: tuple[ReplayServer, Path], database_url: str
) -> None:
    server, folder = served
    end = date(2024, 6, 30)
    write_synthetic(folder, 3, 20, seed=9, end=end)
    server.reload()
    start = date(2024, 6, 28)

    keys = [*KEYS, dg.AssetKey(["raw", "clinicaltrials_gov"]), dg.AssetKey(["core", "trials"])]
    report = backfill(keys, start, end)

    assert report.failed is None
    assert count(database_url, "core.trials") == 60
    assert count(database_url, "core.publications") >= 30
    linked = count(
        database_url, "core.publication_trials", "nct_id IN (SELECT nct_id FROM core.trials)"
    )
    assert linked >= 1
    assert count(database_url, "core.publication_trials", "origin = 'databank'") >= 1
