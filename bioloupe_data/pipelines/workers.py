"""Days processed side by side: each day's transaction runs on one of several connections, in
a thread of its own, so that the Python work of one day (parsing, deriving) overlaps with the
server's work on another (COPY, merges). Days stay independent units: each commits or rolls
back on its own, and results reach the caller's thread as days commit.

Landing a day waits mostly on PostgreSQL and the network (the GIL is released then), so threads
suffice. Deriving a day's documents holds the GIL most of the time, so a long range of them
runs its days' transactions in `WorkerProcesses`: worker processes with a connection of their own
(a connection cannot cross a process boundary), driven by the same threads.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

import psycopg

from bioloupe_data.warehouse.database import connect

Result = TypeVar("Result")
Item = TypeVar("Item")


class DayWorkers(Generic[Result]):
    """Run units of work on a set of connections, one unit per connection at a time.

    `submit` blocks while every connection is busy; finished results are passed to
    `on_result` in the caller's thread, as units finish (those found finished together in the
    order they were submitted), by `submit`, `deliver_finished` and on leaving the `with`
    block.
    After a unit fails, the units in flight finish, their results are delivered, and the first
    error is raised; nothing more is started.
    """

    def __init__(
        self,
        connections: Sequence[psycopg.Connection],
        on_result: Callable[[Result], None],
    ) -> None:
        if not connections:
            raise ValueError("at least one connection is needed")
        self._free: list[psycopg.Connection] = list(connections)
        self._on_result = on_result
        self._pool = ThreadPoolExecutor(
            max_workers=len(connections), thread_name_prefix="bioloupe-day"
        )
        self._running: dict[Future[Result], psycopg.Connection] = {}
        self._order: dict[Future[Result], int] = {}
        self._error: BaseException | None = None

    def __enter__(self) -> DayWorkers[Result]:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            while self._running:
                self._collect(block=True)
        finally:
            self._pool.shutdown(wait=True)
        # A feed aborted because its writer failed: the writer's error is the one to tell.
        if self._error is not None and (exc is None or isinstance(exc, Aborted)):
            raise self._error

    def submit(self, work: Callable[[psycopg.Connection], Result]) -> None:
        self._collect(block=False)
        while not self._free and self._error is None:
            self._collect(block=True)
        if self._error is not None:
            raise self._error
        conn = self._free.pop()
        future = self._pool.submit(work, conn)
        self._running[future] = conn
        self._order[future] = len(self._order)

    def deliver_finished(self) -> None:
        """Pass the results of the units finished so far to `on_result`, without waiting; a
        caller busy elsewhere between submits calls it so that results are not held back."""
        self._collect(block=False)

    def _collect(self, *, block: bool) -> None:
        """Deliver the results of finished units; with `block`, wait for one to finish."""
        done = {future for future in self._running if future.done()}
        if not done and block and self._running:
            done, _ = wait(self._running, return_when=FIRST_COMPLETED)
        for future in sorted(done, key=lambda f: self._order[f]):
            self._free.append(self._running.pop(future))
            error = future.exception()
            if error is not None:
                self._error = self._error or error
            else:
                self._on_result(future.result())


class Aborted(Exception):
    """The other side of a `Feed` gave up."""


class Feed(Generic[Item]):
    """A bounded hand-over of one day's items from the thread reading the source to the thread
    writing the day. Either side can abort: the writer's transaction then rolls back, or the
    reader stops waiting."""

    _END = object()

    def __init__(self, maxsize: int = 2000) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize)
        self._aborted = threading.Event()

    def put(self, item: Item) -> None:
        while True:
            if self._aborted.is_set():
                raise Aborted("the writer of this day stopped")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        self.put(self._END)  # type: ignore[arg-type]

    def abort(self) -> None:
        self._aborted.set()

    def __iter__(self) -> Iterator[Item]:
        try:
            while True:
                if self._aborted.is_set():
                    raise Aborted("the reader of this day stopped")
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is self._END:
                    return
                yield item  # type: ignore[misc]
        except BaseException:
            self._aborted.set()  # the writer failed: the reader must not block on a full queue
            raise


# A worker process's warehouse and its connection, opened on first use: an error connecting
# then reaches the caller like any other error of the work, not as a broken pool.
_worker_url: str | None = None
_worker_connection: psycopg.Connection | None = None


def _start_worker(url: str | None) -> None:
    global _worker_url
    _worker_url = url
    # The caller handles Ctrl-C and stops the workers; they must not die mid-day on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def _exit_with_parent() -> None:
    """End this worker when the process that started it is gone (killed, crashed): otherwise
    it would wait for work forever, holding its connection, or commit its day after the run
    was given up. Its connection closing rolls back a day in flight."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def _with_worker_connection(work: Callable[..., Result], *args: Any) -> Result:
    global _worker_connection
    if _worker_connection is None:
        if _worker_url is None:
            raise RuntimeError("worker processes started without a warehouse URL")
        opened: AbstractContextManager[psycopg.Connection] = connect(_worker_url)
        _worker_connection = opened.__enter__()
        atexit.register(opened.__exit__, None, None, None)
    return work(_worker_connection, *args)


class WorkerProcesses:
    """`count` worker processes for Python work that holds the GIL; given `url`, each has its
    own connection to that warehouse.

    `run(work, *args)` calls `work(connection, *args)` in a free worker and returns its result
    (or raises its error); called from several threads, the workers run side by side.
    `map(fn, items)` is `[fn(item) for item in items]` spread over the workers. Functions and
    arguments are pickled: module-level functions and plain values. Workers are spawned, not
    forked: the caller's process holds threads and open connections a fork would copy."""

    def __init__(self, count: int, url: str | None = None) -> None:
        if count < 1:
            raise ValueError("at least one worker process is needed")
        self.count = count
        self._pool = ProcessPoolExecutor(
            max_workers=count,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(url,),
        )

    def __enter__(self) -> WorkerProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self, work: Callable[..., Result], *args: Any) -> Result:
        return self._pool.submit(_with_worker_connection, work, *args).result()

    def map(self, fn: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
        # A few chunks a worker: large enough to pickle little, small enough to even out.
        chunksize = max(1, len(items) // (self.count * 4))
        return list(self._pool.map(fn, items, chunksize=chunksize))
