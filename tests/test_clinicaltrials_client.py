"""The ClinicalTrials.gov client over real HTTP: `CTGOV_SCOPE` semantics, the request it sends,
paging with `pageToken`, and date-range results against the replay server on the real records.

Expected studies are computed here from the complete records in ``shared/realdata/ctgov``
(one ``NCT*.json`` file per study), not through the replay server's store. The exact wire
parameters and paging edge cases are checked with a small scripted server in this module.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.clinicaltrials.client import (
    MAX_PAGE_SIZE,
    ONCOLOGY_CONDITION_QUERY,
    PUBLIC_BASE_URL,
    PUBLIC_REQUESTS_PER_SECOND,
    ClinicalTrialsClient,
    StudyPage,
    condition_query,
)
from bioloupe_data.sources.http import SourceError, is_local

from conftest import CTGOV_DATA

STUDIES_PATH = "/api/v2/studies"
# Terms a cancer trial's conditions, keywords or condition MeSH terms are expected to carry.
CANCER_WORDS = (
    "cancer",
    "neoplasm",
    "tumor",
    "carcinoma",
    "lymphoma",
    "leukemia",
    "myeloma",
    "melanoma",
    "sarcoma",
    "glioma",
    "blastoma",
    "mesothelioma",
    "malignan",
)
FAST = {"backoff_initial": 0.01, "backoff_max": 0.02, "timeout_seconds": 5.0}


# --- the real records -----------------------------------------------------------------------------


def _nct_id(study: dict[str, Any]) -> str:
    return study["protocolSection"]["identificationModule"]["nctId"]


def _last_update(study: dict[str, Any]) -> date:
    struct = study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]
    return date.fromisoformat(struct["date"])


def _condition_text(study: dict[str, Any]) -> str:
    """Conditions, keywords and condition MeSH terms (with ancestors), lower-cased."""
    conditions = study["protocolSection"].get("conditionsModule", {})
    browse = study.get("derivedSection", {}).get("conditionBrowseModule", {})
    values = [*conditions.get("conditions", []), *conditions.get("keywords", [])]
    values += [
        item.get("term", "") for group in ("meshes", "ancestors") for item in browse.get(group, [])
    ]
    return "\n".join(values).lower()


@pytest.fixture(scope="module")
def records() -> dict[str, dict[str, Any]]:
    assert CTGOV_DATA.is_dir(), f"real data not found at {CTGOV_DATA}"
    studies = [orjson.loads(path.read_bytes()) for path in sorted(CTGOV_DATA.glob("NCT*.json"))]
    return {_nct_id(study): study for study in studies}


def _expected_ids(records: dict[str, dict[str, Any]], start: date, end: date) -> set[str]:
    return {nct for nct, study in records.items() if start <= _last_update(study) <= end}


def _collect(
    client: ClinicalTrialsClient, start: date, end: date, page_size: int = MAX_PAGE_SIZE
) -> tuple[list[StudyPage], list[dict[str, Any]]]:
    pages = list(client.iter_pages(start, end, page_size))
    return pages, [study for page in pages for study in page.studies]


def _studies_requests(server: ReplayServer) -> int:
    return server.requests_by_path().get(STUDIES_PATH, 0)


@pytest.fixture
def all_scope(ctgov_replay: ReplayServer) -> Iterator[ClinicalTrialsClient]:
    client = ClinicalTrialsClient.create(ctgov_replay.url, "all", **FAST)
    yield client
    client.close()


# --- a scripted server that records the query of every request ------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], scripted: ScriptedApi) -> None:
        super().__init__(address, _Handler)
        self.scripted = scripted


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_GET(self) -> None:
        target = urlsplit(self.path)
        query = dict(parse_qsl(target.query, keep_blank_values=True))
        code, payload = self.server.scripted.take(target.path, query)
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `ScriptedApi.requests`."""


