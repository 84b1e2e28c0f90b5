"""The `bioloupe-data` command as a user runs it: a separate process, its own Dagster instance
(`DAGSTER_HOME` with PostgreSQL storage), and the warehouse given by URL or embedded."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pgserver
import psycopg
import pytest
from rich.console import Console
from rich.progress import Progress

from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY, PUBMED_LANDING_KEY
from bioloupe_data.assets.normalize import PUBLICATIONS_KEY, TRIALS_KEY
from bioloupe_data.cli import output_width
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic
from bioloupe_data.resources import WarehouseResource
from bioloupe_data.runner import DocumentRateColumn, progress_columns

from conftest import (
    CTGOV_DATA,
    create_database,
    drop_database,
    stop_embedded_server,
    url_for,
)
from warehouse_helpers import count, link_files, sessions_opened, warehouse_digest

CLI = [str(Path(sys.executable).with_name("bioloupe-data"))]
KILL_DAYS, KILL_PER_DAY = 10, 250
KILL_END = date(2024, 3, 10)


def _environment(**values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BIOLOUPE_", "CTGOV_", "PUBMED_", "NCBI_"))
    }
    env.pop("DAGSTER_HOME", None)
    env.update(values)
    return env


def _run(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`args` run to its end with `env`, its output captured as text."""
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _runs(home: Path) -> list[dg.DagsterRun]:
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            return list(instance.get_runs())
    finally:
        del os.environ["DAGSTER_HOME"]


def _materialized(home: Path, key: dg.AssetKey) -> set[str]:
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            return set(instance.get_materialized_partitions(key))
    finally:
        del os.environ["DAGSTER_HOME"]


def _progress_line(output: str, asset: str) -> str:
    """The final state of an asset's progress bar, as the command leaves it on stderr."""
    lines = [line for line in output.splitlines() if line.lstrip().startswith(asset + " ")]
    assert lines, f"no progress bar for {asset} in:\n{output}"
    return lines[-1]


def _days(start: date, end: date) -> set[str]:
    return {(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)}


def test_backfill_command_on_a_server_given_by_url(
    tmp_path: Path, database_url: str, dagster_home: Path
) -> None:
    studies = sorted(CTGOV_DATA.glob("NCT*.json"), key=lambda p: p.stat().st_size)[:25]
    folder = link_files(studies, tmp_path / "served")
    days = sorted(
        json.loads(p.read_text())["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"][
            "date"
        ]
        for p in studies
    )
    start, end = date.fromisoformat(days[-1]) - timedelta(days=20), date.fromisoformat(days[-1])
    expected = sum(1 for d in days if d >= start.isoformat())
    with ReplayServer(folder) as server:
        env = _environment(
            BIOLOUPE_DATABASE_URL=database_url,
            DAGSTER_HOME=str(dagster_home),
            CTGOV_BASE_URL=server.url,
            CTGOV_SCOPE="all",
            BIOLOUPE_START_DATE="2006-01-01",
        )
        command = [*CLI, "backfill", "--from", str(start), "--to", str(end)]
        command += ["--source", "clinicaltrials_gov"]
        done = subprocess.run(
            command,
            env=env,
            cwd=tmp_path,  # where an embedded server would put `.bioloupe/`
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "inserted" in done.stdout and "core/trials" in done.stdout
    assert count(database_url, "core.trials") == expected >= 1
    total_days = len(_days(start, end))
    for key in (CLINICALTRIALS_LANDING_KEY, TRIALS_KEY):
        bar = _progress_line(done.stderr, key.to_user_string())
        assert f"{total_days}/{total_days} days" in bar
        # Drawn at the piped width, not squeezed into 80 columns: the bar at its full 40.
        assert "━" * 40 in bar and re.search(r"[0-9,]+ docs/s", bar), bar
    assert f"{expected} docs" in _progress_line(done.stderr, "raw/clinicaltrials_gov")
    for key in (CLINICALTRIALS_LANDING_KEY, TRIALS_KEY):
        assert _materialized(dagster_home, key) == _days(start, end)
    assert not (tmp_path / ".bioloupe").exists()  # nothing embedded was started


def test_a_finished_bar_keeps_the_rate_its_asset_reached() -> None:
    clock = [0.0]
    progress = Progress(get_time=lambda: clock[0], disable=True)
    task_id = progress.add_task("raw/clinicaltrials_gov", total=2, docs=0)
    clock[0] = 2.0
    progress.update(task_id, completed=1, docs=100)
    assert str(DocumentRateColumn().render(progress.tasks[0])) == "50 docs/s"
    clock[0] = 4.0
    progress.update(task_id, completed=2, docs=400)
    clock[0] = 40.0  # the next asset's bar is still moving
    assert str(DocumentRateColumn().render(progress.tasks[0])) == "100 docs/s"


def test_piped_bars_keep_each_asset_on_one_line() -> None:
    log = io.StringIO()  # a scheduled job's log: no terminal, no width
    console = Console(file=log, width=output_width(log))
    with Progress(*progress_columns(), console=console) as progress:
        for asset in ("raw/clinicaltrials_gov", "enriched/trial_features"):
            task_id = progress.add_task(asset, total=1096, docs=0)
            progress.update(task_id, completed=1096, docs=1_234_567)
    lines = log.getvalue().splitlines()
    bars = [line for line in lines if "1096/1096 days" in line]
    assert len(bars) == 2 and all("docs/s" in bar for bar in bars), lines


def test_backfill_command_rejects_a_range_outside_the_partitions(
    tmp_path: Path, database_url: str, dagster_home: Path
) -> None:
    env = _environment(
        BIOLOUPE_DATABASE_URL=database_url,
        DAGSTER_HOME=str(dagster_home),
        BIOLOUPE_START_DATE="2020-01-01",
    )
    done = _run([*CLI, "backfill", "--from", "2019-12-01", "--to", "2020-01-05"], env, timeout=120)
    assert done.returncode == 2
    assert "outside the partitions" in done.stderr


DAY = ["--from", "2024-01-02", "--to", "2024-01-02"]
LANDING = "raw/clinicaltrials_gov"


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("BIOLOUPE_START_DATE", "01/02/2020", "BIOLOUPE_START_DATE must be YYYY-MM-DD"),
        ("BIOLOUPE_DAGSTER_STORAGE_URL", "sqlite:///dagster.db", "must be a PostgreSQL URL"),
    ],
)
def test_a_wrong_setting_is_an_error_naming_it_without_a_traceback(
    database_url: str, dagster_home: Path, setting: str, value: str, says: str
) -> None:
    env = _environment(BIOLOUPE_DATABASE_URL=database_url, DAGSTER_HOME=str(dagster_home))
    env[setting] = value
    done = _run([*CLI, "backfill", *DAY], env, timeout=120)
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr


