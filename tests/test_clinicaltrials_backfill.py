"""ClinicalTrials.gov through Dagster into PostgreSQL: the real records, served over HTTP by the
replay server, backfilled by the same code the CLI and the UI run."""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from rich.console import Console

from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY
from bioloupe_data.assets.normalize import TRIALS_KEY
from bioloupe_data.definitions import defs
from bioloupe_data.partitions import MAX_DAYS_PER_RUN
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.runner import BackfillReport, plan

from conftest import CTGOV_DATA, backfill, create_database, drop_database, url_for
from warehouse_helpers import busiest_years, count, link_files, warehouse_digest, write_counters

KEYS = [CLINICALTRIALS_LANDING_KEY, TRIALS_KEY]
COMPLETE_STUDIES = sorted(CTGOV_DATA.glob("NCT*.json"))
ALT_VERSION = CTGOV_DATA / "alt_versions" / "NCT02552212.versionHolder-2023-12-12.json"


def _last_update(path: Path) -> date:
    study = json.loads(path.read_text())
    return date.fromisoformat(
        study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"]
    )


def _counts(report: BackfillReport, asset: dg.AssetKey) -> dict[str, int]:
    return report.assets[asset.to_user_string()].counts


def _studies_by_day(updated: list[date]) -> dict[date, int]:
    return dict(Counter(updated))


def _latest_row_counts(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[date, int]:
    """Each partition's `dagster/row_count` in its latest materialization (as the UI shows a
    partition), for the partitions where it is not 0."""
    latest: dict[str, dg.AssetMaterialization] = {}
    cursor = None
    while True:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor, ascending=True
        )
        for record in records.records:
            materialization = record.asset_materialization
            assert materialization is not None and materialization.partition is not None
            latest[materialization.partition] = materialization
        if not records.has_more:
            break
        cursor = records.cursor
    counts = {
        date.fromisoformat(partition): materialization.metadata["dagster/row_count"].value
        for partition, materialization in latest.items()
    }
    return {day: n for day, n in counts.items() if n}


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> Iterator[tuple[ReplayServer, Path]]:
    """An empty replay folder and its server, wired into the definitions' environment."""
    folder = tmp_path / "served"
    folder.mkdir()
    with ReplayServer(folder) as server:
        monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
        monkeypatch.setenv("CTGOV_BASE_URL", server.url)
        monkeypatch.setenv("CTGOV_SCOPE", "all")
        monkeypatch.setenv("BIOLOUPE_START_DATE", "2006-01-01")
        # As the CLI sets it: per-partition planned and materialization events in batches.
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
        yield server, folder


# Two years (three runs) holding half of the real studies, recorded day by day in Dagster's
# storage, the command's own; each day of a range costs Dagster the same, studies or none. Every
# real study over the twenty years they span is landed without Dagster in
# test_clinicaltrials_landing.
def test_real_studies_land_once_over_several_runs_and_a_second_backfill_rewrites_nothing(
    served: tuple[ReplayServer, Path], database_url: str, command_instance: dg.DagsterInstance
) -> None:
    server, folder = served
    link_files(COMPLETE_STUDIES, folder)
    assert server.reload() == len(COMPLETE_STUDIES) == 544
    updated = [_last_update(p) for p in COMPLETE_STUDIES]
    first_day, last_day = busiest_years(updated, 2)
    days = (last_day - first_day).days + 1
    studies = sum(first_day <= day <= last_day for day in updated)
    assert studies > 544 / 2 and days > 2 * MAX_DAYS_PER_RUN

    shown = io.StringIO()
    report = backfill(KEYS, first_day, last_day, command_instance, Console(file=shown, width=160))

    assert report.failed is None
    assert len(report.runs) == math.ceil(days / MAX_DAYS_PER_RUN) == 3
    # The progress bars count every run's days and documents, not only the last run's.
    bars = {line.split()[0]: line for line in shown.getvalue().splitlines() if "days" in line}
    shown_total = f"{days}/{days} days · {studies} docs"
    assert shown_total in bars[CLINICALTRIALS_LANDING_KEY.to_user_string()]
    assert shown_total in bars[TRIALS_KEY.to_user_string()]
    for key in KEYS:
        assert report.assets[key.to_user_string()].partitions == days
        assert _counts(report, key) == {"inserted": studies, "updated": 0, "unchanged": 0}
        assert len(command_instance.get_materialized_partitions(key)) == days  # as the UI shows
        # Each day's latest materialization (the run's own, at its end) shows that day's rows.
        assert _latest_row_counts(command_instance, key) == {
            day: n for day, n in _studies_by_day(updated).items() if first_day <= day <= last_day
        }
    assert count(database_url, "raw.documents") == studies
    assert count(database_url, "core.trials") == studies
    assert count(database_url, "ops.dead_letters") == 0
    assert count(database_url, "ops.partition_fetches") == days
    assert count(database_url, "ops.partition_fetches", "received <> landed") == 0

    requests_before = server.request_count
    counters_before = write_counters(database_url)
    rows_before = warehouse_digest(database_url)

    start, end = busiest_years([d for d in updated if first_day <= d <= last_day], 1)
    studies_again = sum(start <= day <= end for day in updated)

    again = backfill(KEYS, start, end, command_instance)

    assert again.failed is None
    assert server.request_count > requests_before  # it fetched them again...
    for key in KEYS:  # ...and wrote nothing
        assert _counts(again, key) == {"inserted": 0, "updated": 0, "unchanged": studies_again}
    assert write_counters(database_url) == counters_before
    assert warehouse_digest(database_url) == rows_before