class ScriptedApi:
    """Answers request n with reply n of the script (the last one repeats): a JSON payload (or
    a body's bytes as they are), or a `(status, payload)` pair."""

    def __init__(self, script: Sequence[Any], host: str = "127.0.0.1") -> None:
        self.script = list(script)
        self.requests: list[tuple[str, dict[str, str], float]] = []
        self._lock = threading.Lock()
        self._httpd = _HTTPServer((host, 0), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def take(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((path, query, time.monotonic()))
            reply = self.script[min(len(self.requests), len(self.script)) - 1]
        return reply if isinstance(reply, tuple) else (200, reply)

    @property
    def queries(self) -> list[dict[str, str]]:
        return [query for _, query, _ in self.requests]

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ScriptedApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._thread.join()
        self._httpd.server_close()


def _page(ids: Sequence[str], token: str | None = None, total: int | None = None) -> Any:
    payload: dict[str, Any] = {"studies": [{"nct": nct} for nct in ids]}
    if token:
        payload["nextPageToken"] = token
    if total is not None:
        payload["totalCount"] = total
    return payload


# --- CTGOV_SCOPE ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "query"),
    [
        (None, ONCOLOGY_CONDITION_QUERY),
        ("", ONCOLOGY_CONDITION_QUERY),
        ("   ", ONCOLOGY_CONDITION_QUERY),
        ("all", None),
        ("ALL", None),
        (" All ", None),
        ("breast cancer", "breast cancer"),
        ("  lung cancer OR mesothelioma ", "lung cancer OR mesothelioma"),
        ("allergy", "allergy"),
    ],
)
def test_condition_query(scope: str | None, query: str | None) -> None:
    assert condition_query(scope) == query
    client = ClinicalTrialsClient.create("http://127.0.0.1:9", scope)
    assert client.query == query
    client.close()


def test_oncology_query_names_the_main_cancer_families() -> None:
    terms = {term.strip().lower() for term in ONCOLOGY_CONDITION_QUERY.split(" OR ")}
    assert {"cancer", "neoplasm", "tumor", "carcinoma", "lymphoma", "leukemia"} <= terms


# --- what the client sends ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "cond"),
    [(None, ONCOLOGY_CONDITION_QUERY), ("all", None), ("breast cancer", "breast cancer")],
)
def test_paged_requests_carry_the_range_sort_size_count_and_token(
    scope: str | None, cond: str | None
) -> None:
    script = [
        _page(["NCT01", "NCT02"], token="tok-1", total=5),
        _page(["NCT03", "NCT04"], token="tok-2"),
        _page(["NCT05"]),
    ]
    with ScriptedApi(script) as api:
        client = ClinicalTrialsClient.create(api.url, scope, **FAST)
        pages = list(client.iter_pages(date(2019, 1, 1), date(2023, 12, 31)))
        client.close()

    assert [page.page_number for page in pages] == [0, 1, 2]
    assert [[s["nct"] for s in page.studies] for page in pages] == [
        ["NCT01", "NCT02"],
        ["NCT03", "NCT04"],
        ["NCT05"],
    ]
    assert pages[0].total_count == 5
    expected = {
        "format": "json",
        "filter.advanced": "AREA[LastUpdatePostDate]RANGE[2019-01-01,2023-12-31]",
        "sort": "LastUpdatePostDate:asc",
        "pageSize": "1000",
        "countTotal": "true",
    }
    if cond is not None:
        expected["query.cond"] = cond
    assert [path for path, _, _ in api.requests] == [STUDIES_PATH] * 3
    assert api.queries == [
        expected,
        {**expected, "pageToken": "tok-1"},
        {**expected, "pageToken": "tok-2"},
    ]