# The command as installed, observed: how many objects were set aside at each full collection
# (one that found none walked everything loaded so far), and at exit how many were set aside
# and whether the collector is on.
OBSERVED = [
    sys.executable,
    "-c",
    """
import atexit, gc, sys
from bioloupe_data import cli
set_aside_at_full_collections = []
def record(phase, info):
    if phase == "start" and info["generation"] == 2:
        set_aside_at_full_collections.append(gc.get_freeze_count())
gc.callbacks.append(record)
def report():
    print(f"set aside at full collections: {set_aside_at_full_collections}", flush=True)
    print(f"set aside at exit: {gc.get_freeze_count()}", flush=True)
    print(f"collector on at exit: {gc.isenabled()}", flush=True)
atexit.register(report)
sys.exit(cli.main(sys.argv[1:]))
""",
]


def _assert_no_full_collection_walked_the_start(stdout: str) -> None:
    """What the command loaded to start (Dagster, the definitions) was set aside before any
    full collection, and the collector is on again after the start."""
    found = re.search(r"set aside at full collections: \[([\d, ]*)\]", stdout)
    assert found, stdout[-2000:]
    at_full_collections = [int(n) for n in found.group(1).split(",") if n.strip()]
    assert all(n > 100_000 for n in at_full_collections), at_full_collections
    set_aside = re.search(r"set aside at exit: (\d+)", stdout)
    assert set_aside and int(set_aside.group(1)) > 100_000  # Dagster and the definitions
    assert "collector on at exit: True" in stdout


