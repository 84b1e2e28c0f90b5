"""Secrets stay secret: after runs that used `NCBI_API_KEY` and `OPENAI_API_KEY` (PubMed landed
with the key as a query parameter, a run that failed on every request, LLM enrichment, and an
LLM whose error message quotes the key back), neither value is anywhere in Dagster's storage
(event log, run records, snapshots), in DAGSTER_HOME's files (compute logs), in what the runs
printed, or in the warehouse."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from bioloupe_data.assets.enrichment import DRUG_PROFILES_KEY
from bioloupe_data.assets.ingestion import PUBMED_LANDING, build_landing_asset
from bioloupe_data.definitions import build_resources, defs
from bioloupe_data.partitions import RANGE_END_TAG, RANGE_START_TAG, daily_partitions
from bioloupe_data.replay.openai_server import OpenAICompatibleServer, ServerFault
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.resources import PubmedResource
from bioloupe_data.schedules import PUBMED_JOB_NAME
from bioloupe_data.sources.pubmed import article_identity
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.migrate import migrate

from conftest import REALDATA
from warehouse_helpers import files_holding, link_files, tables_holding

NCBI_KEY = f"ncbi-{uuid.uuid4().hex}"
OPENAI_KEY = f"sk-test-{uuid.uuid4().hex}"
SECRETS = (NCBI_KEY, OPENAI_KEY)
START, END = date(2019, 6, 1), date(2019, 6, 30)  # a month of real articles, each request keyed
RANGE = {RANGE_START_TAG: START.isoformat(), RANGE_END_TAG: END.isoformat()}


def _articles() -> list[Path]:
    return [
        path
        for path in sorted((REALDATA / "pubmed" / "articles").glob("*.xml"))
        if START <= article_identity(path.read_bytes()).modified <= END
    ]


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, database_url: str, dagster_home: Path, tmp_path: Path
) -> Iterator[Path]:
    articles = _articles()
    assert len(articles) > 10
    folder = link_files(articles, tmp_path / "served")
    for name in ("CTGOV_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
    monkeypatch.setenv("BIOLOUPE_START_DATE", "2015-01-01")
    monkeypatch.setenv("PUBMED_QUERY", "all[sb]")
    monkeypatch.setenv("NCBI_API_KEY", NCBI_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    yield folder


def _pubmed_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return (
        defs()
        .resolve_job_def(PUBMED_JOB_NAME)
        .execute_in_process(instance=instance, tags=RANGE, raise_on_error=False)
    )


def _failing_pubmed_run(instance: dg.DagsterInstance, url: str) -> dg.ExecuteInProcessResult:
    """The PubMed landing asset against a server that fails every request: the key still comes
    from the environment (`dg.EnvVar`); the retries are short, so the run fails in seconds."""
    resources = build_resources()
    resources["pubmed"] = PubmedResource(
        base_url=url,
        query="all[sb]",
        api_key=dg.EnvVar("NCBI_API_KEY"),
        max_attempts=2,
        backoff_seconds=0.01,
    )
    daily = daily_partitions("2015-01-01")
    return dg.materialize(
        [build_landing_asset(PUBMED_LANDING, daily, retry_policy=None)],
        instance=instance,
        resources=resources,
        tags=RANGE,
        raise_on_error=False,
    )


def _profile_run(instance: dg.DagsterInstance, drug_key: str) -> dg.ExecuteInProcessResult:
    definitions = defs()
    job = definitions.resolve_implicit_job_def_def_for_assets([DRUG_PROFILES_KEY])
    assert job is not None
    return job.execute_in_process(
        instance=instance,
        asset_selection=[DRUG_PROFILES_KEY],
        partition_key=drug_key,
        raise_on_error=False,
    )


def test_api_keys_never_reach_the_event_log_compute_logs_output_or_warehouse(
    environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    instance: dg.DagsterInstance,
    database_url: str,
    dagster_storage_url: str,
    dagster_home: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # PubMed with the NCBI key, then the same range failing on every request.
    with ReplayServer(environment) as server:
        monkeypatch.setenv("PUBMED_BASE_URL", server.url)
        assert _pubmed_run(instance).success
    with ReplayServer(environment, faults="503:*") as failing:
        failed = _failing_pubmed_run(instance, failing.url)
    assert not failed.success

    # LLM enrichment with the OpenAI key: one call answered, one refused by a server that
    # quotes the key back in its error message, as some APIs do.
    with connect(database_url) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO enriched.drugs (drug_key, name) VALUES ('zz-one', 'Zorblat'), "
            "('zz-two', 'Quendrix')"
        )
    instance.add_dynamic_partitions("drugs", ["zz-one", "zz-two"])

    def quoting_the_key(request: dict[str, Any]) -> dict[str, Any]:
        raise ServerFault(401, f"Incorrect API key provided: {OPENAI_KEY}")

    with OpenAICompatibleServer() as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.url)
        assert _profile_run(instance, "zz-one").success
        assert llm.calls == 1
    with OpenAICompatibleServer(responder=quoting_the_key) as refusing:
        monkeypatch.setenv("OPENAI_BASE_URL", refusing.url)
        _profile_run(instance, "zz-two")
        assert refusing.calls >= 1

    printed = capfd.readouterr()
    assert not [s for s in SECRETS if s in printed.out or s in printed.err]
    assert tables_holding(dagster_storage_url, SECRETS) == []
    assert files_holding(dagster_home, SECRETS) == []
    assert tables_holding(database_url, SECRETS) == []
    # The failing run's error names the request, with the key redacted.
    named = _event_texts_with(dagster_storage_url, "api_key=")
    assert named and all("api_key=%2A%2A%2A" in text for text in named)


def _event_texts_with(url: str, needle: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            text
            for (text,) in conn.execute(
                "SELECT event FROM event_logs WHERE strpos(event, %s) > 0", (needle,)
            )
        ]