def test_the_next_page_is_requested_while_the_caller_still_holds_this_one() -> None:
    script = [
        _page(["NCT01"], token="tok-1", total=3),
        _page(["NCT02"], token="tok-2"),
        _page(["NCT03"]),
    ]
    with ScriptedApi(script) as api:
        client = ClinicalTrialsClient.create(api.url, "all", **FAST)
        pages = client.iter_pages(date(2024, 1, 1), date(2024, 12, 31))
        first = next(pages)
        deadline = time.monotonic() + 5.0
        while len(api.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        requested_while_held = [query.get("pageToken") for query in api.queries]
        rest = list(pages)
        client.close()
    assert [s["nct"] for s in first.studies] == ["NCT01"]
    assert requested_while_held == [None, "tok-1"]
    assert [s["nct"] for page in rest for s in page.studies] == ["NCT02", "NCT03"]
    # Nothing is requested past the last page.
    assert [query.get("pageToken") for query in api.queries] == [None, "tok-1", "tok-2"]


@pytest.mark.parametrize(
    ("asked", "sent"), [(1, "1"), (250, "250"), (1000, "1000"), (5000, "1000")]
)
def test_page_size_is_capped_at_the_api_maximum(asked: int, sent: str) -> None:
    with ScriptedApi([_page([], total=0)]) as api:
        client = ClinicalTrialsClient.create(api.url, "all", **FAST)
        list(client.iter_pages(date(2024, 1, 1), date(2024, 1, 31), page_size=asked))
        client.close()
    assert [query["pageSize"] for query in api.queries] == [sent]


def _paged_through(script: Sequence[Any]) -> tuple[list[str], list[str | None], list[str]]:
    """The studies a range yields from `script`, the page token of every request, and the
    retries' causes."""
    with ScriptedApi(script) as api:
        client = ClinicalTrialsClient.create(api.url, "all", **FAST)
        pages = list(client.iter_pages(date(2024, 1, 1), date(2024, 12, 31)))
        client.close()
    return (
        [s["nct"] for page in pages for s in page.studies],
        [query.get("pageToken") for query in api.queries],
        [event.cause for event in client.http.retries],
    )


def test_a_transient_failure_mid_paging_retries_the_same_page() -> None:
    studies, tokens, causes = _paged_through(
        [_page(["NCT01"], token="tok-1", total=2), (503, {"error": "busy"}), _page(["NCT02"])]
    )
    assert studies == ["NCT01", "NCT02"]
    assert tokens == [None, "tok-1", "tok-1"]
    assert causes == ["HTTP 503"]


def test_a_page_token_expiring_while_a_damaged_page_is_fetched_again_restarts_the_query() -> None:
    studies, tokens, causes = _paged_through(
        [
            _page(["NCT01"], token="tok-1", total=2),
            b'{"studies":[{"nct"',  # cut short on the way
            (400, {"error": "invalid pageToken"}),  # the token expired meanwhile
            _page(["NCT01"], token="tok-2", total=2),
            _page(["NCT02"]),
        ]
    )
    assert studies == ["NCT01", "NCT02"]
    assert tokens == [None, "tok-1", "tok-1", None, "tok-2"]
    assert len(causes) == 2
    assert causes[0].startswith("invalid JSON body (")
    assert "page token rejected" in causes[1]


def test_a_rejected_query_raises_a_source_error_naming_status_and_path() -> None:
    script = [(400, {"error": "unsupported filter.advanced expression", "status": 400})]
    with ScriptedApi(script) as api:
        client = ClinicalTrialsClient.create(api.url, "all", **FAST)
        with pytest.raises(SourceError) as raised:
            list(client.iter_pages(date(2024, 1, 1), date(2024, 1, 31)))
        client.close()
    message = str(raised.value)
    assert message.startswith("clinicaltrials_gov: HTTP 400 for ")
    assert f"{api.url}{STUDIES_PATH}?" in message
    assert "unsupported filter.advanced expression" in message
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    "payload",
    [[], {"items": []}, {"studies": None}, {"studies": {"NCT01": {}}}, "studies"],
    ids=["list", "no-studies", "null-studies", "dict-studies", "string"],
)
def test_an_unexpected_response_shape_raises_a_source_error(payload: Any) -> None:
    with ScriptedApi([payload]) as api:
        client = ClinicalTrialsClient.create(api.url, "all", **FAST)
        with pytest.raises(SourceError) as raised:
            list(client.iter_pages(date(2024, 1, 1), date(2024, 1, 31)))
        client.close()
    assert str(raised.value) == (
        "clinicaltrials_gov: unexpected response shape for 2024-01-01..2024-01-31"
    )


