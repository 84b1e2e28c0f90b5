"""End to end on the real Dagster daemon: `bioloupe-data dev` (webserver and daemon) on a
throwaway DAGSTER_HOME configured by the shipped `dagster.yaml.example` (PostgreSQL storage,
queued run coordinator, pools, run monitoring), the replay server as both sources.

(a) a backfill launched with the webserver's `launchPartitionBackfill` mutation, as the UI does,
    completes in a handful of runs with the rows in the warehouse;
(b) after a simulated outage (the last five days of the catch-up window never ran) the catch-up
    sensor launches exactly those days of each source, once;
(c) the registration sensors register the drugs found and their profile runs complete.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import psycopg
import pytest

from bench._dagster_dev import (
    BACKFILL_STATUS,
    LAUNCH_BACKFILL,
    clean_environment,
    dagster_dev,
    graphql,
    wait_for,
)
from bioloupe_data.catch_up import catch_up_window
from bioloupe_data.partitions import MAX_DAYS_PER_RUN, RANGE_END_TAG, RANGE_START_TAG
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic
from bioloupe_data.schedules import (
    CLINICALTRIALS_JOB_NAME,
    CLINICALTRIALS_SCHEDULE_HOUR,
    PUBMED_JOB_NAME,
    PUBMED_SCHEDULE_HOUR,
)
from bioloupe_data.sensors import CATCH_UP_TAG, SCHEDULE_GRACE
from bioloupe_data.warehouse.database import as_sqlalchemy_psycopg2_url
from bioloupe_data.warehouse.digest import warehouse_digest

from browser import chromium_page, dismiss_welcome
from conftest import create_database, drop_database, url_for
from warehouse_helpers import count, files_holding, tables_holding

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("bioloupe-data"))
LOOKBACK, OUTAGE, HISTORY, PER_DAY = 10, 5, 45, 4
NCBI_KEY = f"ncbi-{uuid.uuid4().hex}"
TRIALS_JOB_ASSETS = (
    ["raw", "clinicaltrials_gov"],
    ["core", "trials"],
    ["enriched", "site_geocodes"],
    ["enriched", "trial_features"],
)
SOURCES = (("clinicaltrials_gov", CLINICALTRIALS_JOB_NAME), ("pubmed", PUBMED_JOB_NAME))


@dataclass(frozen=True)
class Stack:
    webserver: str
    warehouse_url: str
    storage_url: str
    home: Path
    log: Path
    first_day: date
    windows: dict[str, list[date]]

    def instance(self) -> dg.DagsterInstance:
        """The daemon's instance, read through the same dagster.yaml."""
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DAGSTER_HOME", str(self.home))
            env.setenv("BIOLOUPE_DAGSTER_STORAGE_URL", self.storage_url)
            return dg.DagsterInstance.get()

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.webserver, query, variables)


def _window(now: datetime, hour: int, first_day: date) -> list[date]:
    return catch_up_window(
        now, schedule_hour=hour, grace=SCHEDULE_GRACE, lookback_days=LOOKBACK, first_day=first_day
    )