def test_no_full_collection_walks_what_a_backfill_loads_to_start(
    database_url: str, dagster_home: Path, ctgov_replay: ReplayServer
) -> None:
    """Dagster, the definitions and the instance live as long as the command: no full
    collection walks them, neither while they load (the collector is off) nor during the run
    (they are set aside), and the collector is on again for the run."""
    env = _environment(
        BIOLOUPE_DATABASE_URL=database_url,
        DAGSTER_HOME=str(dagster_home),
        CTGOV_BASE_URL=ctgov_replay.url,
        CTGOV_SCOPE="all",
        BIOLOUPE_START_DATE="2020-01-01",
    )
    done = _run([*OBSERVED, "backfill", *DAY, "--select", LANDING], env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    _assert_no_full_collection_walked_the_start(done.stdout)


def test_no_full_collection_walks_what_status_loads_to_start(
    tmp_path: Path, database_url: str, dagster_home: Path
) -> None:
    env = _environment(
        BIOLOUPE_DATABASE_URL=database_url,
        DAGSTER_HOME=str(dagster_home),
        BIOLOUPE_START_DATE="2024-01-01",
    )
    done = _run([*OBSERVED, "status", *DAY, "--out", str(tmp_path / "status")], env)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]  # a day with gaps
    _assert_no_full_collection_walked_the_start(done.stdout)


@pytest.fixture(scope="module")
def synthetic_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    write_synthetic(folder, KILL_DAYS, KILL_PER_DAY, seed=11, end=KILL_END, pubmed_per_day=0)
    return folder


def _committed_days(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT partition_date::text, landed FROM ops.partition_fetches "
            "WHERE source = 'clinicaltrials_gov'"
        ).fetchall()
    return dict(rows)


def _landed_by_day(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT partition_date::text, count(*) FROM raw.documents "
            "WHERE source = 'clinicaltrials_gov' GROUP BY 1"
        ).fetchall()
    return dict(rows)


def test_a_killed_backfill_keeps_its_committed_days_and_a_rerun_converges(
    synthetic_days: Path, database_url: str, dagster_home: Path, admin_url: str
) -> None:
    start = KILL_END - timedelta(days=KILL_DAYS - 1)
    with ReplayServer(synthetic_days) as server:
        env = _environment(
            BIOLOUPE_DATABASE_URL=database_url,
            DAGSTER_HOME=str(dagster_home),
            CTGOV_BASE_URL=server.url,
            CTGOV_SCOPE="all",
            BIOLOUPE_START_DATE="2024-01-01",
        )
        command = [*CLI, "backfill", "--from", str(start), "--to", str(KILL_END)]
        command += ["--source", "clinicaltrials_gov"]
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 240
            while len(_materialized(dagster_home, CLINICALTRIALS_LANDING_KEY)) < 2:
                assert process.poll() is None, "the backfill ended before it could be killed"
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert process.poll() is None, "the backfill ended before it could be killed"
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)

        committed = _committed_days(database_url)
        materialized = _materialized(dagster_home, CLINICALTRIALS_LANDING_KEY)
        landed = _landed_by_day(database_url)
        assert len(committed) < KILL_DAYS, "the kill came too late to test anything"
        # Every committed day is whole; nothing of the day in flight was kept.
        assert set(committed.values()) == {KILL_PER_DAY}
        assert landed == committed
        # What Dagster recorded as materialized is committed. A committed day can be missing
        # only if it was in flight at the kill (killed between its commit and its event): at
        # most one per connection writing days side by side, in whatever order they committed.
        assert len(materialized) >= 2
        assert materialized <= set(committed)
        assert len(set(committed) - materialized) <= WarehouseResource().parallel_days

        (killed,) = _runs(dagster_home)
        assert killed.status == dg.DagsterRunStatus.STARTED  # nothing watched it die...

        rerun = _run(command, env)
        assert rerun.returncode == 0, rerun.stderr
        # ...until the next backfill found its process gone and marked it failed.
        assert f"marked run {killed.run_id} failed" in rerun.stderr
        statuses = {run.run_id: run.status for run in _runs(dagster_home)}
        assert statuses.pop(killed.run_id) == dg.DagsterRunStatus.FAILURE
        assert set(statuses.values()) == {dg.DagsterRunStatus.SUCCESS}

        reference = create_database(admin_url)
        try:
            reference_url = url_for(admin_url, reference)
            uninterrupted = _run(command, {**env, "BIOLOUPE_DATABASE_URL": reference_url})
            assert uninterrupted.returncode == 0, uninterrupted.stderr
            assert warehouse_digest(database_url) == warehouse_digest(reference_url)
        finally:
            drop_database(admin_url, reference)
    assert _materialized(dagster_home, TRIALS_KEY) == _days(start, KILL_END)
    assert count(database_url, "core.trials") == KILL_DAYS * KILL_PER_DAY


@pytest.fixture
def embedded_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "bioloupe_home"
    try:
        yield home
    finally:
        stop_embedded_server(home / "postgres")


