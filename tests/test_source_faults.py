"""Source faults, injected by the replay server into real ClinicalTrials.gov and PubMed records
served over HTTP, through the landing and normalizing assets materialized by Dagster: a transient
fault
leaves the same warehouse as no fault at all, with the retries in the run's log and metadata; a
persistent one fails the run with a message naming the source, the days and the cause, and keeps
only the days committed before it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from bioloupe_data.assets.ingestion import (
    CLINICALTRIALS_LANDING,
    PUBMED_LANDING,
    build_landing_asset,
)
from bioloupe_data.assets.normalize import (
    PUBLICATIONS_NORMALIZATION,
    TRIALS_NORMALIZATION,
    build_normalization_asset,
)
from bioloupe_data.partitions import RANGE_END_TAG, RANGE_START_TAG, daily_partitions
from bioloupe_data.replay.faults import FaultSpecError, parse_faults
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.resources import ClinicalTrialsResource, PubmedResource, WarehouseResource
from bioloupe_data.sources.pubmed import article_identity
from bioloupe_data.warehouse.digest import day_digests, warehouse_digest

from conftest import CTGOV_DATA, REALDATA, create_database, drop_database, url_for
from warehouse_helpers import link_files

FIRST_DAY, LAST_DAY = date(2024, 7, 1), date(2025, 6, 30)
PAGE_SIZE = 5
DAILY = daily_partitions("2015-01-01")
NO_STEP_RETRY = dg.RetryPolicy(max_retries=0)
TRANSIENT_KINDS = ("429", "500", "502", "503", "reset", "truncate", "slow", "expired_token")
# Every transient fault once, on every other data request from the 2nd on (each is followed by
# a request that succeeds): a page token rejected on the 16th makes the client query again.
EVERY_TRANSIENT_FAULT = ",".join(
    f"{kind}{'=0.2' if kind == '429' else '=3' if kind == 'slow' else ''}:#{2 * (i + 1)}"
    for i, kind in enumerate(TRANSIENT_KINDS)
)


def _last_update(path: Path) -> date:
    status = json.loads(path.read_text())["protocolSection"]["statusModule"]
    return date.fromisoformat(status["lastUpdatePostDateStruct"]["date"])


def _studies() -> list[Path]:
    studies = []
    for path in sorted(CTGOV_DATA.glob("NCT*.json")):
        try:
            if FIRST_DAY <= _last_update(path) <= LAST_DAY:
                studies.append(path)
        except KeyError:
            continue
    return studies


STUDIES = _studies()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return link_files(STUDIES, tmp_path / "served")


def _materialize(
    folder: Path, database_url: str, faults: str | None, instance: dg.DagsterInstance
) -> tuple[dg.ExecuteInProcessResult, dict[str, int]]:
    """Land and normalize the range from a replay server with `faults`; the run's result and
    the faults the server injected."""
    with ReplayServer(folder, faults=faults) as server:
        result = dg.materialize(
            [
                build_landing_asset(CLINICALTRIALS_LANDING, DAILY, retry_policy=NO_STEP_RETRY),
                build_normalization_asset(TRIALS_NORMALIZATION, DAILY),
            ],
            instance=instance,
            resources={
                "warehouse": WarehouseResource(database_url=database_url),
                "clinicaltrials": ClinicalTrialsResource(
                    base_url=server.url,
                    scope="all",
                    page_size=PAGE_SIZE,
                    timeout_seconds=1.0,
                    max_attempts=4,
                    backoff_seconds=0.05,
                ),
            },
            tags={RANGE_START_TAG: FIRST_DAY.isoformat(), RANGE_END_TAG: LAST_DAY.isoformat()},
            raise_on_error=False,
        )
        injected = server.faults.injected if server.faults else {}
    return result, injected


def _digest(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return warehouse_digest(conn)


def _documents_by_day(url: str) -> dict[date, str]:
    with psycopg.connect(url) as conn:
        return day_digests(conn, "raw.documents")


def _landing_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """The landing step's own (run-level) metadata."""
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        if event.asset_key == CLINICALTRIALS_LANDING.key and "http_retries" in metadata:
            return {key: value.value for key, value in metadata.items()}
    raise AssertionError("no landing materialization with the run's metadata")


@dataclass(frozen=True)
class Clean:
    """What a run without faults leaves: the warehouse's digest, and raw.documents by day."""

    warehouse: dict[str, str]
    documents_by_day: dict[date, str]


@pytest.fixture
def clean(folder: Path, admin_url: str) -> Clean:
    name = create_database(admin_url)
    try:
        url = url_for(admin_url, name)
        result, _ = _materialize(folder, url, None, dg.DagsterInstance.ephemeral())
        assert result.success
        return Clean(_digest(url), _documents_by_day(url))
    finally:
        drop_database(admin_url, name)


def test_every_transient_fault_is_retried_and_the_warehouse_is_the_same_as_without(
    folder: Path, database_url: str, clean: Clean
) -> None:
    assert len(STUDIES) > 9 * PAGE_SIZE  # enough pages for every fault
    instance = dg.DagsterInstance.ephemeral()

    result, injected = _materialize(folder, database_url, EVERY_TRANSIENT_FAULT, instance)

    assert result.success
    assert injected == dict.fromkeys(TRANSIENT_KINDS, 1)
    assert _digest(database_url) == clean.warehouse
    # Each fault cost one retry, seen in the run's metadata and its log.
    assert _landing_metadata(result)["http_retries"] == len(injected)
    warnings = [
        record.user_message
        for record in instance.all_logs(result.run_id)
        if record.level == logging.WARNING
    ]
    retried = [m for m in warnings if "clinicaltrials_gov: attempt" in m]
    assert len(retried) == len(injected)
    for cause in ("HTTP 429", "HTTP 500", "HTTP 502", "HTTP 503", "connection error"):
        assert any(cause in m for m in retried), cause
    assert any("invalid JSON body" in m for m in retried)
    assert any("timed out after 1.0s" in m for m in retried)
    assert any("page token rejected" in m for m in retried)


