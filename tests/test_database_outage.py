"""The warehouse's PostgreSQL restarting in the middle of a run: the run fails cleanly (the day
in flight rolls back with its connection; days committed stay) and a re-run converges on the
warehouse an uninterrupted run leaves. Once with the warehouse on a server of its own (Dagster's
storage elsewhere), once with the embedded default, where both share one server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pgserver
import psycopg
import pytest

from bench._dagster_dev import clean_environment
from bioloupe_data.assets.normalize import TRIALS_KEY
from bioloupe_data.local import STORAGE_URL_VAR
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic
from bioloupe_data.warehouse.database import (
    DAGSTER_DATABASE,
    WAREHOUSE_DATABASE,
    EmbeddedServer,
    as_sqlalchemy_psycopg2_url,
)
from bioloupe_data.warehouse.digest import warehouse_digest

from conftest import create_database, dagster_yaml, drop_database, stop_embedded_server, url_for

CLI = str(Path(sys.executable).with_name("bioloupe-data"))
END, DAYS, PER_DAY = date(2024, 5, 12), 12, 250
SELECT = "raw/clinicaltrials_gov,core/trials"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("outage-data")
    write_synthetic(folder, DAYS, PER_DAY, seed=11, end=END, pubmed_per_day=0)
    with ReplayServer(folder) as server:
        yield server.url


def _command(start: date) -> list[str]:
    return [CLI, "backfill", "--from", str(start), "--to", str(END), "--select", SELECT]


def _start() -> date:
    return date.fromordinal(END.toordinal() - DAYS + 1)


def _environment(served: str, **values: str) -> dict[str, str]:
    return {
        **clean_environment(),
        "CTGOV_BASE_URL": served,
        "CTGOV_SCOPE": "all",
        "BIOLOUPE_START_DATE": "2024-01-01",
        **values,
    }


def _restart(data_dir: Path) -> None:
    """A fast restart of the embedded server: every session is cut, then it starts again."""
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)


def _instance_environment(home: Path) -> dict[str, str]:
    """What `DagsterInstance.get()` needs to read the instance at `home` (the local
    dagster.yaml names its storage by the variable the command line sets)."""
    values = {"DAGSTER_HOME": str(home)}
    if STORAGE_URL_VAR not in (home / "dagster.yaml").read_text():
        return values
    data_dir = home.parent / "postgres"
    storage = EmbeddedServer(data_dir).url_for(DAGSTER_DATABASE)
    return {**values, STORAGE_URL_VAR: as_sqlalchemy_psycopg2_url(storage)}


def _runs_and_normalized_days(home: Path) -> tuple[list[dg.DagsterRun], int]:
    values = _instance_environment(home)
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        with dg.DagsterInstance.get() as instance:
            days = len(instance.get_materialized_partitions(TRIALS_KEY))
            return list(instance.get_runs()), days
    finally:
        for name, value in previous.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def _normalized_days(warehouse_url: str) -> int:
    """Days normalized and committed so far (0 while the server is unreachable)."""
    try:
        with psycopg.connect(warehouse_url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM ops.normalized_days").fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


def _restart_while_normalizing(
    command: list[str], env: dict[str, str], data_dir: Path, warehouse_url: str
) -> subprocess.CompletedProcess[str]:
    """Run `command`; restart the server once its first day is normalized and committed (and
    before its last); return how the command ended."""
    before = _normalized_days(warehouse_url)
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _normalized_days(warehouse_url) == before:
        assert process.poll() is None, "the run ended before the restart"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert _normalized_days(warehouse_url) < DAYS, "normalizing ended before the restart"
    _restart(data_dir)
    _, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(command, process.returncode, "", err)


def _digest(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return warehouse_digest(conn)


@pytest.fixture(scope="module")
def uninterrupted(served: str, admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    names = [create_database(admin_url) for _ in range(2)]
    warehouse, storage = (url_for(admin_url, name) for name in names)
    home = tmp_path_factory.mktemp("reference-home")
    (home / "dagster.yaml").write_text(dagster_yaml(storage))
    try:
        env = _environment(served, BIOLOUPE_DATABASE_URL=warehouse, DAGSTER_HOME=str(home))
        done = subprocess.run(_command(_start()), env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return _digest(warehouse)
    finally:
        for name in names:
            drop_database(admin_url, name)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "postgres"
    try:
        yield data_dir
    finally:
        stop_embedded_server(data_dir)


def test_a_warehouse_restart_fails_the_run_cleanly_and_a_rerun_converges(
    served: str,
    uninterrupted: dict,
    embedded: Path,
    dagster_home: Path,
) -> None:
    warehouse = EmbeddedServer(embedded).url_for(WAREHOUSE_DATABASE)
    env = _environment(served, BIOLOUPE_DATABASE_URL=warehouse, DAGSTER_HOME=str(dagster_home))

    interrupted = _restart_while_normalizing(_command(_start()), env, embedded, warehouse)

    assert interrupted.returncode != 0
    assert "core/trials" in interrupted.stderr or "core__trials" in interrupted.stderr
    assert "terminat" in interrupted.stderr.lower() or "connection" in interrupted.stderr.lower()
    rerun = subprocess.run(_command(_start()), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _digest(warehouse) == uninterrupted


def test_with_the_embedded_default_a_restart_of_the_shared_server_and_a_rerun_converge(
    served: str, uninterrupted: dict, tmp_path: Path
) -> None:
    """Warehouse and Dagster's storage on the one embedded server: the restart cuts both. The
    run ends failed (or, if the failure itself could not be recorded, is marked failed by the
    next backfill); the re-run converges."""
    bioloupe_home = tmp_path / "bioloupe"
    env = _environment(served, BIOLOUPE_HOME=str(bioloupe_home))
    data_dir = bioloupe_home / "postgres"
    home = bioloupe_home / "dagster_home"
    try:
        subprocess.run(  # the first command starts the embedded server and writes dagster.yaml
            [CLI, "backfill", "--from", str(END), "--to", str(END), "--select", SELECT],
            env=env,
            capture_output=True,
            check=True,
        )
        warehouse = EmbeddedServer(data_dir).url_for(WAREHOUSE_DATABASE)
        interrupted = _restart_while_normalizing(_command(_start()), env, data_dir, warehouse)
        assert interrupted.returncode != 0
        rerun = subprocess.run(_command(_start()), env=env, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert _digest(warehouse) == uninterrupted
        runs, _ = _runs_and_normalized_days(home)
        assert all(run.is_finished for run in runs)
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS  # the newest: the re-run
        print(
            f"interrupted run ended with exit code {interrupted.returncode}",
            interrupted.stderr[-3000:],
        )
    finally:
        stop_embedded_server(data_dir)
