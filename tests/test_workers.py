"""Days written side by side on several connections: every day commits or rolls back on its
own, results reach the caller's thread, and a failure stops what follows without losing what
committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path

import psutil
import psycopg
import pytest

from bioloupe_data.pipelines import clinicaltrials
from bioloupe_data.pipelines.landing import LandedDay
from bioloupe_data.pipelines.workers import Aborted, DayWorkers, Feed, WorkerProcesses
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient, CutStudyPage, StudyPage
from bioloupe_data.warehouse.database import connect

Work = Callable[[psycopg.Connection], int]


@pytest.fixture
def conns(database_url: str) -> Iterator[list[psycopg.Connection]]:
    with connect(database_url) as first, connect(database_url) as second:
        first.execute("CREATE TABLE days (day int PRIMARY KEY, backend int NOT NULL)")
        first.execute("CREATE TABLE items (day int NOT NULL, item int NOT NULL)")
        yield [first, second]


def write_day(day: int, items: Iterable[int] = ()) -> Work:
    """A day's transaction: its row, then its items (a negative item is bad input)."""

    def work(conn: psycopg.Connection) -> int:
        with conn.transaction():
            conn.execute("INSERT INTO days VALUES (%s, pg_backend_pid())", (day,))
            for item in items:
                if item < 0:
                    raise ValueError(f"bad item on day {day}")
                conn.execute("INSERT INTO items VALUES (%s, %s)", (day, item))
        return day

    return work


def stored(conn: psycopg.Connection, table: str = "days") -> list[int]:
    column = "day" if table == "days" else "item"
    query = f"SELECT {column} FROM {table} ORDER BY 1"
    return [value for (value,) in conn.execute(query)]  # type: ignore[arg-type]


def test_every_day_commits_on_one_of_the_connections_and_is_reported_here(
    conns: list[psycopg.Connection],
) -> None:
    reported: list[tuple[int, str]] = []
    with DayWorkers(
        conns, lambda day: reported.append((day, threading.current_thread().name))
    ) as w:
        for day in range(12):
            w.submit(write_day(day, range(50)))

    assert sorted(day for day, _ in reported) == list(range(12))
    assert {thread for _, thread in reported} == {threading.current_thread().name}
    assert stored(conns[0]) == list(range(12))
    backends = conns[0].execute("SELECT count(DISTINCT backend) FROM days").fetchone()
    assert backends == (2,)  # both connections wrote days


def test_a_finished_day_is_reported_when_asked_without_another_submit(
    conns: list[psycopg.Connection],
) -> None:
    reported: list[int] = []
    with DayWorkers(conns, reported.append) as w:
        w.submit(write_day(0))
        deadline = time.monotonic() + 30
        while not reported and time.monotonic() < deadline:
            w.deliver_finished()
            time.sleep(0.01)
        assert reported == [0]
    assert reported == [0]