def test_data_timestamp_reads_the_version_endpoint() -> None:
    with ScriptedApi([{"apiVersion": "2.0.5", "dataTimestamp": "2025-06-01T09:10:11"}]) as api:
        client = ClinicalTrialsClient.create(api.url, None, **FAST)
        assert client.data_timestamp() == "2025-06-01T09:10:11"
        client.close()
    assert [path for path, _, _ in api.requests] == ["/api/v2/version"]


# --- rate limiting --------------------------------------------------------------------------------


def test_create_targets_the_public_api_at_about_fifty_requests_a_minute() -> None:
    client = ClinicalTrialsClient.create()
    try:
        assert client.http.base_url == PUBLIC_BASE_URL == "https://clinicaltrials.gov"
        assert not is_local(client.http.base_url)
        assert client.http.settings.requests_per_second == pytest.approx(50 / 60)
        assert client.http.settings.requests_per_second == PUBLIC_REQUESTS_PER_SECOND
        assert client.http.source == "clinicaltrials_gov"
        assert client.query == ONCOLOGY_CONDITION_QUERY
    finally:
        client.close()


def test_create_passes_http_settings_through() -> None:
    client = ClinicalTrialsClient.create(
        "http://127.0.0.1:9", "all", timeout_seconds=7.5, max_attempts=2, user_agent="x/1"
    )
    try:
        assert client.http.settings.timeout_seconds == 7.5
        assert client.http.settings.max_attempts == 2
        assert client.http.settings.user_agent == "x/1"
    finally:
        client.close()


def test_a_non_local_host_gets_the_public_rate_limit() -> None:
    """127.0.0.2 is loopback, but not a host the client treats as local: requests to it are
    spaced as requests to clinicaltrials.gov would be (60 / 50 = 1.2 s apart)."""
    version = {"apiVersion": "2.0.5", "dataTimestamp": "2025-06-01T00:00:00"}
    with ScriptedApi([version], host="127.0.0.2") as api:
        client = ClinicalTrialsClient.create(api.url, "all", **FAST)
        began = time.monotonic()
        client.data_timestamp()
        client.data_timestamp()
        client.close()
    first, second = (at - began for _, _, at in api.requests)
    assert second >= 1 / PUBLIC_REQUESTS_PER_SECOND
    assert second - first < 2.5


def test_the_local_replay_server_is_not_rate_limited(ctgov_replay: ReplayServer) -> None:
    client = ClinicalTrialsClient.create(ctgov_replay.url, "all", **FAST)
    began = time.monotonic()
    for _ in range(5):
        client.data_timestamp()
    elapsed = time.monotonic() - began
    client.close()
    assert elapsed < 2.0  # at 50 a minute, five requests take at least 4.8 s


# --- against the replay server on the real records ------------------------------------------------


@pytest.mark.parametrize(("page_size", "requests"), [(100, 5), (463, 1), (462, 2), (5000, 1)])
def test_a_multi_year_range_yields_every_study_sorted_by_last_update(
    all_scope: ClinicalTrialsClient,
    ctgov_replay: ReplayServer,
    records: dict[str, dict[str, Any]],
    page_size: int,
    requests: int,
) -> None:
    start, end = date(2015, 1, 1), date(2024, 12, 31)
    expected = _expected_ids(records, start, end)
    assert len(expected) == 463  # the page sizes above are chosen around this count

    before = _studies_requests(ctgov_replay)
    pages, studies = _collect(all_scope, start, end, page_size)
    assert _studies_requests(ctgov_replay) - before == requests

    assert [page.page_number for page in pages] == list(range(requests))
    assert all(len(page.studies) == min(page_size, 1000) for page in pages[:-1])
    assert pages[0].total_count == len(studies) == 463
    ids = [_nct_id(study) for study in studies]
    assert len(set(ids)) == len(ids)
    assert set(ids) == expected
    days = [_last_update(study) for study in studies]
    assert days == sorted(days)
    assert start <= days[0] and days[-1] <= end


