"""Bad records, made by hypothesis from the real ones and served over HTTP by the replay server
beside good ones: deletions, wrong types, NUL characters, huge strings, invalid UTF-8, malformed
dates and a study listed twice in a page. A day never fails because of them: each record the API
sends is landed or dead-lettered with its reason, each landed one is normalized or
dead-lettered, and the good records of the same page land whole."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC, land_range
from bioloupe_data.pipelines.normalize import normalize_days
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.documents import storable_text
from bioloupe_data.warehouse.migrate import migrate

from conftest import CTGOV_DATA, create_database, drop_database, url_for

DAY = date(2025, 1, 15)
GOOD, BAD = 4, 3
REAL = sorted(CTGOV_DATA.glob("NCT*.json"))
HUGE = 10 * 1024 * 1024
WRONG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
MALFORMED_DATES = st.sampled_from(
    ["2025-13-40", "2025-02-30", "yesterday", "", "2025", "15/01/2025", "0000-00-00", "2025-1-5"]
)


@dataclass(frozen=True)
class Fuzz:
    folder: Path
    server: ReplayServer
    url: str


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory, admin_url: str) -> Iterator[Fuzz]:
    folder = tmp_path_factory.mktemp("fuzz")
    name = create_database(admin_url)
    try:
        url = url_for(admin_url, name)
        with connect(url) as conn:
            migrate(conn)
        with ReplayServer(folder, faults="duplicate:*") as server:
            yield Fuzz(folder, server, url)
    finally:
        drop_database(admin_url, name)


def _study(index: int) -> dict[str, Any]:
    study = json.loads(REAL[index].read_text())
    study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"] = str(DAY)
    return study


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a study below protocolSection and derivedSection."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _parent(study: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = study
    for step in path[:-1]:
        node = node[step]
    return node


@dataclass(frozen=True)
class Defect:
    """What is wrong with one record; small, so that hypothesis can show it."""

    kind: str
    path: tuple[Any, ...] = ()
    value: Any = None

    def apply(self, study: dict[str, Any]) -> dict[str, Any]:
        module = study["protocolSection"]["identificationModule"]
        if self.kind == "huge":
            module["officialTitle"] = "x" * HUGE
        elif (
            self.kind == "invalid_utf8"
        ):  # a marker _write_page turns into bytes that are not UTF-8
            module["briefTitle"] = "INVALID_UTF8_MARKER " + str(module.get("briefTitle"))
        elif self.kind == "delete":
            del _parent(study, self.path)[self.path[-1]]
        elif self.kind == "nul":
            parent = _parent(study, self.path)
            current = parent[self.path[-1]]
            parent[self.path[-1]] = (
                current[:1] + "\x00" + current[1:] if isinstance(current, str) else "\x00"
            )
        else:  # a wrong type, or a malformed date
            _parent(study, self.path)[self.path[-1]] = self.value
        return study


@st.composite
def defects(draw: st.DrawFn, index: int) -> Defect:
    study = _study(index)
    paths = list(_paths(study))
    kind = draw(
        st.sampled_from(["delete", "wrong_type", "nul", "malformed_date", "huge", "invalid_utf8"])
    )
    if kind == "malformed_date":
        dates = [p for p in paths if str(p[-1]).lower().endswith("date")]
        return Defect(kind, draw(st.sampled_from(dates)), draw(MALFORMED_DATES))
    if kind in ("huge", "invalid_utf8"):
        return Defect(kind)
    value = draw(WRONG_VALUES) if kind == "wrong_type" else None
    return Defect(kind, draw(st.sampled_from(paths)), value)


def _write_page(folder: Path, studies: list[dict[str, Any]]) -> None:
    shutil.rmtree(folder)
    folder.mkdir()
    text = json.dumps({"studies": studies}, ensure_ascii=False)
    (folder / "page.json").write_bytes(
        text.encode("utf-8").replace(b"INVALID_UTF8_MARKER", b"\xff\xfe invalid")
    )


def _reset(conn: psycopg.Connection) -> None:
    tables = ["raw.documents", "ops.dead_letters", "ops.partition_fetches", "ops.normalized_days"]
    tables += [f"core.{t}" for t in TRIALS_SPEC.tables]
    conn.execute("TRUNCATE " + ", ".join(tables) + " CASCADE")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_bad_records_are_dead_lettered_and_the_good_ones_of_the_page_land(
    fuzz: Fuzz, data: st.DataObject
) -> None:
    good = [_study(i) for i in range(GOOD)]
    bad = [
        data.draw(defects(GOOD + i), label=f"defect {i}").apply(_study(GOOD + i))
        for i in range(BAD)
    ]
    _write_page(fuzz.folder, [*good, *bad])
    fuzz.server.reload()
    served = _served(fuzz.server.url)
    cut_pages = data.draw(st.booleans(), label="pages cut (a lookup connection)")
    with connect(fuzz.url) as conn, connect(fuzz.url) as lookup:
        _reset(conn)
        (landed_day,) = _land(fuzz, conn, lookup if cut_pages else None)
        # Landed again as the landing asset lands it (pages cut, stored studies recognised by
        # their bytes): the same records come back, nothing is written again.
        (again,) = _land(fuzz, conn, lookup)
        (normalized_day,) = normalize_days(conn, TRIALS_SPEC, [DAY], run_id="fuzz")
        letters = conn.execute(
            "SELECT doc_id, stage, reason, payload_excerpt FROM ops.dead_letters"
        ).fetchall()
        landed = {doc_id for (doc_id,) in conn.execute("SELECT doc_id FROM raw.documents")}
        trials = {nct_id for (nct_id,) in conn.execute("SELECT nct_id FROM core.trials")}

    # The page listed one study twice (the `duplicate` fault; the replay server leaves out a
    # record without a protocol section or an NCT id), and every record the API sent was
    # landed or dead-lettered with a reason and an excerpt.
    assert landed_day.received == len(served) >= GOOD + 1
    assert all(reason and excerpt is not None for _, _, reason, excerpt in letters)
    landing_letters = {doc_id for doc_id, stage, _, _ in letters if stage == "landing"}
    for study in served:
        assert _nct_id(study) in landed | landing_letters
    assert landed_day.landed == len(landed)
    assert (again.received, again.landed) == (landed_day.received, landed_day.landed)
    assert again.counts.inserted == again.counts.updated == 0
    assert again.dead_letters == landed_day.dead_letters
    # Every landed document was normalized or dead-lettered.
    normalize_letters = {doc_id for doc_id, stage, _, _ in letters if stage == "normalize"}
    assert landed == trials | normalize_letters
    assert normalized_day.dead_letters == len(normalize_letters)
    # The good records of the page landed whole.
    assert {_nct_id(study) for study in good} <= trials


def _land(fuzz: Fuzz, conn: psycopg.Connection, lookup: psycopg.Connection | None) -> Any:
    client = ClinicalTrialsClient.create(fuzz.server.url, "all")
    try:
        return land_range(conn, client, DAY, DAY, run_id="fuzz", lookup=lookup)
    finally:
        client.close()


def _nct_id(study: Any) -> str:
    """The key a record is landed or dead-lettered under (as PostgreSQL can store it)."""
    return storable_text(study["protocolSection"]["identificationModule"]["nctId"])


def _served(url: str) -> list[Any]:
    """The records the API sends for the day, as the client reads them."""
    client = ClinicalTrialsClient.create(url, "all")
    try:
        return [study for page in client.iter_pages(DAY, DAY) for study in page.studies]
    finally:
        client.close()
