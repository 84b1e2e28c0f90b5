"""PubMed through Dagster into PostgreSQL: real articles (their two busiest months) and synthetic
ones, served over HTTP by the replay server's E-utilities, backfilled by the code the CLI and the
UI run. Every real article, over the twenty-two years they span, is landed and normalized by the
same code without Dagster in test_pubmed_landing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from bioloupe_data.assets.ingestion import PUBMED_LANDING_KEY
from bioloupe_data.assets.normalize import PUBLICATIONS_KEY
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic, write_synthetic_pubmed_day
from bioloupe_data.runner import BackfillReport
from bioloupe_data.sources.pubmed import article_identity

from conftest import REALDATA, backfill
from warehouse_helpers import count, link_files, warehouse_digest, write_counters

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


# The two busiest months of the real articles, on the command's own Dagster storage; every real
# article over the twenty-two years they span is landed in test_pubmed_landing.
def test_real_articles_land_once_and_a_second_backfill_rewrites_nothing(
    served: tuple[ReplayServer, Path], database_url: str, command_instance: dg.DagsterInstance
) -> None:
    server, folder = served
    start, end = date(2018, 11, 1), date(2018, 12, 31)
    articles = [p for p in ARTICLES if start <= article_identity(p.read_bytes()).modified <= end]
    link_files(articles, folder)
    server.reload()
    assert len(articles) > 50

    report = backfill(KEYS, start, end, command_instance)

    assert report.failed is None
    for key in KEYS:
        assert _counts(report, key) == {"inserted": len(articles), "updated": 0, "unchanged": 0}
        materialized = command_instance.get_materialized_partitions(key)
        assert len(materialized) == (end - start).days + 1  # as the UI shows
    assert count(database_url, "core.publications") == len(articles)
    assert count(database_url, "ops.dead_letters") == 0
    requests_before = server.request_count
    counters_before = write_counters(database_url)
    rows_before = warehouse_digest(database_url)

    again = backfill(KEYS, start, end, command_instance)

    assert again.failed is None
    assert server.request_count > requests_before
    for key in KEYS:
        assert _counts(again, key) == {"inserted": 0, "updated": 0, "unchanged": len(articles)}
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
