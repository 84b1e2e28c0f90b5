"""Studies cut from ClinicalTrials.gov pages without decoding them, against the real pages in
../shared/realdata/ctgov/pages and the replay server's: a cut is the study the page holds, byte
for byte what landing stores a digest of; a page written otherwise gives no cuts, and a cut in
the wrong place never decodes."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date

import orjson
import pytest

from bioloupe_data.replay.server import PageRequest, ReplayServer, render_page
from bioloupe_data.replay.store import StudyQuery, StudyStore
from bioloupe_data.sources.clinicaltrials.client import ClinicalTrialsClient, CutStudyPage
from bioloupe_data.sources.clinicaltrials.pages import StudyDigest, cut_page, study_digest

from conftest import CTGOV_DATA

PAGES = CTGOV_DATA / "pages"
# Written by the API itself, byte for byte as found (SOURCES.md); the others were re-indented.
API_PAGE = PAGES / "RuhRuh66__step25_clinical_trials__studies.json"


def _study(nct_id: str, title: str = "A study") -> dict[str, object]:
    return {
        "protocolSection": {
            "identificationModule": {"nctId": nct_id, "briefTitle": title},
            "statusModule": {"lastUpdatePostDateStruct": {"date": "2024-03-01"}},
        },
        "hasResults": False,
    }


def _page(*studies: object, tail: bytes = b',"nextPageToken":"abc_D-1"}') -> bytes:
    return b'{"studies":[\n' + b",\n".join(orjson.dumps(s) for s in studies) + b"\n]" + tail


def test_the_cuts_of_a_page_the_api_wrote_are_its_studies_as_landing_writes_them() -> None:
    body = API_PAGE.read_bytes()
    page = cut_page(body)
    assert page is not None
    studies = orjson.loads(body)["studies"]
    assert len(page.cuts) == len(studies) == 5
    for cut, study in zip(page.cuts, studies, strict=True):
        assert cut.nct_id == study["protocolSection"]["identificationModule"]["nctId"]
        assert orjson.loads(cut.raw) == study
        # The API writes a study as orjson does: the digest landing stores for a decoded study
        # is the one a re-fetch's cut of it has.
        assert cut.raw == orjson.dumps(study)
        assert cut.digest == study_digest(orjson.dumps(study))
        assert (
            cut.digest.version_holder == study["derivedSection"]["miscInfoModule"]["versionHolder"]
        )
    assert page.envelope == {"studies": [], "nextPageToken": orjson.loads(body)["nextPageToken"]}


def test_re_indented_pages_are_not_cut() -> None:
    others = sorted(p for p in PAGES.glob("*.json") if p != API_PAGE)
    assert len(others) >= 5
    for path in others:
        assert cut_page(path.read_bytes()) is None, path.name


def test_the_replay_servers_pages_are_cut_into_its_studies() -> None:
    store = StudyStore(CTGOV_DATA)
    studies = store.select(StudyQuery())
    request = PageRequest(StudyQuery(), "q", offset=0, page_size=50, count_total=True)
    body = render_page(studies, request)
    page = cut_page(body)
    assert page is not None
    assert [c.raw for c in page.cuts] == [s.raw for s in studies[:50]]
    assert page.envelope["totalCount"] == len(studies)
    assert "nextPageToken" in page.envelope
    last = PageRequest(StudyQuery(), "q", offset=len(studies) - 1, page_size=50, count_total=True)
    last_page = cut_page(render_page(studies, last))
    assert last_page is not None and [c.raw for c in last_page.cuts] == [studies[-1].raw]
    assert "nextPageToken" not in last_page.envelope


def test_an_empty_page_has_no_cuts() -> None:
    page = cut_page(b'{"studies":[],"totalCount":0}')
    assert page is not None and page.cuts == [] and page.envelope["totalCount"] == 0


def test_markup_inside_a_string_does_not_cut() -> None:
    tricky = _study("NCT00000002", 'ends with },{"protocolSection": and ] and }')
    page = cut_page(_page(_study("NCT00000001"), tricky, _study("NCT00000003")))
    assert page is not None
    assert [orjson.loads(c.raw) for c in page.cuts] == [
        _study("NCT00000001"),
        tricky,
        _study("NCT00000003"),
    ]


def test_a_cut_in_the_wrong_place_does_not_decode() -> None:
    # A study holding, as markup, what separates two studies: the page is cut inside it, and
    # neither piece is a JSON value, so the page is decoded as a whole (see landing's tests).
    nested = _study("NCT00000002")
    nested["annexes"] = [{"a": 1}, {"protocolSection": {"nctId": "NCT00000009"}}]
    page = cut_page(_page(_study("NCT00000001"), nested))
    assert page is not None and len(page.cuts) == 3
    assert orjson.loads(page.cuts[0].raw) == _study("NCT00000001")
    for wrong in page.cuts[1:]:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(wrong.raw)


@pytest.mark.parametrize(
    "body",
    [
        _page(_study("NCT00000001"))[:-9],  # cut short
        _page(_study("NCT00000001"), tail=b"]"),  # no closing brace
        _page(_study("NCT00000001"), tail=b',"other":1}'),  # a key the API does not write there
        _page(_study("NCT00000001"), tail=b',"nextPageToken":"a]b"}'),
        b'{"totalCount":1,"studies":[' + orjson.dumps(_study("NCT00000001")) + b"]}",
        b'{"studies":[{"hasResults":false,"protocolSection":{}}]}',  # another first key
        _page({"protocolSection": {"identificationModule": {}}}),  # no NCT ID to look up by
        b'{"studies":{"protocolSection":1}}',
        b"[]",
        b"",
    ],
)
def test_pages_written_otherwise_are_not_cut(body: bytes) -> None:
    assert cut_page(body) is None


def _snapshot(nct_id: str, day: str, title: str = "A study") -> dict[str, object]:
    return {**_study(nct_id, title), "derivedSection": {"miscInfoModule": {"versionHolder": day}}}


def test_a_new_snapshot_of_a_study_keeps_its_digest_and_a_change_changes_it() -> None:
    before = _snapshot("NCT00000001", "2024-03-02")
    digest = study_digest(orjson.dumps(before))
    assert digest.version_holder == "2024-03-02"
    assert digest.digest != hashlib.sha256(orjson.dumps(before)).digest()  # the date left out
    next_day = study_digest(orjson.dumps(_snapshot("NCT00000001", "2024-03-03")))
    assert (next_day.digest, next_day.version_holder) == (digest.digest, "2024-03-03")
    amended = study_digest(orjson.dumps(_snapshot("NCT00000001", "2024-03-02", "Amended")))
    assert amended.digest != digest.digest
    # The cut of a page has the digest of the same bytes.
    page = cut_page(_page(before))
    assert page is not None and page.cuts[0].digest == digest


@pytest.mark.parametrize(
    "study",
    [
        _study("NCT00000001"),  # no snapshot date
        {**_snapshot("NCT00000001", "2024-03-02"), "x": {"versionHolder": "2024-03-02"}},
        _snapshot("NCT00000001", "2024-03-02\n"),  # a value with an escape
        {**_study("NCT00000001"), "derivedSection": {"miscInfoModule": {"versionHolder": 7}}},
    ],
)
def test_a_study_without_exactly_one_plain_snapshot_date_is_digested_whole(
    study: dict[str, object],
) -> None:
    digest = study_digest(orjson.dumps(study))
    assert digest == StudyDigest(hashlib.sha256(orjson.dumps(study)).digest(), None)


def test_a_snapshot_date_named_inside_a_string_is_text_not_the_key() -> None:
    study = _snapshot("NCT00000001", "2024-03-02", 'says "versionHolder":"2024-01-01"')
    digest = study_digest(orjson.dumps(study))
    assert digest.version_holder == "2024-03-02"
    changed = _snapshot("NCT00000001", "2024-03-02", 'says "versionHolder":"2023-01-01"')
    assert study_digest(orjson.dumps(changed)).digest != digest.digest


def test_a_damaged_study_is_cut_but_does_not_decode() -> None:
    damaged = _page(_study("NCT00000001")).replace(b'"hasResults":false', b'"hasResults":fals')
    page = cut_page(damaged)
    assert page is not None  # its start and end are the API's: cut, then found damaged
    with pytest.raises(orjson.JSONDecodeError):
        page.cuts[0].decoded()


def test_a_cut_page_decodes_whole_and_a_damaged_one_is_fetched_again_as_one_retry(
    ctgov_replay: ReplayServer,
) -> None:
    client = ClinicalTrialsClient.create(ctgov_replay.url, "all", page_size=20)
    try:
        first = next(client.iter_pages(date(2000, 1, 1), date(2026, 1, 1), cut=True))
        assert isinstance(first, CutStudyPage) and len(first.cuts) == 20
        served = orjson.loads(first.body)["studies"]
        assert first.decoded() == served
        assert client.http.retries == []
        middle = len(first.body) // 2
        damaged = replace(first, body=first.body[:middle] + b"\x00" + first.body[middle + 1 :])
        assert damaged.decoded() == served
        assert [event.cause[:19] for event in client.http.retries] == ["invalid JSON body ("]
    finally:
        client.close()


def test_a_key_merely_ending_in_version_holder_is_not_the_snapshot_date() -> None:
    study = {**_study("NCT00000001"), "derivedSection": {'x"versionHolder': "2024-03-02"}}
    digest = study_digest(orjson.dumps(study))
    assert digest == StudyDigest(hashlib.sha256(orjson.dumps(study)).digest(), None)
