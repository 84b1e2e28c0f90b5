"""Where the warehouse lives and how its schema gets there: migrations, the embedded pgserver,
URL handling and connections."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pgserver
import psycopg
import pytest
import sqlalchemy
from psycopg import sql

from bioloupe_data.warehouse import migrate as migrate_module
from bioloupe_data.warehouse.database import (
    WAREHOUSE_DATABASE,
    as_sqlalchemy_psycopg2_url,
    connect,
    default_data_dir,
    ensure_database,
    resolve_warehouse_url,
)
from bioloupe_data.warehouse.migrate import Migration, bundled_migrations, migrate

from conftest import stop_embedded_server

WAREHOUSE_TABLES = {
    ("raw", "documents"),
    ("ops", "partition_fetches"),
    ("ops", "dead_letters"),
    ("ops", "schema_migrations"),
    ("core", "trials"),
}


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as connection:
        yield connection


def applied(conn: psycopg.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT version, checksum FROM ops.schema_migrations").fetchall())


def tables(conn: psycopg.Connection) -> set[tuple[str, str]]:
    rows = conn.execute(
        """SELECT table_schema, table_name FROM information_schema.tables
           WHERE table_schema IN ('raw', 'core', 'ops')"""
    ).fetchall()
    return {(schema, name) for schema, name in rows}


# ----------------------------------------------------------------------------- migrations


def test_bundled_migrations_are_ordered_and_checksummed() -> None:
    migrations = bundled_migrations()
    versions = [m.version for m in migrations]

    assert versions[0] == "001_foundation"
    assert versions == sorted(set(versions))
    for m in migrations:
        assert m.sql.strip()
        assert m.checksum == hashlib.sha256(m.sql.encode()).hexdigest()


def test_migrate_creates_the_warehouse(conn: psycopg.Connection) -> None:
    applied_now = migrate(conn)

    assert applied_now == [m.version for m in bundled_migrations()]
    schemas = {
        name
        for (name,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname IN ('raw', 'core', 'ops')"
        ).fetchall()
    }
    assert schemas == {"raw", "core", "ops"}
    assert tables(conn) >= WAREHOUSE_TABLES
    assert applied(conn) == {m.version: m.checksum for m in bundled_migrations()}


def test_migrate_twice_applies_nothing_the_second_time(conn: psycopg.Connection) -> None:
    migrate(conn)
    before = conn.execute("SELECT version, applied_at FROM ops.schema_migrations").fetchall()

    assert migrate(conn) == []
    after = conn.execute("SELECT version, applied_at FROM ops.schema_migrations").fetchall()
    assert sorted(after) == sorted(before)


def test_migrate_applies_only_a_migration_not_yet_recorded(conn: psycopg.Connection) -> None:
    migrate(conn)
    last = bundled_migrations()[-1].version
    conn.execute("DELETE FROM ops.schema_migrations WHERE version = %s", (last,))

    assert migrate(conn) == [last]
    assert last in applied(conn)


def test_an_edited_applied_migration_is_refused(conn: psycopg.Connection) -> None:
    migrate(conn)
    conn.execute(
        "UPDATE ops.schema_migrations SET checksum = 'edited' WHERE version = '001_foundation'"
    )

    with pytest.raises(RuntimeError, match="001_foundation changed after it was applied"):
        migrate(conn)
    assert applied(conn)["001_foundation"] == "edited"


def test_a_failing_migration_applies_nothing(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [
        *bundled_migrations(),
        Migration("900_half_done", "CREATE TABLE ops.half_done (x int); SELECT 1 / 0;"),
    ]
    monkeypatch.setattr(migrate_module, "bundled_migrations", lambda: broken)

    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(conn)

    assert conn.execute("SELECT to_regclass('raw.documents')").fetchone() == (None,)
    assert conn.execute("SELECT to_regclass('ops.half_done')").fetchone() == (None,)
    monkeypatch.undo()
    assert migrate(conn) == [m.version for m in bundled_migrations()]


def test_concurrent_migrations_apply_each_version_once(database_url: str) -> None:
    barrier = threading.Barrier(3)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(database_url) as c:
                barrier.wait(timeout=10)
                results.append(migrate(c))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    assert sorted(results, key=len) == [[], [], [m.version for m in bundled_migrations()]]


# ----------------------------------------------------------------------------- connections


def test_connect_gives_an_autocommit_connection_with_real_transactions(database_url: str) -> None:
    with connect(database_url) as c:
        assert c.autocommit
        c.execute("CREATE TABLE kept (x int)")
        with c.transaction():
            c.execute("INSERT INTO kept VALUES (1)")
        with pytest.raises(ZeroDivisionError), c.transaction():
            c.execute("INSERT INTO kept VALUES (2)")
            raise ZeroDivisionError
        name = c.execute("SHOW application_name").fetchone()
    assert c.closed
    assert name == ("bioloupe-data",)

    with psycopg.connect(database_url) as other:
        assert other.execute("SELECT x FROM kept").fetchall() == [(1,)]


def test_ensure_database_creates_once(admin_url: str) -> None:
    name = f"bioloupe_test_ensure_{uuid.uuid4().hex[:8]}"
    try:
        ensure_database(admin_url, name)
        ensure_database(admin_url, name)
        with psycopg.connect(admin_url) as c:
            found = c.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
        assert found == (1,)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# ----------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db.example:5433/wh", "postgresql+psycopg2://u:p@db.example:5433/wh"),
        ("postgres://u@db.example/wh", "postgresql+psycopg2://u@db.example/wh"),
        ("postgresql+psycopg://u@db.example/wh", "postgresql+psycopg2://u@db.example/wh"),
        ("postgresql+psycopg2://u@db.example/wh", "postgresql+psycopg2://u@db.example/wh"),
        (
            "postgresql://postgres:@/dagster?host=/tmp/pg",
            "postgresql+psycopg2://postgres:@/dagster?host=/tmp/pg",
        ),
    ],
)
def test_as_sqlalchemy_psycopg2_url(url: str, expected: str) -> None:
    assert as_sqlalchemy_psycopg2_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["mysql://u@db.example/wh", "sqlite:///warehouse.db", "", "host=localhost dbname=wh"],
)
def test_as_sqlalchemy_psycopg2_url_rejects_other_databases(url: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        as_sqlalchemy_psycopg2_url(url)


def test_sqlalchemy_url_connects(database_url: str) -> None:
    engine = sqlalchemy.create_engine(as_sqlalchemy_psycopg2_url(database_url))
    try:
        with engine.connect() as c:
            assert (
                c.execute(sqlalchemy.text("SELECT current_database()")).scalar()
                == (database_url.rsplit("/", 1)[1].split("?")[0])
            )
    finally:
        engine.dispose()


def test_resolve_warehouse_url_returns_a_given_url_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("an embedded server was started")

    monkeypatch.setattr(pgserver, "get_server", no_server)
    url = "postgresql://someone@warehouse.example:5432/bioloupe?sslmode=require"

    assert resolve_warehouse_url(url) == url
    assert resolve_warehouse_url(url, tmp_path / "pg") == url
    assert not (tmp_path / "pg").exists()


def test_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BIOLOUPE_HOME", raising=False)
    assert default_data_dir() == tmp_path.resolve() / ".bioloupe" / "postgres"

    monkeypatch.setenv("BIOLOUPE_HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path.resolve() / "home" / "postgres"


# ----------------------------------------------------------------------------- embedded server


@pytest.fixture
def embedded_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "pg"
    try:
        yield data_dir
    finally:
        stop_embedded_server(data_dir)


def _postmaster(url: str) -> int:
    with psycopg.connect(url) as c:
        data_dir = c.execute("SHOW data_directory").fetchone()
    assert data_dir is not None
    return int((Path(data_dir[0]) / "postmaster.pid").read_text().splitlines()[0])


def test_embedded_warehouse_starts_once_and_is_reused(embedded_dir: Path) -> None:
    url = resolve_warehouse_url(None, embedded_dir)

    with connect(url) as c:
        assert c.execute("SELECT current_database()").fetchone() == (WAREHOUSE_DATABASE,)
        assert migrate(c) == [m.version for m in bundled_migrations()]
        assert tables(c) >= WAREHOUSE_TABLES
    pid = _postmaster(url)

    assert resolve_warehouse_url(None, embedded_dir) == url
    assert _postmaster(url) == pid

    # Another process finds the same running server rather than starting a second one.
    code = (
        "import sys; from pathlib import Path; "
        "from bioloupe_data.warehouse.database import resolve_warehouse_url; "
        "print(resolve_warehouse_url(None, Path(sys.argv[1])))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(embedded_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert other.stdout.strip() == url
    assert _postmaster(url) == pid
    with connect(url) as c:
        assert migrate(c) == []


def test_embedded_warehouse_keeps_its_data_across_restarts(embedded_dir: Path) -> None:
    url = resolve_warehouse_url(None, embedded_dir)
    with connect(url) as c:
        migrate(c)
        c.execute("CREATE TABLE ops.marker (note text)")
        c.execute("INSERT INTO ops.marker VALUES ('kept')")

    stop_embedded_server(embedded_dir)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3).close()

    restarted = resolve_warehouse_url(None, embedded_dir)
    with connect(restarted) as c:
        assert migrate(c) == []
        assert c.execute("SELECT note FROM ops.marker").fetchall() == [("kept",)]


def test_embedded_url_works_for_dagster_storage(embedded_dir: Path) -> None:
    url = resolve_warehouse_url(None, embedded_dir)
    engine = sqlalchemy.create_engine(as_sqlalchemy_psycopg2_url(url))
    try:
        with engine.connect() as c:
            assert c.execute(sqlalchemy.text("SELECT current_database()")).scalar() == (
                WAREHOUSE_DATABASE
            )
    finally:
        engine.dispose()
