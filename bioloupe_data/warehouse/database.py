"""Where the warehouse lives: a server given by URL, or the embedded `pgserver` PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

WAREHOUSE_DATABASE = "bioloupe"
DAGSTER_DATABASE = "dagster"


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A PostgreSQL started by `pgserver` in a local folder; it outlives the process."""

    data_dir: Path

    def admin_url(self) -> str:
        return _ensure_running(self.data_dir).get_uri()

    def url_for(self, database: str) -> str:
        server = _ensure_running(self.data_dir)
        ensure_database(server.get_uri(), database)
        return server.get_uri(database=database)


def _ensure_running(data_dir: Path) -> Any:
    import pgserver  # imported lazily: starting a server is never import-time work

    data_dir.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(data_dir, cleanup_mode=None)


def ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            # Another process may create it at the same moment.
            with suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def default_data_dir() -> Path:
    return Path(os.environ.get("BIOLOUPE_HOME") or ".bioloupe").resolve() / "postgres"


def resolve_warehouse_url(url: str | None, data_dir: Path | None = None) -> str:
    """The configured URL, or the embedded server's warehouse database when none is set."""
    if url:
        return url
    return EmbeddedServer(data_dir or default_data_dir()).url_for(WAREHOUSE_DATABASE)


def as_sqlalchemy_psycopg2_url(url: str) -> str:
    """Dagster's storage goes through SQLAlchemy; psycopg2 is the driver known to work there."""
    for prefix in (
        "postgresql+psycopg2://",
        "postgresql+psycopg://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url.removeprefix(prefix)
    raise ValueError("not a PostgreSQL URL")


@contextmanager
def connect(url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection: every unit of work opens its own `conn.transaction()`, which is
    then a real transaction (not a savepoint inside an implicit one that closing would roll
    back).

    Statements are never prepared on the server: a prepared statement keeps the generic plan
    it got while a table was small (a range backfill starts on empty tables), so a merge planned
    as a sequential scan of a few hundred rows would go on scanning the whole table every day,
    a cost that grows with the table. Planned each time, the same statement probes the key's
    index once the table is large."""
    conn = psycopg.connect(url, autocommit=True, application_name="bioloupe-data")
    conn.prepare_threshold = None
    try:
        _prefer_lz4(conn)
        yield conn
    finally:
        conn.close()


def _prefer_lz4(conn: psycopg.Connection) -> None:
    """Compress large values this session writes with lz4 where the server has it.

    A compressed value keeps its method when it is copied from table to table, so a payload
    first written into a staging table (whose columns follow this setting, pglz by default)
    would reach `raw.documents` pglz-compressed whatever that column asks for; lz4 compresses
    several times faster at a similar ratio."""
    with suppress(psycopg.errors.InvalidParameterValue):  # built without lz4: pglz stays
        conn.execute("SELECT set_config('default_toast_compression', 'lz4', false)")
