"""The replay server and its study store, against the real ClinicalTrials.gov records.

Expected values are computed here straight from the files in ``shared/realdata/ctgov``, not
through the store, so a bug in the store's parsing or selection shows up as a mismatch.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.store import DateRange, StudyOrder, StudyQuery, StudyStore

REALDATA = Path(__file__).parents[1].parent / "shared" / "realdata"
CTGOV = REALDATA / "ctgov"
STUDIES = "/api/v2/studies"
FULL_RANGE = "AREA[LastUpdatePostDate]RANGE[MIN,MAX]"
ALT_VERSION = CTGOV / "alt_versions" / "NCT02552212.versionHolder-2023-12-12.json"


def _read(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def _nct_id(study: dict[str, Any]) -> str:
    return study["protocolSection"]["identificationModule"]["nctId"]


def _last_update(study: dict[str, Any]) -> str | None:
    status = study["protocolSection"].get("statusModule", {})
    return status.get("lastUpdatePostDateStruct", {}).get("date")


def _version_holder(study: dict[str, Any]) -> str:
    return study.get("derivedSection", {}).get("miscInfoModule", {}).get("versionHolder", "")


@pytest.fixture(scope="module")
def complete_studies() -> dict[str, dict[str, Any]]:
    """The 544 complete studies, one file each, keyed by NCT id."""
    assert CTGOV.is_dir(), f"real data not found at {CTGOV} (the project sits beside shared/)"
    studies = {_nct_id(s): s for s in map(_read, sorted(CTGOV.glob("NCT*.json")))}
    assert len(studies) == 544
    return studies


@pytest.fixture(scope="module")
def last_updates(complete_studies: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {nct_id: _last_update(study) for nct_id, study in complete_studies.items()}


@pytest.fixture(scope="module")
def every_nct_id() -> set[str]:
    """NCT ids of every study-like object anywhere below ctgov/, partial captures included."""
    ids = {path.stem for path in CTGOV.glob("NCT*.json")}
    ids |= {path.stem for path in (CTGOV / "partial").glob("NCT*.json")}
    for page in (CTGOV / "pages").glob("*.json"):
        ids |= {_nct_id(study) for study in _read(page)["studies"]}
    return ids


@pytest.fixture(scope="module")
def real_server() -> Iterator[ReplayServer]:
    with ReplayServer(CTGOV) as server:
        yield server


@pytest.fixture(scope="module")
def client(real_server: ReplayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=real_server.url, timeout=30) as http:
        yield http


def fetch_all(client: httpx.Client, **params: str) -> tuple[list[dict[str, Any]], int, Any]:
    """Every page of a query: (studies in order, number of requests, first page body)."""
    studies: list[dict[str, Any]] = []
    first_page: Any = None
    requests = 0
    token: str | None = None
    while True:
        page_params = dict(params, pageToken=token) if token else params
        response = client.get(STUDIES, params=page_params)
        assert response.status_code == 200, response.text
        body = response.json()
        first_page = body if first_page is None else first_page
        studies += body["studies"]
        requests += 1
        token = body.get("nextPageToken")
        if token is None:
            return studies, requests, first_page


def test_full_range_pages_through_all_complete_studies(
    client: httpx.Client, complete_studies: dict[str, dict[str, Any]]
) -> None:
    studies, requests, first_page = fetch_all(
        client, **{"filter.advanced": FULL_RANGE, "pageSize": "1000", "countTotal": "true"}
    )
    ids = [_nct_id(study) for study in studies]
    assert first_page["totalCount"] == 544
    assert len(ids) == 544
    assert set(ids) == set(complete_studies)
    assert requests == 1


def test_total_count_only_on_first_page(client: httpx.Client) -> None:
    params = {"filter.advanced": FULL_RANGE, "pageSize": "200", "countTotal": "true"}
    first = client.get(STUDIES, params=params).json()
    second = client.get(STUDIES, params={**params, "pageToken": first["nextPageToken"]}).json()
    assert first["totalCount"] == 544
    assert "totalCount" not in second
    assert len(second["studies"]) == 200


def test_date_range_returns_exactly_the_studies_updated_in_it(
    client: httpx.Client, last_updates: dict[str, str]
) -> None:
    expected = {nct for nct, day in last_updates.items() if "2024-01-01" <= day <= "2024-12-31"}
    studies, _, first_page = fetch_all(
        client,
        **{
            "filter.advanced": "AREA[LastUpdatePostDate]RANGE[2024-01-01,2024-12-31]",
            "pageSize": "50",
            "countTotal": "true",
        },
    )
    assert 0 < len(expected) < 544
    assert sorted(_nct_id(s) for s in studies) == sorted(expected)
    assert first_page["totalCount"] == len(expected)


def test_single_day_range_is_inclusive(client: httpx.Client, last_updates: dict[str, str]) -> None:
    busiest_day = max(set(last_updates.values()), key=list(last_updates.values()).count)
    expected = {nct for nct, day in last_updates.items() if day == busiest_day}
    studies, _, _ = fetch_all(
        client,
        **{"filter.advanced": f"AREA[LastUpdatePostDate]RANGE[{busiest_day},{busiest_day}]"},
    )
    assert len(expected) > 1
    assert {_nct_id(s) for s in studies} == expected


def test_open_ended_ranges(client: httpx.Client, last_updates: dict[str, str]) -> None:
    since = {nct for nct, day in last_updates.items() if day >= "2025-06-01"}
    until = {nct for nct, day in last_updates.items() if day <= "2015-12-31"}
    newer, _, _ = fetch_all(
        client, **{"filter.advanced": "AREA[LastUpdatePostDate]RANGE[2025-06-01,MAX]"}
    )
    older, _, _ = fetch_all(
        client, **{"filter.advanced": "AREA[LastUpdatePostDate]RANGE[MIN,2015-12-31]"}
    )
    assert {_nct_id(s) for s in newer} == since
    assert {_nct_id(s) for s in older} == until


@pytest.mark.parametrize(
    ("sort", "newest_first"),
    [("LastUpdatePostDate", False), ("LastUpdatePostDate:asc", False),
     ("LastUpdatePostDate:desc", True)],
)  # fmt: skip
def test_sort_by_last_update(
    client: httpx.Client, last_updates: dict[str, str], sort: str, newest_first: bool
) -> None:
    studies, _, _ = fetch_all(
        client, **{"filter.advanced": FULL_RANGE, "sort": sort, "pageSize": "100"}
    )
    served = [(_last_update(s), _nct_id(s)) for s in studies]
    day_key = _descending if newest_first else _ascending
    expected = sorted(
        ((day, nct) for nct, day in last_updates.items()), key=lambda p: (day_key(p[0]), p[1])
    )
    assert served == expected


def test_without_sort_studies_come_in_nct_order(
    client: httpx.Client, every_nct_id: set[str]
) -> None:
    studies, _, first_page = fetch_all(client, pageSize="1000", countTotal="true")
    ids = [_nct_id(s) for s in studies]
    assert ids == sorted(every_nct_id)
    assert first_page["totalCount"] == len(every_nct_id) > 544


def test_small_pages_visit_each_study_once(
    client: httpx.Client, complete_studies: dict[str, dict[str, Any]]
) -> None:
    studies, requests, _ = fetch_all(
        client, **{"filter.advanced": FULL_RANGE, "pageSize": "7", "sort": "LastUpdatePostDate"}
    )
    ids = [_nct_id(s) for s in studies]
    assert len(ids) == len(set(ids)) == 544
    assert set(ids) == set(complete_studies)
    assert requests == math.ceil(544 / 7)


def test_default_page_size_is_ten(client: httpx.Client) -> None:
    body = client.get(STUDIES, params={"filter.advanced": FULL_RANGE}).json()
    assert len(body["studies"]) == 10
    assert "nextPageToken" in body


def test_last_page_has_no_next_token(client: httpx.Client) -> None:
    params = {"filter.advanced": FULL_RANGE, "pageSize": "500"}
    first = client.get(STUDIES, params=params).json()
    last = client.get(STUDIES, params={**params, "pageToken": first["nextPageToken"]}).json()
    assert len(last["studies"]) == 44
    assert "nextPageToken" not in last


def test_query_cond_matches_conditions_keywords_and_mesh_terms(
    client: httpx.Client, complete_studies: dict[str, dict[str, Any]]
) -> None:
    terms = ("lung cancer", "leukemia")

    def searchable(study: dict[str, Any]) -> list[str]:
        conditions = study["protocolSection"].get("conditionsModule", {})
        browse = study.get("derivedSection", {}).get("conditionBrowseModule", {})
        mesh_terms = [m["term"] for group in ("meshes", "ancestors") for m in browse.get(group, [])]
        texts = conditions.get("conditions", []) + conditions.get("keywords", []) + mesh_terms
        return [text.lower() for text in texts]

    expected = {
        nct
        for nct, study in complete_studies.items()
        if any(term in text for term in terms for text in searchable(study))
    }
    studies, _, _ = fetch_all(
        client,
        **{"filter.advanced": FULL_RANGE, "query.cond": '("Lung Cancer" OR Leukemia)'},
    )
    assert 0 < len(expected) < 544
    assert {_nct_id(s) for s in studies} == expected


def test_query_term_searches_titles(
    client: httpx.Client, complete_studies: dict[str, dict[str, Any]]
) -> None:
    expected = {
        nct
        for nct, study in complete_studies.items()
        if "pembrolizumab" in study["protocolSection"]["identificationModule"]["briefTitle"].lower()
        or "pembrolizumab"
        in study["protocolSection"]["identificationModule"].get("officialTitle", "").lower()
        or any(
            "pembrolizumab" in text.lower()
            for key in ("conditions", "keywords")
            for text in study["protocolSection"].get("conditionsModule", {}).get(key, [])
        )
    }
    studies, _, _ = fetch_all(
        client, **{"filter.advanced": FULL_RANGE, "query.term": "PEMBROLIZUMAB"}
    )
    assert expected
    assert {_nct_id(s) for s in studies} == expected


def test_served_study_equals_the_file(
    client: httpx.Client, complete_studies: dict[str, dict[str, Any]]
) -> None:
    studies, _, _ = fetch_all(client, **{"filter.advanced": FULL_RANGE, "pageSize": "1000"})
    served = {_nct_id(s): s for s in studies}
    assert served["NCT00000410"] == complete_studies["NCT00000410"]


def test_nct02552212_is_served_once_in_its_newest_version(client: httpx.Client) -> None:
    candidates = [_read(CTGOV / "NCT02552212.json"), _read(ALT_VERSION)]
    newest = max(candidates, key=lambda s: (_last_update(s), _version_holder(s)))
    older = min(candidates, key=lambda s: (_last_update(s), _version_holder(s)))
    assert _last_update(newest) == _last_update(older)
    studies, _, _ = fetch_all(client, **{"filter.advanced": FULL_RANGE, "pageSize": "1000"})
    served = [s for s in studies if _nct_id(s) == "NCT02552212"]
    assert len(served) == 1
    assert served[0] == newest
    assert _version_holder(served[0]) != _version_holder(older)


@pytest.mark.parametrize("alt_name", ["0000-first.json", "zzzz-last.json"])
def test_version_choice_does_not_depend_on_file_order(tmp_path: Path, alt_name: str) -> None:
    shutil.copy(CTGOV / "NCT02552212.json", tmp_path / "NCT02552212.json")
    shutil.copy(ALT_VERSION, tmp_path / alt_name)
    store = StudyStore.from_folder(tmp_path)
    study = store.get("NCT02552212")
    assert len(store) == 1
    assert study is not None
    assert _version_holder(orjson.loads(study.raw)) == "2024-01-03"


def test_exact_version_tie_is_broken_by_content(tmp_path: Path) -> None:
    study = _read(CTGOV / "NCT00000410.json")
    variant = orjson.loads(orjson.dumps(study))
    variant["protocolSection"]["identificationModule"]["briefTitle"] = "A different title"
    (tmp_path / "a.json").write_bytes(orjson.dumps(study))
    (tmp_path / "b.json").write_bytes(orjson.dumps(variant))
    first = StudyStore.from_folder(tmp_path).get("NCT00000410")
    (tmp_path / "a.json").rename(tmp_path / "c.json")
    second = StudyStore.from_folder(tmp_path).get("NCT00000410")
    assert first is not None and second is not None
    assert first.raw == second.raw


@pytest.mark.parametrize(
    "params",
    [
        {"filter.advanced": "AREA[OverallStatus]RECRUITING"},
        {"filter.advanced": "AREA[LastUpdatePostDate]RANGE[2024-13-01,MAX]"},
        {"filter.advanced": "AREA[LastUpdatePostDate]RANGE[2024-01,MAX]"},
        {"filter.advanced": "AREA[LastUpdatePostDate]RANGE[MIN,MAX] AND AREA[Phase]PHASE3"},
        {"sort": "EnrollmentCount:desc"},
        {"pageSize": "1001"},
        {"pageSize": "0"},
        {"pageSize": "ten"},
        {"format": "csv"},
        {"countTotal": "yes"},
        {"filter.overallStatus": "RECRUITING"},
        {"query.term": "AREA[LastUpdatePostDate]RANGE[MIN,MAX]"},
    ],
)
def test_unsupported_requests_are_rejected_with_a_json_error(
    client: httpx.Client, params: dict[str, str]
) -> None:
    response = client.get(STUDIES, params=params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


def test_page_size_1000_is_accepted(client: httpx.Client) -> None:
    response = client.get(STUDIES, params={"pageSize": "1000", "fields": "NCTId"})
    assert response.status_code == 200


@pytest.mark.parametrize("token", ["not-a-token", "eyJvIjoxMH0", "%%%", "e30"])
def test_bad_page_token_is_rejected(client: httpx.Client, token: str) -> None:
    response = client.get(STUDIES, params={"filter.advanced": FULL_RANGE, "pageToken": token})
    assert response.status_code == 400
    assert "pageToken" in response.json()["error"]


def test_page_token_of_another_query_is_rejected(client: httpx.Client) -> None:
    first = client.get(STUDIES, params={"filter.advanced": FULL_RANGE, "pageSize": "5"}).json()
    response = client.get(
        STUDIES,
        params={
            "filter.advanced": "AREA[LastUpdatePostDate]RANGE[2024-01-01,MAX]",
            "pageToken": first["nextPageToken"],
        },
    )
    assert response.status_code == 400
    assert "different query" in response.json()["error"]


def test_unknown_path_is_404(client: httpx.Client) -> None:
    response = client.get("/api/v2/stats")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_version_reports_newest_version_holder(
    client: httpx.Client, complete_studies: dict[str, dict[str, Any]]
) -> None:
    newest = max(_version_holder(study) for study in complete_studies.values())
    assert client.get("/api/v2/version").json() == {
        "apiVersion": "2.0.5",
        "dataTimestamp": f"{newest}T00:00:00",
    }


def test_responses_have_content_length_and_keep_alive(client: httpx.Client) -> None:
    responses = [client.get(STUDIES, params={"pageSize": "3"}) for _ in range(3)]
    for response in responses:
        assert response.http_version == "HTTP/1.1"
        assert int(response.headers["content-length"]) == len(response.content)
        assert response.headers.get("connection", "keep-alive").lower() != "close"


def test_requests_are_counted_per_path() -> None:
    with (
        ReplayServer(CTGOV) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        http.get(STUDIES, params={"pageSize": "1"})
        http.get(STUDIES, params={"pageSize": "1000"})
        http.get(STUDIES, params={"format": "csv"})
        http.get("/api/v2/version")
        http.get("/nowhere")
        stats = http.get("/__replay/stats").json()
        assert server.request_count == 5
        assert stats == {
            "requests": 5,
            "by_path": {"/api/v2/studies": 3, "/api/v2/version": 1, "/nowhere": 1},
            "studies": len(server.store),
            "faults": {},
        }


def test_reload_picks_up_a_new_file(tmp_path: Path) -> None:
    originals = sorted(CTGOV.glob("NCT*.json"))
    for path in originals[:3]:
        shutil.copy(path, tmp_path / path.name)
    with (
        ReplayServer(tmp_path) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        params = {"filter.advanced": FULL_RANGE, "countTotal": "true"}
        assert http.get(STUDIES, params=params).json()["totalCount"] == 3
        (tmp_path / "later").mkdir()
        shutil.copy(originals[3], tmp_path / "later" / originals[3].name)
        assert http.get(STUDIES, params=params).json()["totalCount"] == 3
        assert server.reload() == 4
        assert http.get(STUDIES, params=params).json()["totalCount"] == 4
        shutil.copy(originals[4], tmp_path / originals[4].name)
        assert http.post("/__replay/reload").json() == {"studies": 5}
        ids = {_nct_id(s) for s in http.get(STUDIES, params=params).json()["studies"]}
        assert ids == {path.stem for path in originals[:5]}


def _first_page(http: httpx.Client, **extra: str) -> httpx.Response:
    return http.get(STUDIES, params={"pageSize": "2", "filter.advanced": FULL_RANGE, **extra})


def test_faults_hit_the_data_requests_the_spec_names(tmp_path: Path) -> None:
    spec = "429=2:#1,503:#2,truncate:#3,expired_token:#4-5,reset:#6"
    with ReplayServer(CTGOV, faults=spec) as server, httpx.Client(base_url=server.url) as http:
        throttled = _first_page(http)
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "2"
        assert http.get("/api/v2/version").status_code == 200  # not a data request
        assert _first_page(http).status_code == 503
        truncated = _first_page(http)
        assert truncated.status_code == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(truncated.content)
        whole = _first_page(http)  # #4: no page token, so an expired token cannot hit it
        token = whole.json()["nextPageToken"]
        expired = _first_page(http, pageToken=token)  # #5
        assert expired.status_code == 400
        assert "pageToken" in expired.json()["error"]
        with pytest.raises(httpx.TransportError):  # #6: the connection is dropped
            _first_page(http)
        assert _first_page(http).status_code == 200
        stats = http.get("/__replay/stats").json()
    assert stats["faults"] == {"429": 1, "503": 1, "expired_token": 1, "reset": 1, "truncate": 1}


def test_probabilistic_faults_repeat_with_the_same_seed() -> None:
    def statuses(spec: str) -> list[int]:
        with ReplayServer(CTGOV, faults=spec) as server, httpx.Client(base_url=server.url) as h:
            return [_first_page(h).status_code for _ in range(40)]

    first = statuses("500:0.3,seed=11")
    assert first == statuses("500:0.3,seed=11")
    assert first != statuses("500:0.3,seed=12")
    assert 0 < first.count(500) < 40


def test_a_slow_fault_holds_the_response_back() -> None:
    with ReplayServer(CTGOV, faults="slow=1.5:#1") as server:
        with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=server.url) as http:
            http.get(STUDIES, params={"pageSize": "1"}, timeout=0.5)
        with httpx.Client(base_url=server.url, timeout=5) as http:
            assert _first_page(http).status_code == 200


# Store ---------------------------------------------------------------------------------------


def test_store_recognizes_files_by_content(tmp_path: Path) -> None:
    studies = [_read(path) for path in sorted(CTGOV.glob("NCT*.json"))[:4]]
    (tmp_path / "one.json").write_bytes(orjson.dumps(studies[0]))
    (tmp_path / "page.json").write_bytes(orjson.dumps({"studies": studies[1:3], "totalCount": 2}))
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "list.json").write_bytes(orjson.dumps([studies[3]]))
    (tmp_path / "index.json").write_bytes(b'{"complete": {}}')
    (tmp_path / "broken.json").write_bytes(b'{"studies": [')
    (tmp_path / "numbers.json").write_bytes(b"[1, 2, 3]")
    (tmp_path / "notes.txt").write_text("not json at all")
    store = StudyStore.from_folder(tmp_path)
    assert {study.nct_id for study in store} == {_nct_id(study) for study in studies}
    assert store.skipped_files == 3


def test_store_skips_studies_without_nct_id_and_keeps_undated_ones(tmp_path: Path) -> None:
    dated = _read(CTGOV / "NCT00000410.json")
    nameless = orjson.loads(orjson.dumps(dated))
    del nameless["protocolSection"]["identificationModule"]["nctId"]
    (tmp_path / "page.json").write_bytes(orjson.dumps({"studies": [dated, nameless]}))
    shutil.copy(CTGOV / "partial" / "NCT00465816.json", tmp_path / "partial.json")
    store = StudyStore.from_folder(tmp_path)
    assert store.skipped_studies == 1
    assert len(store) == 2
    everything = store.select(StudyQuery())
    in_range = store.select(StudyQuery(date_range=DateRange()))
    assert [s.nct_id for s in everything] == ["NCT00000410", "NCT00465816"]
    assert [s.nct_id for s in in_range] == ["NCT00000410"]


def test_store_select_orders_and_bounds(last_updates: dict[str, str]) -> None:
    store = StudyStore.from_folder(CTGOV)
    query = StudyQuery(
        date_range=DateRange("2023-01-01", "2023-06-30"), order=StudyOrder.LAST_UPDATE_DESC
    )
    selected = [(s.last_update, s.nct_id) for s in store.select(query)]
    expected = sorted(
        ((day, nct) for nct, day in last_updates.items() if "2023-01-01" <= day <= "2023-06-30"),
        key=lambda pair: (_descending(pair[0]), pair[1]),
    )
    assert selected == expected
    assert store.select(StudyQuery(date_range=DateRange("2024-01-01", "2023-01-01"))) == []
    assert store.skipped_files == 1  # _index.json
    assert store.max_version_holder == max(
        _version_holder(_read(path)) for path in CTGOV.glob("NCT*.json")
    )


def _ascending(day: str) -> tuple[int, ...]:
    return tuple(int(part) for part in day.split("-"))


def _descending(day: str) -> tuple[int, ...]:
    return tuple(-int(part) for part in day.split("-"))