def _backfill(env: dict[str, str], source: str, start: date, end: date) -> None:
    done = subprocess.run(
        [CLI, "backfill", "--from", str(start), "--to", str(end), "--source", source],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, admin_url: str) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml.example", home / "dagster.yaml")
    now = datetime.now(UTC)
    yesterday = now.date() - timedelta(days=1)
    first_day = yesterday - timedelta(days=HISTORY - 1)
    write_synthetic(tmp / "served", HISTORY, PER_DAY, seed=7, end=yesterday, pubmed_per_day=2)
    windows = {
        CLINICALTRIALS_JOB_NAME: _window(now, CLINICALTRIALS_SCHEDULE_HOUR, first_day),
        PUBMED_JOB_NAME: _window(now, PUBMED_SCHEDULE_HOUR, first_day),
    }
    names = [create_database(admin_url), create_database(admin_url)]
    warehouse_url, storage_url = (url_for(admin_url, name) for name in names)
    try:
        with ReplayServer(tmp / "served") as replay:
            env = clean_environment()
            env.update(
                DAGSTER_HOME=str(home),
                BIOLOUPE_DATABASE_URL=warehouse_url,
                BIOLOUPE_DAGSTER_STORAGE_URL=as_sqlalchemy_psycopg2_url(storage_url),
                BIOLOUPE_START_DATE=first_day.isoformat(),
                BIOLOUPE_CATCH_UP_DAYS=str(LOOKBACK),
                BIOLOUPE_CATCH_UP_INTERVAL_SECONDS="15",
                CTGOV_BASE_URL=replay.url,
                CTGOV_SCOPE="all",
                PUBMED_BASE_URL=replay.url,
                PUBMED_QUERY="all[sb]",
                NCBI_API_KEY=NCBI_KEY,
                # Every range normalizes in worker processes, here spawned by the run workers
                # the daemon launches.
                BIOLOUPE_PROCESS_MIN_DOCUMENTS="1",
            )
            # The outage: each source ran up to the last OUTAGE days of its window, then nothing.
            for source, job in SOURCES:
                _backfill(env, source, windows[job][0], windows[job][-OUTAGE - 1])
            log = tmp / "dagster-dev.log"
            with dagster_dev([CLI, "dev"], env, log) as url:
                stack = Stack(
                    url,
                    warehouse_url,
                    env["BIOLOUPE_DAGSTER_STORAGE_URL"],
                    home,
                    log,
                    first_day,
                    windows,
                )
                yield stack
    finally:
        for name in names:
            drop_database(admin_url, name)


def _runs(stack: Stack, **filter_args: Any) -> list[dg.DagsterRun]:
    with stack.instance() as instance:
        return list(instance.get_runs(dg.RunsFilter(**filter_args)))


def _all_finished(runs: list[dg.DagsterRun]) -> bool:
    return bool(runs) and all(run.is_finished for run in runs)


def test_a_ui_backfill_of_the_trials_job_completes_in_a_handful_of_runs(stack: Stack) -> None:
    window = stack.windows[CLINICALTRIALS_JOB_NAME]
    days = days_between(stack.first_day, window[0] - timedelta(days=1))
    assert len(days) <= MAX_DAYS_PER_RUN
    launched = stack.graphql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": [day.isoformat() for day in days],
                "assetSelection": [{"path": path} for path in TRIALS_JOB_ASSETS],
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def finished() -> str | None:
        status = stack.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return status["status"] if status["status"] not in ("REQUESTED",) else None

    assert wait_for("the backfill", finished, 600, stack.log) == "COMPLETED_SUCCESS"
    runs = _runs(stack, tags={"dagster/backfill": backfill_id})
    assert 1 <= len(runs) <= len(TRIALS_JOB_ASSETS)  # range runs, not one per day
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    assert (
        count(stack.warehouse_url, "core.trials", f"partition_date < '{window[0].isoformat()}'")
        == len(days) * PER_DAY
    )


def test_after_an_outage_the_catch_up_launches_exactly_the_missing_days_once(
    stack: Stack,
) -> None:
    for job, window in stack.windows.items():

        def finished(job: str = job) -> list[dg.DagsterRun] | None:
            runs = _runs(stack, job_name=job, tags={CATCH_UP_TAG: "1"})
            return runs if _all_finished(runs) else None

        runs = wait_for(f"catch-up runs of {job}", finished, 600, stack.log)
        assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in runs] == [
            (window[-OUTAGE].isoformat(), window[-1].isoformat())
        ], job
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
    # Later ticks find nothing to do: no second run for those days.
    since = time.time()
    wait_for("a later catch-up tick", lambda: _skipped_tick_after(stack, since), 180, stack.log)
    for job in stack.windows:
        catch_up_runs = [r for r in _runs(stack, job_name=job) if CATCH_UP_TAG in r.tags]
        assert len(catch_up_runs) == 1, job
    assert count(stack.warehouse_url, "core.trials") >= len(stack.windows[CLINICALTRIALS_JOB_NAME])


TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 5) { status timestamp } } }
  }
}"""


def _skipped_tick_after(stack: Stack, since: float) -> bool:
    selector = {
        "repositoryLocationName": "bioloupe_data.definitions",
        "repositoryName": "__repository__",
        "sensorName": "daily_catch_up_sensor",
    }
    sensor = stack.graphql(TICKS, {"selector": selector})["sensorOrError"]
    ticks = sensor["sensorState"]["ticks"]
    return any(t["status"] == "SKIPPED" and t["timestamp"] > since for t in ticks)


def _drug_keys(stack: Stack) -> set[str]:
    with psycopg.connect(stack.warehouse_url) as conn:
        return {key for (key,) in conn.execute("SELECT drug_key FROM enriched.drugs")}


def test_the_registration_sensor_registers_drugs_and_their_profiles_run(stack: Stack) -> None:
    def settled() -> tuple[list[str], list[dg.DagsterRun]] | None:
        """Every drug registered once and every profile run it requested finished."""
        with stack.instance() as instance:
            keys = instance.get_dynamic_partitions("drugs")
        runs = _runs(stack, tags={"dagster/sensor_name": "drugs_registration_sensor"})
        if not keys or set(keys) != _drug_keys(stack) or not _all_finished(runs):
            return None
        return keys, runs

    keys, runs = wait_for("drugs registered and profiled", settled, 600, stack.log)
    assert len(keys) == len(set(keys))
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    assert len(runs) < len(keys)  # batched range runs, not one per drug
    assert count(stack.warehouse_url, "enriched.drug_profiles") == len(keys)


def test_the_ncbi_key_is_nowhere_in_the_daemon_runs_storage_compute_logs_or_warehouse(
    stack: Stack,
) -> None:
    pubmed_runs = _runs(stack, job_name=PUBMED_JOB_NAME)
    assert pubmed_runs and all(run.is_finished for run in pubmed_runs)
    compute_logs = [p for p in stack.home.rglob("*") if p.suffix in (".out", ".err")]
    assert compute_logs  # the run workers' captured output is there to search
    assert files_holding(stack.home, (NCBI_KEY,)) == []
    assert NCBI_KEY not in stack.log.read_text(errors="replace")
    assert tables_holding(stack.storage_url.replace("+psycopg2", ""), (NCBI_KEY,)) == []
    assert tables_holding(stack.warehouse_url, (NCBI_KEY,)) == []


def _worker_of(stack: Stack, run_id: str) -> psutil.Process | None:
    """The process executing a run's steps, from the run's own event ("Executing steps in
    process (pid: N)")."""
    with stack.instance() as instance:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            found = re.search(r"Executing steps in process \(pid: (\d+)\)", record.user_message)
            if found:
                try:
                    return psutil.Process(int(found.group(1)))
                except psutil.NoSuchProcess:
                    return None
    return None


def test_a_run_whose_worker_is_killed_is_marked_failed_and_a_rerun_converges(
    stack: Stack,
) -> None:
    window = stack.windows[CLINICALTRIALS_JOB_NAME]
    days = days_between(stack.first_day, window[-1])
    params = {
        "partitionNames": [day.isoformat() for day in days],
        "assetSelection": [{"path": path} for path in TRIALS_JOB_ASSETS],
    }
    with psycopg.connect(stack.warehouse_url) as conn:
        before = warehouse_digest(conn)

    killed = stack.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert killed["__typename"] == "LaunchBackfillSuccess", killed

    def worker() -> tuple[dg.DagsterRun, psutil.Process] | None:
        for run in _runs(stack, tags={"dagster/backfill": killed["backfillId"]}):
            process = _worker_of(stack, run.run_id)
            if process is not None:
                return run, process
        return None

    run, process = wait_for("a run worker to kill", worker, 300, stack.log, every=0.1)
    process.kill()  # SIGKILL: no chance to report anything itself

    def failed() -> dg.DagsterRun | None:
        (found,) = _runs(stack, run_ids=[run.run_id])
        return found if found.is_finished else None

    assert wait_for("the killed run to be marked", failed, 300, stack.log).status == (
        dg.DagsterRunStatus.FAILURE
    )

    again = stack.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]

    def finished() -> str | None:
        answer = stack.graphql(BACKFILL_STATUS, {"id": again["backfillId"]})
        status = answer["partitionBackfillOrError"]["status"]
        return status if status != "REQUESTED" else None

    assert wait_for("the re-run", finished, 600, stack.log) == "COMPLETED_SUCCESS"
    with psycopg.connect(stack.warehouse_url) as conn:
        assert warehouse_digest(conn) == before