def test_demo_runs_on_the_embedded_server_and_a_second_demo_changes_nothing(
    embedded_home: Path,
) -> None:
    env = _environment(BIOLOUPE_HOME=str(embedded_home))
    first = _run([*OBSERVED, "demo", "--days", "5", "--per-day", "10"], env, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "nothing changed" not in first.stderr + first.stdout
    assert (embedded_home / "postgres" / "postmaster.pid").exists()
    _assert_no_full_collection_walked_the_start(first.stdout)

    second = _run([*CLI, "demo", "--days", "5", "--per-day", "10"], env, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stderr + second.stdout
    server = pgserver.get_server(embedded_home / "postgres", cleanup_mode=None)
    url = server.get_uri(database="bioloupe")
    assert count(url, "core.trials") == 50
    # The demo enriched what it loaded: every drug found has a profile.
    assert count(url, "enriched.drug_profiles") == count(url, "enriched.drugs") > 0
    assert count(url, "enriched.sponsor_profiles") == count(url, "enriched.sponsors") > 0


def test_backfill_of_one_source_then_of_both_over_one_range(
    tmp_path: Path, database_url: str, dagster_storage_url: str, dagster_home: Path
) -> None:
    end = date(2024, 5, 3)
    start = end - timedelta(days=2)
    folder = tmp_path / "served"
    summary = write_synthetic(folder, 3, 8, seed=4, end=end, pubmed_per_day=6)
    with ReplayServer(folder) as server:
        env = _environment(
            BIOLOUPE_DATABASE_URL=database_url,
            DAGSTER_HOME=str(dagster_home),
            CTGOV_BASE_URL=server.url,
            CTGOV_SCOPE="all",
            PUBMED_BASE_URL=server.url,
            PUBMED_QUERY="all[sb]",
            BIOLOUPE_START_DATE="2024-01-01",
        )
        command = [*CLI, "backfill", "--from", str(start), "--to", str(end)]
        only_pubmed = _run([*command, "--source", "pubmed"], env)
        assert only_pubmed.returncode == 0, only_pubmed.stderr
        assert count(database_url, "core.publications") == summary.articles == 18
        assert count(database_url, "raw.documents", "source = 'clinicaltrials_gov'") == 0

        storage_sessions = sessions_opened(dagster_storage_url)
        both = _run(command, env)
        assert both.returncode == 0, both.stderr
        storage_sessions = sessions_opened(dagster_storage_url) - storage_sessions
    # The command keeps its Dagster storage connection (18 sessions here, opening the instance's
    # storages included) instead of one per event written or read (473 for these 3 days).
    assert storage_sessions <= 60
    assert count(database_url, "core.trials") == summary.studies == 24
    assert count(database_url, "core.publications") == 18
    assert "raw/pubmed" in both.stdout and "raw/clinicaltrials_gov" in both.stdout
    for key in (PUBMED_LANDING_KEY, PUBLICATIONS_KEY, CLINICALTRIALS_LANDING_KEY, TRIALS_KEY):
        assert _materialized(dagster_home, key) == _days(start, end)


def test_synth_writes_the_days_that_end_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    args = ["synth", "--days", "2", "--per-day", "3", "--end", "2024-01-31"]
    done = subprocess.run(
        [*CLI, *args, "--pubmed-per-day", "0", "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "2024-01-30..2024-01-31" in done.stdout + done.stderr
    with ReplayServer(out) as server:
        assert server.reload() == 6


FAULTS_REPORTED = ("--faults", "503:#1", "--report-every", "0.5")


def test_the_replay_server_command_reports_what_it_serves_and_injects_faults(
    synthetic_days: Path,
) -> None:
    process = subprocess.Popen(
        [*CLI, "replay-server", "--data", str(synthetic_days), "--port", "0", *FAULTS_REPORTED],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        started = process.stdout.readline()
        assert "injecting faults '503:#1'" in started
        url = started.split(" at ")[1].split()[0]
        studies = f"{url}/api/v2/studies"
        codes = [httpx.get(studies, params={"pageSize": "1"}).status_code for _ in range(2)]
        assert codes == [503, 200]
        report = process.stdout.readline()
        assert "replay server: 2 requests in the last 0 s (/api/v2/studies 2)" in report
        assert "faults so far {'503': 1}" in report
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_fault_spec_the_replay_server_cannot_read_is_refused(synthetic_days: Path) -> None:
    refused = subprocess.run(
        [*CLI, "replay-server", "--data", str(synthetic_days), "--faults", "teapot:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "unknown fault 'teapot'" in refused.stderr
