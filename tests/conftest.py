"""Shared fixtures: a throwaway PostgreSQL database per test, the replay server on the real
records, and a Dagster instance whose storage is PostgreSQL."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql
from rich.console import Console

from bioloupe_data.definitions import defs
from bioloupe_data.local import dagster_instance
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.runner import BackfillReport, run_backfill
from bioloupe_data.warehouse.database import (
    EmbeddedServer,
    as_sqlalchemy_psycopg2_url,
    connect,
)
from bioloupe_data.warehouse.migrate import migrate

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
CTGOV_DATA = REALDATA / "ctgov"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def backfill(
    keys: Sequence[dg.AssetKey],
    start: date,
    end: date,
    instance: dg.DagsterInstance | None = None,
    console: Console | None = None,
) -> BackfillReport:
    """A backfill as the CLI runs it, on `instance` or else on an instance whose storage is kept
    in memory (enough where what a test checks is the warehouse); its progress bars go to
    `console` (default: stderr)."""
    if instance is not None:
        return run_backfill(defs(), instance, keys, start, end, console=console)
    with dg.DagsterInstance.ephemeral() as ephemeral:
        return run_backfill(defs(), ephemeral, keys, start, end, console=console)


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def stop_embedded_server(data_dir: Path) -> None:
    """Stop the server `pgserver` runs in `data_dir` (cleanup_mode=None never stops it)."""
    import pgserver

    if not (data_dir / "postmaster.pid").exists():
        return
    server = pgserver.get_server(data_dir, cleanup_mode=None)  # the running server's handle
    pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    server.cleanup()  # forget the handle; with cleanup_mode None this stops nothing itself


def pytest_configure(config: pytest.Config) -> None:
    """A suite started as a background job (`make test &`, `nohup`) inherits SIGINT ignored,
    and Dagster, running a job in this process, gives SIGTERM the handler SIGINT has: ignored
    too. Every server a test starts afterwards would inherit that and outlive its
    `terminate()`. Python's own SIGINT handler keeps both signals handled, which a started
    program does not inherit."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server to create throwaway databases on: `BIOLOUPE_TEST_ADMIN_URL`, the local server
    on 127.0.0.1:5432, or else an embedded `pgserver` in a temporary folder."""
    configured = os.environ.get("BIOLOUPE_TEST_ADMIN_URL")
    if configured:
        yield configured
    elif _reachable(LOCAL_SERVER):
        yield LOCAL_SERVER
    else:
        data_dir = tmp_path_factory.mktemp("pgserver")
        try:
            yield EmbeddedServer(data_dir).admin_url()
        finally:
            stop_embedded_server(data_dir)


def url_for(admin: str, database: str) -> str:
    base, _, query = admin.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


def create_database(admin: str, template: str | None = None) -> str:
    """A new database, empty or a copy of `template` (which no session may be connected to)."""
    name = f"bioloupe_test_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(statement)
    return name


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def database_url(admin_url: str) -> Iterator[str]:
    name = create_database(admin_url)
    try:
        yield url_for(admin_url, name)
    finally:
        drop_database(admin_url, name)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """A connection to a throwaway warehouse with every migration applied (test modules that
    need another set-up define their own)."""
    with connect(database_url) as connection:
        migrate(connection)
        yield connection


@pytest.fixture
def dagster_storage_url(admin_url: str) -> Iterator[str]:
    name = create_database(admin_url)
    try:
        yield url_for(admin_url, name)
    finally:
        drop_database(admin_url, name)


def dagster_yaml(storage_url: str) -> str:
    return (
        "storage:\n"
        "  postgres:\n"
        f'    postgres_url: "{as_sqlalchemy_psycopg2_url(storage_url)}"\n'
        "telemetry:\n"
        "  enabled: false\n"
    )


@pytest.fixture
def dagster_home(tmp_path: Path, dagster_storage_url: str) -> Path:
    """A DAGSTER_HOME whose run, event and schedule storage is a throwaway PostgreSQL database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml(dagster_storage_url))
    return home


@pytest.fixture
def instance(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as inst:
        yield inst


@pytest.fixture
def command_instance(
    dagster_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The instance `bioloupe-data backfill` runs on: PostgreSQL storage keeping one connection
    open for the command's life (`local.dagster_instance`)."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dagster_instance() as inst:
        yield inst


@pytest.fixture(scope="session")
def ctgov_replay() -> Iterator[ReplayServer]:
    with ReplayServer(CTGOV_DATA) as server:
        yield server


@pytest.fixture
def pipeline_env(
    monkeypatch: pytest.MonkeyPatch, database_url: str, ctgov_replay: ReplayServer
) -> str:
    """Environment for the definitions: the throwaway warehouse and the replay server."""
    monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
    monkeypatch.setenv("CTGOV_BASE_URL", ctgov_replay.url)
    monkeypatch.setenv("CTGOV_SCOPE", "all")
    monkeypatch.setenv("BIOLOUPE_START_DATE", "2006-01-01")
    return database_url