def test_paging_does_not_change_the_sequence(
    all_scope: ClinicalTrialsClient,
) -> None:
    start, end = date(2006, 1, 1), date(2025, 12, 31)
    _, whole = _collect(all_scope, start, end)
    pages, paged = _collect(all_scope, start, end, page_size=37)
    assert len(pages) == -(-len(whole) // 37)
    assert [_nct_id(study) for study in paged] == [_nct_id(study) for study in whole]
    assert pages[0].total_count == len(whole) == 544


def test_both_ends_of_the_range_are_inclusive(
    all_scope: ClinicalTrialsClient, records: dict[str, dict[str, Any]]
) -> None:
    first, last = date(2023, 9, 28), date(2023, 10, 6)  # both days have several updates
    on_first = {n for n, s in records.items() if _last_update(s) == first}
    on_last = {n for n, s in records.items() if _last_update(s) == last}
    assert len(on_first) >= 2 and len(on_last) >= 2

    _, studies = _collect(all_scope, first, last)
    ids = {_nct_id(study) for study in studies}
    assert ids == _expected_ids(records, first, last)
    assert on_first | on_last <= ids

    _, one_day = _collect(all_scope, last, last)
    assert {_nct_id(study) for study in one_day} == on_last


def test_an_empty_range_yields_no_studies_and_a_zero_total(
    all_scope: ClinicalTrialsClient,
    ctgov_replay: ReplayServer,
    records: dict[str, dict[str, Any]],
) -> None:
    start, end = date(2007, 1, 1), date(2007, 12, 31)
    assert not _expected_ids(records, start, end)
    before = _studies_requests(ctgov_replay)
    pages, studies = _collect(all_scope, start, end)
    assert _studies_requests(ctgov_replay) - before == 1
    assert studies == []
    assert [(page.page_number, page.total_count) for page in pages] == [(0, 0)]


def test_the_default_scope_is_a_strict_oncology_subset_of_all(
    ctgov_replay: ReplayServer, records: dict[str, dict[str, Any]]
) -> None:
    start, end = date(2006, 1, 1), date(2025, 12, 31)
    results: dict[str | None, list[dict[str, Any]]] = {}
    for scope in (None, "", "all", "ALL"):
        client = ClinicalTrialsClient.create(ctgov_replay.url, scope, **FAST)
        pages, results[scope] = _collect(client, start, end, page_size=50)
        assert pages[0].total_count == len(results[scope])
        client.close()

    def ids(scope: str | None) -> list[str]:
        return [_nct_id(study) for study in results[scope]]

    assert ids(None) == ids("")
    assert ids("all") == ids("ALL")
    oncology, everything = set(ids(None)), set(ids("all"))
    assert everything == _expected_ids(records, start, end)
    assert oncology < everything
    assert 0 < len(oncology) < len(everything) / 2
    for study in results[None]:
        text = _condition_text(study)
        assert any(word in text for word in CANCER_WORDS), _nct_id(study)
    # And nothing that mentions one of the query's terms was left out.
    terms = [term.lower() for term in ONCOLOGY_CONDITION_QUERY.split(" OR ")]
    for nct in everything - oncology:
        assert not any(term in _condition_text(records[nct]) for term in terms), nct


def test_a_custom_scope_is_sent_verbatim(
    ctgov_replay: ReplayServer, records: dict[str, dict[str, Any]]
) -> None:
    start, end = date(2006, 1, 1), date(2025, 12, 31)
    with_leukemia = {n for n, s in records.items() if "leukemia" in _condition_text(s)}
    assert with_leukemia

    client = ClinicalTrialsClient.create(ctgov_replay.url, "Leukemia", **FAST)
    pages, studies = _collect(client, start, end)
    client.close()
    assert {_nct_id(study) for study in studies} == with_leukemia
    assert pages[0].total_count == len(with_leukemia)

    oncology = ClinicalTrialsClient.create(ctgov_replay.url, None, **FAST)
    _, cancer = _collect(oncology, start, end)
    oncology.close()
    assert with_leukemia < {_nct_id(study) for study in cancer}


def test_data_timestamp_from_the_replay_server(
    all_scope: ClinicalTrialsClient, records: dict[str, dict[str, Any]]
) -> None:
    stamp = all_scope.data_timestamp()
    assert stamp is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}T00:00:00", stamp)
    newest_update = max(_last_update(study) for study in records.values())
    assert date.fromisoformat(stamp[:10]) >= newest_update
