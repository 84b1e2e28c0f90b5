"""The local environment the command line runs in: the embedded PostgreSQL when no URL is
configured, and a DAGSTER_HOME whose storage is PostgreSQL (dagster-postgres)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import sqlalchemy.exc

from bioloupe_data.settings import SettingError, env
from bioloupe_data.warehouse.database import (
    DAGSTER_DATABASE,
    WAREHOUSE_DATABASE,
    EmbeddedServer,
    as_sqlalchemy_psycopg2_url,
)

STORAGE_URL_VAR = "BIOLOUPE_DAGSTER_STORAGE_URL"
# A range run ends with one materialization per partition; Dagster writes them as one batch
# when this is set (its default, 0, writes them one by one: minutes for a 20-year range).
EVENT_BATCH_SIZE_VAR = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = "1000"
# Connections the command's Dagster storage may open beyond the one it keeps (threads writing
# events while the progress bars read them).
STORAGE_MAX_OVERFLOW = 4
STORAGE_POOL_RECYCLE_SECONDS = 3600
# What PostgreSQL raises when another process creates the same table first: its name
# (duplicate_table), its row type when that commits between the two checks (duplicate_object),
# or the type's catalog row after waiting on the other's transaction (unique_violation).
CREATION_RACE_CODES = frozenset({"42P07", "42710", "23505"})
STORAGE_OPEN_ATTEMPTS = 10
STORAGE_RETRY_WAIT_SECONDS = 0.2

logger = logging.getLogger(__name__)

LOCAL_DAGSTER_YAML = f"""\
# Written by `bioloupe-data` for local use; production uses dagster.yaml.example.
storage:
  postgres:
    postgres_url:
      env: {STORAGE_URL_VAR}
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 30
telemetry:
  enabled: false
"""


@dataclass(frozen=True, slots=True)
class LocalEnvironment:
    warehouse_url: str
    storage_url: str
    dagster_home: Path
    embedded: bool


def bioloupe_home() -> Path:
    return Path(env("BIOLOUPE_HOME") or ".bioloupe").resolve()


def _storage_url(default: str) -> str:
    """Dagster's storage URL (the user's, else `default`) naming psycopg2 as its driver.
    SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3, with which dagster-postgres closes
    each connection it keeps as soon as it opens it (its `with conn:` commits in psycopg2 and
    closes in psycopg 3): the command's storage and the webserver's would fail on first use."""
    url = env(STORAGE_URL_VAR) or default
    try:
        return as_sqlalchemy_psycopg2_url(url)
    except ValueError:
        # Only the scheme is named: the rest may hold a password.
        found = f"not {url.split('://', 1)[0]}" if "://" in url else "has no scheme"
        raise SettingError(
            f"{STORAGE_URL_VAR} must be a PostgreSQL URL (postgresql://…), {found}"
        ) from None


def prepare() -> LocalEnvironment:
    """Resolve the warehouse and Dagster storage, start the embedded server if needed, and set
    the environment variables the definitions and `DagsterInstance.get()` read."""
    home = bioloupe_home()
    configured = env("BIOLOUPE_DATABASE_URL")
    if configured:
        warehouse_url = configured
        storage_url = _storage_url(configured)
        embedded = False
    else:
        server = EmbeddedServer(home / "postgres")
        warehouse_url = server.url_for(WAREHOUSE_DATABASE)
        storage_url = _storage_url(server.url_for(DAGSTER_DATABASE))
        embedded = True
        os.environ["BIOLOUPE_DATABASE_URL"] = warehouse_url
    os.environ[STORAGE_URL_VAR] = storage_url
    if not env(EVENT_BATCH_SIZE_VAR):
        os.environ[EVENT_BATCH_SIZE_VAR] = EVENT_BATCH_SIZE

    dagster_home = Path(env("DAGSTER_HOME") or home / "dagster_home").resolve()
    if not env("DAGSTER_HOME"):
        dagster_home.mkdir(parents=True, exist_ok=True)
        config = dagster_home / "dagster.yaml"
        if not config.exists() or config.read_text() != LOCAL_DAGSTER_YAML:
            config.write_text(LOCAL_DAGSTER_YAML)
        os.environ["DAGSTER_HOME"] = str(dagster_home)
    return LocalEnvironment(warehouse_url, storage_url, dagster_home, embedded)


@contextmanager
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """The instance of DAGSTER_HOME (after `prepare`), its storage keeping a connection open for
    the command's life, as the webserver's does. Otherwise dagster-postgres opens a connection
    for every event it writes: a year's range run writes thousands (a planned materialization
    per day and asset, check results, logs): about 1.7 s of a 30-day backfill."""
    with _open_instance() as instance:
        instance.optimize_for_webserver(
            statement_timeout=0,  # none: a command's storage queries are not a UI's
            pool_recycle=STORAGE_POOL_RECYCLE_SECONDS,
            max_overflow=STORAGE_MAX_OVERFLOW,
        )
        yield instance


def _open_instance() -> dg.DagsterInstance:
    """`DagsterInstance.get()`, opened again when it lost a race to create Dagster's tables.
    Commands started together on a new storage database all create them; dagster-postgres
    retries some of the errors that race raises but not all (`instance_info`, a row type), and
    the next try finds the tables the winner committed."""
    for attempt in range(1, STORAGE_OPEN_ATTEMPTS):
        try:
            return dg.DagsterInstance.get()
        except sqlalchemy.exc.DBAPIError as error:
            code = getattr(error.orig, "pgcode", None)  # psycopg2's, dagster-postgres's driver
            if code not in CREATION_RACE_CODES:
                raise
            logger.warning(
                "Another process is creating Dagster's storage tables (%s); opening it again",
                code,
            )
        time.sleep(STORAGE_RETRY_WAIT_SECONDS * attempt)
    return dg.DagsterInstance.get()
