"""Order, replays and concurrency do not change the warehouse: days landed and normalized in any
order, an older snapshot replayed after a newer one, and four overlapping range backfills at
once all leave the same digest as one ordered, sequential pass."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from bench._dagster_dev import clean_environment
from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC, land_range
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.pipelines.normalize import normalize_days
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.digest import warehouse_digest
from bioloupe_data.warehouse.migrate import migrate

from conftest import create_database, dagster_yaml, drop_database, url_for
from snapshots import Snapshots, write_snapshots

CLI = str(Path(sys.executable).with_name("bioloupe-data"))
END = date(2024, 3, 16)
LANDED = "raw/clinicaltrials_gov,core/trials"


@dataclass(frozen=True)
class Served:
    snapshots: Snapshots
    old_url: str
    new_url: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    snapshots = write_snapshots(tmp_path_factory.mktemp("snapshots"), 12, 40, END)
    with ReplayServer(snapshots.old) as old, ReplayServer(snapshots.new) as new:
        yield Served(snapshots, old.url, new.url)


def _digest(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return warehouse_digest(conn)


def _land_and_normalize(conn: psycopg.Connection, base_url: str, start: date, end: date) -> None:
    client = ClinicalTrialsClient.create(base_url, "all")
    try:
        land_range(conn, client, start, end, run_id="convergence")
    finally:
        client.close()
    normalize_days(conn, TRIALS_SPEC, days_between(start, end), run_id="convergence")


@pytest.fixture(scope="module")
def ordered(served: Served, admin_url: str) -> dict[str, str]:
    """One ordered pass: the old snapshot's range, then the new one's."""
    name = create_database(admin_url)
    try:
        url = url_for(admin_url, name)
        first, last = served.snapshots.first_day, served.snapshots.last_day
        with connect(url) as conn:
            migrate(conn)
            _land_and_normalize(conn, served.old_url, first, last)
            _land_and_normalize(conn, served.new_url, first, last)
        digest = _digest(url)
        with psycopg.connect(url) as conn:
            amended = conn.execute(
                "SELECT count(*) FROM core.trials WHERE brief_title LIKE '%(amended)'"
            ).fetchone()
        assert amended == (len(served.snapshots.changed),)
        return digest
    finally:
        drop_database(admin_url, name)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_days_in_any_order_with_old_snapshots_replayed_give_the_same_warehouse(
    served: Served, ordered: dict[str, str], database_url: str, seed: int
) -> None:
    days = days_between(served.snapshots.first_day, served.snapshots.last_day)
    steps = [(day, url) for day in days for url in (served.old_url, served.new_url)]
    random.Random(seed).shuffle(steps)
    # Some old snapshot of a day comes after its new one: a replayed older version.
    position = {step: i for i, step in enumerate(steps)}
    assert any(position[(d, served.old_url)] > position[(d, served.new_url)] for d in days)
    with connect(database_url) as conn:
        migrate(conn)
        for day, url in steps:
            _land_and_normalize(conn, url, day, day)

    assert _digest(database_url) == ordered


def test_four_overlapping_backfills_at_once_converge_on_one_sequential_pass(
    served: Served, ordered: dict[str, str], admin_url: str, tmp_path: Path
) -> None:
    first = served.snapshots.first_day
    day = [first + timedelta(days=i) for i in range(12)]
    backfills = [  # overlapping ranges; an old snapshot served while a newer one lands
        (served.new_url, day[0], day[11]),
        (served.old_url, day[0], day[8]),
        (served.new_url, day[3], day[11]),
        (served.old_url, day[2], day[11]),
    ]
    names = [create_database(admin_url) for _ in range(2)]
    warehouse, storage = (url_for(admin_url, name) for name in names)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml(storage))
    try:
        with connect(warehouse) as conn:
            migrate(conn)  # once, before the four start
        processes = [
            subprocess.Popen(
                [CLI, "backfill", "--from", str(start), "--to", str(end), "--select", LANDED],
                env={
                    **clean_environment(),
                    "BIOLOUPE_DATABASE_URL": warehouse,
                    "DAGSTER_HOME": str(home),
                    "CTGOV_BASE_URL": url,
                    "CTGOV_SCOPE": "all",
                    "BIOLOUPE_START_DATE": "2024-01-01",
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for url, start, end in backfills
        ]
        outputs = [process.communicate(timeout=400)[0] for process in processes]
        for process, output in zip(processes, outputs, strict=True):
            assert process.returncode == 0, output[-3000:]
            assert "deadlock" not in output.lower()

        assert _digest(warehouse) == ordered
    finally:
        for name in names:
            drop_database(admin_url, name)
