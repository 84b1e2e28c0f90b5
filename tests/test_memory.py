"""What the cyclic garbage collector has to walk while a range lands."""

import gc
import json
from typing import Any

import psycopg

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