def test_a_newer_version_of_one_study_updates_exactly_its_row(
    served: tuple[ReplayServer, Path], database_url: str, tmp_path: Path
) -> None:
    server, folder = served
    studies = sorted(COMPLETE_STUDIES, key=_last_update)[-40:]  # the newest: a short range
    link_files(studies, folder)
    server.reload()
    first_day = min(_last_update(p) for p in studies)
    last_day = max(_last_update(p) for p in studies)
    assert backfill(KEYS, first_day, last_day).failed is None

    amended_path = studies[7]
    study = json.loads(amended_path.read_text())
    nct_id = study["protocolSection"]["identificationModule"]["nctId"]
    new_day = last_day + timedelta(days=3)
    status = study["protocolSection"]["statusModule"]
    status["lastUpdatePostDateStruct"] = {"date": new_day.isoformat(), "type": "ACTUAL"}
    study["protocolSection"]["identificationModule"]["briefTitle"] += " (amended)"
    study["derivedSection"]["miscInfoModule"]["versionHolder"] = new_day.isoformat()
    (folder / amended_path.name).unlink()
    (folder / amended_path.name).write_text(json.dumps(study))
    server.reload()
    counters_before = write_counters(database_url)

    report = backfill(KEYS, first_day, new_day)

    assert report.failed is None
    assert _counts(report, CLINICALTRIALS_LANDING_KEY)["updated"] == 1
    assert _counts(report, TRIALS_KEY) == {"inserted": 0, "updated": 1, "unchanged": 39}
    counters_after = write_counters(database_url)
    ins, upd, dele = (
        a - b
        for a, b in zip(counters_after["core.trials"], counters_before["core.trials"], strict=True)
    )
    assert (ins, upd, dele) == (0, 1, 0)
    changed = {
        table
        for table in counters_after
        if counters_after[table] != counters_before[table] and table.startswith("core.")
    }
    assert changed == {"core.trials"}  # the amendment touched only the title
    assert (
        count(
            database_url,
            "core.trials",
            f"nct_id = '{nct_id}' AND brief_title LIKE '%(amended)' "
            f"AND last_update_posted_date = '{new_day}' AND partition_date = '{new_day}'",
        )
        == 1
    )


def test_two_snapshots_of_a_study_leave_identical_rows_in_either_order(
    served: tuple[ReplayServer, Path], admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, folder = served
    newer = CTGOV_DATA / "NCT02552212.json"  # versionHolder 2024-01-03, the other 2023-12-12
    day = _last_update(newer)
    assert _last_update(ALT_VERSION) == day
    digests = []
    for snapshots in ([ALT_VERSION, newer], [newer, ALT_VERSION]):
        name = create_database(admin_url)
        url = url_for(admin_url, name)
        monkeypatch.setenv("BIOLOUPE_DATABASE_URL", url)
        try:
            for snapshot in snapshots:
                for old in folder.iterdir():
                    old.unlink()
                (folder / "NCT02552212.json").symlink_to(snapshot)
                server.reload()
                assert backfill(KEYS, day, day).failed is None
            assert count(url, "core.trials") == 1
            assert count(url, "raw.documents", "version_key = '2024-01-03'") == 1
            digests.append(warehouse_digest(url))
        finally:
            drop_database(admin_url, name)
    assert digests[0] == digests[1]


def test_a_year_is_one_run_per_asset_in_the_ui_and_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BIOLOUPE_START_DATE", "2020-01-01")
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    for key in KEYS:
        policy = graph.get(key).backfill_policy
        assert policy is not None and policy.max_partitions_per_run == MAX_DAYS_PER_RUN >= 365
    _, chunks = plan(definitions, KEYS, date(2021, 1, 1), date(2021, 12, 31))
    assert [(c[0], c[-1]) for c in chunks] == [("2021-01-01", "2021-12-31")]
    _, chunks = plan(definitions, KEYS, date(2021, 1, 1), date(2023, 12, 31))
    assert len(chunks) == 3


def test_partial_and_broken_records_land_or_are_dead_lettered_with_a_reason(
    served: tuple[ReplayServer, Path], database_url: str
) -> None:
    server, folder = served
    day = date(2024, 5, 2)
    partials = sorted((CTGOV_DATA / "partial").glob("NCT*.json"))
    dated = []
    for path in partials:
        study = json.loads(path.read_text())
        status = study["protocolSection"].get("statusModule")
        if status is None:
            continue  # undated: no date-range query can return it
        status["lastUpdatePostDateStruct"] = {"date": day.isoformat(), "type": "ACTUAL"}
        (folder / path.name).write_text(json.dumps(study))
        dated.append(study["protocolSection"]["identificationModule"]["nctId"])
    broken = json.loads(COMPLETE_STUDIES[0].read_text())
    broken["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"] = str(day)
    broken["protocolSection"]["identificationModule"]["nctId"] = "NCT123"
    (folder / "invalid_nct_id.json").write_text(json.dumps({"studies": [broken]}))
    server.reload()
    assert len(dated) >= 15

    report = backfill(KEYS, day, day)

    assert report.failed is None
    landed = count(database_url, "raw.documents")
    in_core = count(database_url, "core.trials")
    rejected_at_normalize = count(
        database_url, "ops.dead_letters", "stage = 'normalize' AND reason <> ''"
    )
    assert landed == len(dated)
    assert in_core + rejected_at_normalize == len(dated)
    assert count(database_url, "ops.dead_letters", "stage = 'landing' AND reason <> ''") >= 1
    assert (
        count(
            database_url, "ops.partition_fetches", f"dead_letters >= 1 AND partition_date = '{day}'"
        )
        == 1
    )