# The UI, checked in headless Chromium (the daemon's runs above have filled it): each page must
# show what a person opens it for, and leaves a screenshot (in BIOLOUPE_SCREENSHOTS, the README's
# come from there, else in the test's folder).
TUMOR_AREAS_SHOWN = ["hepatobiliary/pancreatic", "head & neck", "genitourinary"]
UI_PAGES: dict[str, tuple[str, str | None, list[str | re.Pattern[str]]]] = {
    # name: (path, button to press first, texts that must be visible)
    "asset-graph": ("/asset-groups", None, ["analytics", "core", "enriched", "raw"]),
    "daily-partitions": (
        "/assets/core/trials?view=partitions",
        None,
        [re.compile(r"^(Materialized) \((\d+)\)$"), re.compile(r"^(Missing) \((\d+)\)$")],
    ),
    "landscape-grid": ("/assets/analytics/landscape?view=partitions", None, TUMOR_AREAS_SHOWN),
    "row-count-plots": ("/assets/core/trials?view=overview", "Plots", ["dagster/row_count"]),
    "automation": (
        "/automation",
        None,
        ["daily_catch_up_sensor", "drugs_registration_sensor", "clinicaltrials_gov_daily_schedule"],
    ),
}


def _check_partition_counts(stack: Stack, shown: dict[str, int]) -> None:
    """The partitions page of `core/trials` counts every day due by the stack's start as
    materialized, and no more days missing than were not due then. Before the schedule's hour,
    yesterday's run is not due yet; once it is, the schedule or the catch-up may be running it."""
    due = len(days_between(stack.first_day, stack.windows[CLINICALTRIALS_JOB_NAME][-1]))
    partitions = len(days_between(stack.first_day, datetime.now(UTC).date() - timedelta(days=1)))
    assert shown["Materialized"] >= due, shown
    assert shown["Missing"] <= partitions - due, shown
    assert shown["Materialized"] + shown["Missing"] <= partitions, shown


@pytest.mark.parametrize("name", list(UI_PAGES))
def test_the_ui_shows_it_in_a_real_browser(stack: Stack, name: str, tmp_path: Path) -> None:
    path, button, expected = UI_PAGES[name]
    folder = Path(os.environ.get("BIOLOUPE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        page.goto(stack.webserver + path, wait_until="networkidle")
        dismiss_welcome(page)
        if button:
            page.get_by_role("button", name=button).click()
        counts: dict[str, int] = {}
        for text in expected:
            shown = page.get_by_text(text, exact=True).first
            shown.wait_for(state="visible")
            if isinstance(text, re.Pattern):
                label = shown.inner_text()
                found = text.match(label)
                assert found, label
                counts[found.group(1)] = int(found.group(2))
        if counts:
            _check_partition_counts(stack, counts)
        if button:
            shown.scroll_into_view_if_needed()
        page.screenshot(path=str(folder / f"{name}.png"))
    assert (folder / f"{name}.png").stat().st_size > 10_000