@pytest.mark.parametrize("kind", ["503", "reset", "truncate", "expired_token"])
def test_a_persistent_fault_fails_the_run_naming_the_cause_and_keeps_only_committed_days(
    folder: Path, database_url: str, clean: Clean, kind: str
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    # The first three pages come through; from the fourth request on, every one fails.
    result, _ = _materialize(folder, database_url, f"{kind}:#4-100000", instance)

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "raw__clinicaltrials_gov"
    # What the UI shows for the failed step: the error and the errors that caused it (the
    # step's retry policy wraps the landing failure).
    message = _error_chain(failure.step_failure_data.error)
    assert "clinicaltrials_gov" in message
    assert f"{FIRST_DAY}..{LAST_DAY}" in message
    expected_cause = {
        "503": "HTTP 503",
        "reset": "connection error",
        "truncate": "invalid JSON body",
        "expired_token": "page token",
    }[kind]
    assert expected_cause in message
    # Normalizing never ran; the days that committed are whole and equal to a clean run's, and
    # nothing of the day in flight was written.
    materialized = [
        record.dagster_event.step_materialization_data.materialization
        for record in instance.all_logs(
            result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        if record.dagster_event is not None
    ]
    assert not [m for m in materialized if m.asset_key == TRIALS_NORMALIZATION.key]
    landed = _documents_by_day(database_url)
    assert landed, "no day committed before the fault"
    committed = sorted(
        date.fromisoformat(str(m.partition))
        for m in materialized
        if m.asset_key == CLINICALTRIALS_LANDING.key and m.partition
    )
    assert committed and committed[-1] < LAST_DAY
    for day, digest in landed.items():
        assert day <= committed[-1]
        assert digest == clean.documents_by_day[day], day


def _error_chain(error: Any) -> str:
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause or error.context
    return "\n".join(messages)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("429", "expected KIND[=ARG]:WHEN"),
        ("teapot:0.5", "unknown fault 'teapot'"),
        ("500:1.5", "a probability must be in (0, 1]"),
        ("500:#5-2", "empty range"),
        ("500:often", "WHEN must be"),
        ("seed=x", "the seed must be an integer"),
    ],
)
def test_a_fault_spec_that_cannot_be_read_is_refused_with_the_reason(
    spec: str, complaint: str
) -> None:
    with pytest.raises(FaultSpecError) as refused:
        parse_faults(spec)
    assert complaint in str(refused.value)


ARTICLES_YEAR = 2019


def test_transient_faults_of_e_utilities_leave_the_same_publications(
    tmp_path: Path, admin_url: str
) -> None:
    """esearch cut short, efetch batches failing, cut short, dropped or held back: retried,
    and the same warehouse as without faults."""
    articles = [
        path
        for path in sorted((REALDATA / "pubmed" / "articles").glob("*.xml"))
        if article_identity(path.read_bytes()).modified.year == ARTICLES_YEAR
    ]
    assert len(articles) > 60
    folder = link_files(articles, tmp_path / "served")
    spec = "truncate:#1,500:#3,truncate:#5,reset:#7,429=0.1:#9,slow=3:#11"
    digests = []
    for faults in (None, spec):
        name = create_database(admin_url)
        try:
            url = url_for(admin_url, name)
            with ReplayServer(folder, faults=faults) as server:
                result = dg.materialize(
                    [
                        build_landing_asset(PUBMED_LANDING, DAILY, retry_policy=NO_STEP_RETRY),
                        build_normalization_asset(PUBLICATIONS_NORMALIZATION, DAILY),
                    ],
                    instance=dg.DagsterInstance.ephemeral(),
                    resources={
                        "warehouse": WarehouseResource(database_url=url),
                        "pubmed": PubmedResource(
                            base_url=server.url,
                            query="all[sb]",
                            fetch_batch=10,
                            timeout_seconds=1.0,
                            max_attempts=4,
                            backoff_seconds=0.05,
                        ),
                    },
                    tags={
                        RANGE_START_TAG: f"{ARTICLES_YEAR}-01-01",
                        RANGE_END_TAG: f"{ARTICLES_YEAR}-12-31",
                    },
                    raise_on_error=False,
                )
                injected = server.faults.injected if server.faults else {}
            assert result.success
            digests.append(_digest(url))
            retries = [
                e.materialization.metadata["http_retries"].value
                for e in result.get_asset_materialization_events()
                if e.asset_key == PUBMED_LANDING.key
                and "http_retries" in e.materialization.metadata
            ]
            assert set(retries) == {sum(injected.values())}  # the run's metadata, on every day
        finally:
            drop_database(admin_url, name)
    assert injected == {"truncate": 2, "500": 1, "reset": 1, "429": 1, "slow": 1}
    assert digests[0] == digests[1]
    assert int(digests[0]["core.publications"].split(":")[0]) == len(articles)
