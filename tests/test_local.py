"""The local environment the command line prepares."""

import threading
import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from bioloupe_data import local

from warehouse_helpers import sessions_opened


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (
        "BIOLOUPE_DATABASE_URL",
        "BIOLOUPE_DAGSTER_STORAGE_URL",
        "DAGSTER_HOME",
        "DAGSTER_EVENT_BATCH_SIZE",
    ):
        # Recorded first, so whatever prepare() sets is undone after the test.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("BIOLOUPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_configured_server_starts_nothing_and_gets_a_dagster_home(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
    environment = local.prepare()
    assert not environment.embedded
    assert not (clean_env / "postgres").exists()
    assert environment.storage_url.startswith("postgresql+psycopg2://")
    assert (environment.dagster_home / "dagster.yaml").read_text() == local.LOCAL_DAGSTER_YAML
    # Range runs end with one event per partition: the CLI has Dagster write them in batches.
    assert local.os.environ["DAGSTER_EVENT_BATCH_SIZE"] == local.EVENT_BATCH_SIZE


def test_settings_the_user_made_are_kept(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "50")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mine"))
    environment = local.prepare()
    assert local.os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "50"
    assert environment.dagster_home == (tmp_path / "mine").resolve()
    assert not (tmp_path / "mine" / "dagster.yaml").exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_a_storage_url_naming_any_postgres_driver_opens_dagsters_storage(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, scheme: str
) -> None:
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, with which dagster-postgres's kept
    # connection (the command's, the webserver's) is closed as soon as it is opened.
    monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
    monkeypatch.setenv(
        "BIOLOUPE_DAGSTER_STORAGE_URL", scheme + "://" + database_url.split("://", 1)[1]
    )
    environment = local.prepare()
    assert environment.storage_url.startswith("postgresql+psycopg2://")
    with local.dagster_instance() as instance:
        assert instance.get_runs() == []


def test_a_storage_url_that_is_not_postgres_is_refused_by_name(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
    monkeypatch.setenv("BIOLOUPE_DAGSTER_STORAGE_URL", "mysql://dagster:s3cret@db:3306/dagster")
    with pytest.raises(ValueError, match=r"BIOLOUPE_DAGSTER_STORAGE_URL .* not mysql") as refused:
        local.prepare()
    assert "s3cret" not in str(refused.value)  # the URL may hold a password: only its scheme


def test_a_storage_url_without_a_scheme_is_refused_saying_so(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
    monkeypatch.setenv("BIOLOUPE_DAGSTER_STORAGE_URL", "dagster:s3cret@db:5432/dagster")
    with pytest.raises(
        ValueError, match=r"BIOLOUPE_DAGSTER_STORAGE_URL .* has no scheme"
    ) as refused:
        local.prepare()
    assert "s3cret" not in str(refused.value)


def _storage_reads(instance: dg.DagsterInstance, times: int) -> None:
    for _ in range(times):
        instance.get_runs(limit=1)
        instance.get_latest_materialization_event(dg.AssetKey(["core", "trials"]))


def test_the_commands_instance_keeps_its_storage_connection_instead_of_one_per_call(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
    local.prepare()
    reads = 20
    with dg.DagsterInstance.get() as plain:
        before = sessions_opened(database_url)
        _storage_reads(plain, reads)
        per_call = sessions_opened(database_url) - before - 1
    with local.dagster_instance() as pooled:
        before = sessions_opened(database_url)
        _storage_reads(pooled, reads)
        kept = sessions_opened(database_url) - before - 1
    assert per_call >= 2 * reads  # dagster-postgres's default: a connection per call
    assert kept <= 2


def _wait_for_a_session_waiting_on_a_lock(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    raise AssertionError("no session began waiting on the table being created")


class _CommandStarting:
    """`local.dagster_instance()` opened in a thread, as a command starting opens it."""

    def __init__(self) -> None:
        self.failures: list[BaseException] = []
        self.runs: list[int] = []
        self.thread = threading.Thread(target=self._open)
        self.thread.start()

    def _open(self) -> None:
        try:
            with local.dagster_instance() as instance:
                self.runs.append(len(instance.get_runs()))
        except BaseException as error:  # reported by assert_started
            self.failures.append(error)

    def assert_started(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        assert self.failures == []
        assert self.runs == [0]


def test_a_command_opening_storage_another_is_creating_waits_and_uses_it(
    dagster_home: Path, dagster_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands started together on a new storage database both create Dagster's tables; the
    one that loses a table to the other must still start."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get():
        pass
    # Another command has created the run tables and is creating `instance_info` right now.
    with psycopg.connect(dagster_storage_url, autocommit=True) as conn:
        conn.execute("DROP TABLE instance_info")
    other = psycopg.connect(dagster_storage_url)
    try:
        other.execute("CREATE TABLE instance_info (id BIGSERIAL PRIMARY KEY, run_storage_id TEXT)")
        command = _CommandStarting()
        _wait_for_a_session_waiting_on_a_lock(dagster_storage_url)
        other.commit()
        command.assert_started()
    finally:
        other.close()


def _retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == local.__name__]


def test_a_command_that_meets_another_commands_half_created_table_opens_storage_again(
    dagster_storage_url: str,
    dagster_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When another command commits a table between PostgreSQL's checks of its name and of its
    type, the loser sees "type already exists". Here a type of that name stands in for the
    other command's until the command has met it once."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with psycopg.connect(dagster_storage_url, autocommit=True) as conn:
        conn.execute("CREATE TYPE run_tags AS ENUM ()")
    with caplog.at_level("WARNING", logger=local.__name__):
        command = _CommandStarting()
        deadline = time.monotonic() + 60
        while command.thread.is_alive() and not _retries(caplog) and time.monotonic() < deadline:
            time.sleep(0.02)
        with psycopg.connect(dagster_storage_url, autocommit=True) as conn:
            conn.execute("DROP TYPE run_tags")
        command.assert_started()
    assert "42710" in _retries(caplog)[0]