def test_a_landed_day_is_reported_as_it_commits_while_the_next_day_s_pages_are_read(
    conn: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    """A day's commit is told to the caller (who records it as materialized in Dagster) before
    the next page is read, not when the next day starts: a run killed in the middle of a long
    day would otherwise leave the day before stored but not recorded."""
    first, second = date(2024, 3, 1), date(2024, 3, 2)
    write_synthetic(tmp_path, 2, 30, seed=5, end=second, pubmed_per_day=0)
    pages_read = 0
    reported_after: dict[date, int] = {}  # day -> pages read when its commit was reported

    def on_day(day: LandedDay) -> None:
        reported_after[day.day] = pages_read

    with (
        ReplayServer(tmp_path) as server,
        connect(database_url) as other,
        connect(database_url) as observer,
    ):

        def first_day_committed() -> bool:
            query = "SELECT 1 FROM ops.partition_fetches WHERE partition_date = %s"
            return observer.execute(query, (first,)).fetchone() is not None

        client = ClinicalTrialsClient.create(server.url, "all", page_size=5)
        read_pages = client.iter_pages

        def counted_pages(
            start: date, end: date, *, cut: bool = False
        ) -> Iterator[StudyPage | CutStudyPage]:
            nonlocal pages_read
            for page in read_pages(start, end, cut=cut):
                if pages_read == 7:  # the first day was fed whole; let it commit
                    deadline = time.monotonic() + 30
                    while not first_day_committed() and time.monotonic() < deadline:
                        time.sleep(0.01)
                pages_read += 1
                yield page

        client.iter_pages = counted_pages  # type: ignore[method-assign]
        try:
            landed = clinicaltrials.land_range(
                [conn, other], client, first, second, run_id="t", on_day=on_day
            )
        finally:
            client.close()

    assert [d.landed for d in landed] == [30, 30]
    assert pages_read == 12
    assert reported_after[first] < pages_read  # ...not only once the second day was fed whole


def test_a_failing_day_rolls_back_alone_and_stops_what_follows(
    conns: list[psycopg.Connection],
) -> None:
    reported: list[int] = []
    day_3_failed = threading.Event()

    def failing_day_3(conn: psycopg.Connection) -> int:
        try:
            return write_day(3, [1, -1])(conn)
        finally:
            day_3_failed.set()

    def after_day_3_failed(day: int) -> Work:
        # Only the day already in flight beside day 3 may start before its failure is seen;
        # holding later days until day 3 has failed makes that the only order possible.
        def work(conn: psycopg.Connection) -> int:
            assert day_3_failed.wait(timeout=30)
            return write_day(day, [1])(conn)

        return work

    with (
        pytest.raises(ValueError, match="bad item on day 3"),
        DayWorkers(conns, reported.append) as w,
    ):
        for day in range(10):
            if day < 3:
                w.submit(write_day(day, [1]))
            else:
                w.submit(failing_day_3 if day == 3 else after_day_3_failed(day))

    days = stored(conns[0])
    assert 3 not in days
    assert set(range(3)) <= set(days)  # what committed before stays
    assert max(days) <= 4  # nothing was started once day 3 had failed
    assert sorted(reported) == days


def test_a_reader_that_fails_mid_day_leaves_nothing_of_that_day(
    conns: list[psycopg.Connection],
) -> None:
    reported: list[int] = []

    def source() -> Iterator[int]:
        yield from range(100)
        raise ConnectionError("the source went away")

    with pytest.raises(ConnectionError), DayWorkers(conns, reported.append) as w:
        w.submit(write_day(0, [1, 2]))
        feed: Feed[int] = Feed(maxsize=10)
        w.submit(write_day(1, feed))
        try:
            for item in source():
                feed.put(item)
            feed.close()
        except BaseException:
            feed.abort()
            raise

    assert stored(conns[0]) == [0] == reported
    assert stored(conns[0], "items") == [1, 2]


def test_a_writer_that_fails_mid_day_stops_the_reader_with_the_writer_s_error(
    conns: list[psycopg.Connection],
) -> None:
    with (
        pytest.raises(ValueError, match="bad item on day 1"),
        DayWorkers(conns, lambda _: None) as w,
    ):
        feed: Feed[int] = Feed(maxsize=5)
        w.submit(write_day(1, feed))
        with pytest.raises(Aborted):
            for item in [1, 2, -1, *range(3, 10_000)]:  # far more than the feed holds
                feed.put(item)

    assert stored(conns[0]) == []


def _insert_day_in_process(conn: psycopg.Connection, day: int) -> tuple[int, int]:
    """A day's transaction in a worker process (module level: the worker imports it by name);
    a negative day fails after its row is written."""
    with conn.transaction():
        conn.execute("INSERT INTO days VALUES (%s, pg_backend_pid())", (day,))
        if day < 0:
            raise psycopg.errors.RaiseException(f"day {day} refused")
    return os.getpid(), day


def test_worker_processes_write_days_on_connections_of_their_own(
    conns: list[psycopg.Connection], database_url: str
) -> None:
    reported: list[int] = []
    pids: set[int] = set()

    def in_process(day: int) -> Work:
        def work(conn: psycopg.Connection) -> int:
            pid, written = processes.run(_insert_day_in_process, day)
            pids.add(pid)
            return written

        return work

    with WorkerProcesses(2, database_url) as processes, DayWorkers(conns, reported.append) as w:
        for day in range(8):
            w.submit(in_process(day))

    assert sorted(reported) == list(range(8))
    assert stored(conns[0]) == list(range(8))
    assert os.getpid() not in pids and len(pids) == 2
    callers = {conn.info.backend_pid for conn in conns}
    writers = {backend for (backend,) in conns[0].execute("SELECT DISTINCT backend FROM days")}
    assert len(writers) == 2 and not writers & callers  # the workers' own connections


def test_a_day_failing_in_a_worker_process_rolls_back_and_raises_its_error_here(
    conns: list[psycopg.Connection], database_url: str
) -> None:
    with (
        pytest.raises(psycopg.errors.RaiseException, match="day -1 refused"),
        WorkerProcesses(2, database_url) as processes,
    ):
        processes.run(_insert_day_in_process, 1)
        processes.run(_insert_day_in_process, -1)

    assert stored(conns[0]) == [1]


def test_a_worker_process_that_cannot_connect_raises_the_connection_error_here(
    database_url: str,
) -> None:
    unreachable = database_url.rsplit("/", 1)[0] + "/no_such_database"
    with (
        pytest.raises(psycopg.OperationalError, match="no_such_database"),
        WorkerProcesses(1, unreachable) as processes,
    ):
        processes.run(_insert_day_in_process, 1)


def test_worker_processes_carry_on_through_ctrl_c() -> None:
    with WorkerProcesses(2) as processes:
        assert processes.map(abs, [-1, -2, -3, -4]) == [1, 2, 3, 4]
        workers = [
            child
            for child in psutil.Process().children()
            if "spawn_main" in " ".join(child.cmdline())
        ]
        assert len(workers) == 2
        for worker in workers:
            os.kill(worker.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends the group

        assert processes.map(abs, [-5, -6]) == [5, 6]  # the caller decides when they stop
        assert all(worker.is_running() for worker in workers)


# A process that starts two workers and then waits to be killed.
_PARENT = """
import sys, time
from bioloupe_data.pipelines.workers import WorkerProcesses
with WorkerProcesses(2) as processes:
    processes.map(abs, [-1, -2, -3, -4])
    print("ready", flush=True)
    time.sleep(120)
"""


def test_worker_processes_end_when_the_process_that_started_them_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        workers = psutil.Process(parent.pid).children(recursive=True)
        assert len(workers) >= 2
        parent.kill()
        parent.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert alive == []
    finally:
        if parent.poll() is None:
            parent.kill()
