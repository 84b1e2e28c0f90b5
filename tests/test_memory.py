"""What the cyclic garbage collector has to walk while a command starts and while a range
lands."""

import gc
import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from bioloupe_data.memory import start_up
from bioloupe_data.pipelines.clinicaltrials import _to_document, land_range
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient

from conftest import CTGOV_DATA

PAGE_SIZE = 100


def _tracked(value: Any) -> int:
    """The objects in `value` the collector walks (CPython leaves dicts of plain values out)."""
    own = int(gc.is_tracked(value))
    if isinstance(value, dict):
        return own + sum(_tracked(v) for v in value.values())
    if isinstance(value, list):
        return own + sum(_tracked(v) for v in value)
    return own


def test_no_collection_walks_a_page_of_studies_while_a_range_lands(
    conn: psycopg.Connection, ctgov_replay: ReplayServer
) -> None:
    """A page of parsed studies is thousands of dicts and lists; a collection that starts while
    one is alive walks all of them (a tenth of a re-run's landing time)."""
    days = sorted(
        _to_document(json.loads(p.read_text())).partition_date for p in CTGOV_DATA.glob("NCT*.json")
    )
    start, end = days[0], days[-1]
    client = ClinicalTrialsClient.create(ctgov_replay.url, "all", page_size=PAGE_SIZE)
    youngest_at_collection: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":  # what was allocated since the last collection and still lives
            youngest_at_collection.append(len(gc.get_objects(0)))

    try:
        page = next(client.iter_pages(start, end)).studies
        page_objects = _tracked(page)
        del page
        gc.collect()
        gc.callbacks.append(record)
        try:
            landed = land_range(conn, client, start, end, run_id="t")
        finally:
            gc.callbacks.remove(record)
    finally:
        client.close()

    assert sum(d.landed for d in landed) > 3 * PAGE_SIZE  # several pages
    assert page_objects > 5_000
    assert youngest_at_collection  # the collector did run meanwhile...
    assert max(youngest_at_collection) < page_objects / 4  # ...but never over a page


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """A test of `start_up` freezes the test process's objects: they are unfrozen after it and
    the collector left as it was found."""
    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
        else:
            gc.disable()


def _collections_during(action: Callable[[], Any]) -> int:
    started: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(record)
    try:
        action()
    finally:
        gc.callbacks.remove(record)
    return len(started)


def test_start_up_runs_no_collection_and_sets_aside_what_it_allocated(
    collector_restored: None,
) -> None:
    """A command's start allocates what lives as long as the command; no collection walks it
    meanwhile, and none walks it afterwards."""
    kept: list[dict[str, list[int]]] = []

    def start() -> None:
        with start_up():
            kept.extend({"values": [i]} for i in range(200_000))

    assert _collections_during(start) == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() > 400_000  # the dicts and their lists
    assert not any(o is kept[0] for o in gc.get_objects())


def test_start_up_switches_the_collector_back_on_after_a_failure(
    collector_restored: None,
) -> None:
    with pytest.raises(RuntimeError), start_up():
        raise RuntimeError("the definitions did not load")
    assert gc.isenabled()


def test_start_up_leaves_a_collector_that_was_off_off(collector_restored: None) -> None:
    gc.disable()
    with start_up():
        pass
    assert not gc.isenabled()
