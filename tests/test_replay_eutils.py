"""The replay server's E-utilities (esearch/efetch) over HTTP, against the real PubMed articles.

Expected values are computed here from the files in ``shared/realdata/pubmed`` (the parser's
``article_identity`` for the modification day, ElementTree for entrez dates and texts), not
through the article store, so a bug in the store's indexing or selection shows as a mismatch.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth_pubmed import write_synthetic_pubmed_day
from bioloupe_data.sources.pubmed import ArticleXml, article_identity, iter_pubmed_xml

REALDATA = Path(__file__).parents[1].parent / "shared" / "realdata"
PUBMED = REALDATA / "pubmed"
ARTICLES = PUBMED / "articles"
ESEARCH = "/entrez/eutils/esearch.fcgi"
EFETCH = "/entrez/eutils/efetch.fcgi"
BIG_DAY = date(2025, 3, 31)
BIG_DAY_COUNT = 10_500


def _articles(path: Path) -> list[ArticleXml]:
    return [item for item in iter_pubmed_xml(path.read_bytes()) if isinstance(item, ArticleXml)]


@pytest.fixture(scope="module")
def real_articles() -> dict[int, ET.Element]:
    assert ARTICLES.is_dir(), f"real data not found at {ARTICLES}"
    articles = {
        int(article.pmid or 0): ET.fromstring(article.xml)
        for path in sorted(ARTICLES.glob("*.xml"))
        for article in _articles(path)
    }
    assert len(articles) == 255
    return articles


@pytest.fixture(scope="module")
def modified(real_articles: dict[int, ET.Element]) -> dict[int, date]:
    return {
        pmid: article_identity(ET.tostring(root, encoding="unicode")).modified
        for pmid, root in real_articles.items()
    }


@pytest.fixture(scope="module")
def entrez(real_articles: dict[int, ET.Element], modified: dict[int, date]) -> dict[int, date]:
    days = {}
    for pmid, root in real_articles.items():
        days[pmid] = modified[pmid]
        for node in root.iter("PubMedPubDate"):
            if node.get("PubStatus") == "entrez":
                days[pmid] = date(*(int(node.findtext(k) or 0) for k in ("Year", "Month", "Day")))
    return days


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # The whole pubmed folder: articles, the sets they came from (with DeleteCitation blocks)
    # and esearch answers, which are not articles and must be skipped.
    with ReplayServer(PUBMED) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def big_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One synthetic day with more articles than esearch and the history server can list."""
    out = tmp_path_factory.mktemp("big-day")
    write_synthetic_pubmed_day(out, BIG_DAY, BIG_DAY_COUNT, seed=3)
    with ReplayServer(out) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def _search(http: httpx.Client, **params: str | int) -> ET.Element:
    response = http.get(ESEARCH, params={"db": "pubmed", "retmode": "xml", **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.content)


def _ids(result: ET.Element) -> list[int]:
    return [int(node.text or 0) for node in result.iterfind("IdList/Id")]


def _fetched(body: bytes) -> list[int]:
    return [int(article.pmid or 0) for article in iter_pubmed_xml(body)
            if isinstance(article, ArticleXml)]  # fmt: skip


def _mdat_range(first: str, last: str) -> dict[str, str]:
    return {"datetype": "mdat", "mindate": first, "maxdate": last}


def _expected(days: dict[int, date], first: date, last: date) -> list[int]:
    return sorted((pmid for pmid, day in days.items() if first <= day <= last), reverse=True)


def _search_text(root: ET.Element) -> list[str]:
    paths = ("MedlineCitation/Article/ArticleTitle", "MedlineCitation/Article/VernacularTitle",
             "MedlineCitation/Article/Abstract/AbstractText", ".//MeshHeading/DescriptorName",
             "MedlineCitation/KeywordList/Keyword")  # fmt: skip
    return [" ".join("".join(n.itertext()).split()).lower() for p in paths for n in root.findall(p)]


@pytest.mark.parametrize(
    ("first", "last"),
    [(date(2018, 1, 1), date(2018, 12, 31)), (date(2018, 11, 13), date(2018, 11, 13)),
     (date(1900, 1, 1), date(2100, 1, 1)), (date(2020, 6, 1), date(2020, 6, 30))],
)  # fmt: skip
def test_esearch_by_mdat_equals_the_modification_days_of_the_files(
    client: httpx.Client, modified: dict[int, date], first: date, last: date
) -> None:
    result = _search(
        client,
        term="all[sb]",
        retmax=9999,
        **_mdat_range(first.strftime("%Y/%m/%d"), last.isoformat()),
    )
    expected = _expected(modified, first, last)
    assert int(result.findtext("Count") or -1) == len(expected)
    assert _ids(result) == expected
    assert result.findtext("RetStart") == "0"
    assert result.findtext("RetMax") == str(len(expected))
    translation = result.findtext("QueryTranslation") or ""
    assert translation.endswith(f"{first:%Y/%m/%d}:{last:%Y/%m/%d}[Date - Modification]")


def test_all_sb_selects_every_article_once(client: httpx.Client, modified: dict[int, date]) -> None:
    result = _search(client, term="all[sb]", retmax=1000)
    assert int(result.findtext("Count") or -1) == 255
    assert _ids(result) == sorted(modified, reverse=True)
    assert result.find("WebEnv") is None
    assert result.find("TranslationSet") is not None


def test_retstart_and_retmax_page_through_the_result(
    client: httpx.Client, modified: dict[int, date]
) -> None:
    first, last = date(2016, 1, 1), date(2019, 12, 31)
    expected = _expected(modified, first, last)
    years = _mdat_range("2016/01/01", "2019/12/31")
    pages = [
        _search(client, term="all[sb]", retstart=start, retmax=40, **years)
        for start in range(0, len(expected) + 40, 40)
    ]
    assert [_ids(page) for page in pages[:-1]] == [
        expected[start : start + 40] for start in range(0, len(expected), 40)
    ]
    assert _ids(pages[-1]) == []
    assert [page.findtext("RetStart") for page in pages[:2]] == ["0", "40"]
    assert pages[-2].findtext("RetMax") == str(len(expected) % 40 or 40)
    default = _search(client, term="all[sb]")
    assert len(_ids(default)) == 20


def test_uid_ranges_restrict_by_pmid(client: httpx.Client, modified: dict[int, date]) -> None:
    everything = sorted(modified, reverse=True)
    low, high = everything[200], everything[50]
    in_range = [pmid for pmid in everything if low <= pmid <= high]
    for term in (f"all[sb] AND {low}:{high}[uid]", f"({low}:{high}[uid])", f"{high}:{low}[pmid]"):
        assert _ids(_search(client, term=term, retmax=500)) == in_range, term
    assert _ids(_search(client, term=f"{low}[uid]")) == [low]
    day_range = _mdat_range("2018/01/01", "2018/12/31")
    dated = _ids(_search(client, term=f"all[sb] AND {low}:{high}[uid]", retmax=500, **day_range))
    expected = [p for p in _expected(modified, date(2018, 1, 1), date(2018, 12, 31))
                if low <= p <= high]  # fmt: skip
    assert dated == expected
    assert 0 < len(dated) < len(in_range)


def test_text_terms_match_titles_abstracts_mesh_and_keywords(
    client: httpx.Client, real_articles: dict[int, ET.Element]
) -> None:
    texts = {pmid: _search_text(root) for pmid, root in real_articles.items()}

    def having(word: str) -> set[int]:
        return {pmid for pmid, values in texts.items() if any(word in v for v in values)}

    term = 'melanoma[tiab] OR "lung neoplasms"[MeSH Terms]'
    result = _search(client, term=term, retmax=500)
    expected = having("melanoma") | having("lung neoplasms")
    assert _ids(result) == sorted(expected, reverse=True)
    assert 0 < len(expected) < 255
    narrowed = _search(client, term=f"({term}) AND Humans[mh]", retmax=500)
    assert set(_ids(narrowed)) == expected & having("humans")
    excluded = _search(client, term="all[sb] NOT melanoma", retmax=500)
    assert set(_ids(excluded)) == set(texts) - having("melanoma")


def test_edat_selects_by_entrez_date_not_modification(
    client: httpx.Client, modified: dict[int, date], entrez: dict[int, date]
) -> None:
    first, last = date(2018, 1, 1), date(2018, 12, 31)
    by_entrez = _search(
        client, term="all[sb]", retmax=500, datetype="edat", mindate="2018", maxdate="2018"
    )
    by_modification = _search(client, term="all[sb]", retmax=500, **_mdat_range("2018", "2018"))
    assert _ids(by_entrez) == _expected(entrez, first, last)
    assert _ids(by_modification) == _expected(modified, first, last)
    assert set(_ids(by_entrez)) != set(_ids(by_modification))
    assert (by_entrez.findtext("QueryTranslation") or "").endswith("[Date - Entry]")


def test_history_efetch_returns_the_same_articles_as_an_id_fetch(client: httpx.Client) -> None:
    years = _mdat_range("2016-01-01", "2019-12-31")
    search = _search(client, term="all[sb]", usehistory="y", retmax=0, **years)
    count = int(search.findtext("Count") or 0)
    webenv, query_key = search.findtext("WebEnv"), search.findtext("QueryKey")
    assert re.fullmatch(r"MCID_[0-9a-f]{24}", webenv or "") and query_key == "1"
    assert _ids(search) == [] and search.findtext("RetMax") == "0"
    ids = _ids(_search(client, term="all[sb]", retmax=500, **years))
    assert len(ids) == count > 100
    batches = [
        client.get(EFETCH, params={"db": "pubmed", "WebEnv": webenv, "query_key": query_key,
                                   "retstart": start, "retmax": 100, "retmode": "xml"})
        for start in range(0, count, 100)
    ]  # fmt: skip
    by_history = [pmid for batch in batches for pmid in _fetched(batch.content)]
    by_id = client.post(EFETCH, data={"db": "pubmed", "id": ",".join(map(str, ids))})
    assert by_history == ids == _fetched(by_id.content)
    history_xml = b"".join(batch.content.split(b"<PubmedArticleSet>\n")[1] for batch in batches)
    assert history_xml.replace(b"</PubmedArticleSet>\n", b"") in by_id.content


def test_efetch_by_id_keeps_order_and_omits_unknown_ids(
    client: httpx.Client, modified: dict[int, date]
) -> None:
    known = sorted(modified)[:3]
    ids = [known[2], 1, known[0], 99_999_998, known[2], known[1]]
    response = client.get(EFETCH, params={"db": "pubmed", "id": ",".join(map(str, ids))})
    assert response.status_code == 200
    assert _fetched(response.content) == [known[2], known[0], known[1]]
    root = ET.fromstring(response.content)
    assert root.tag == "PubmedArticleSet"
    assert int(root.findtext("PubmedArticle/MedlineCitation/PMID") or 0) == known[2]
    assert _fetched(client.get(EFETCH, params={"id": "1,2"}).content) == []


def test_unknown_webenv_or_query_key_is_the_ncbi_error(client: httpx.Client) -> None:
    search = _search(client, term="all[sb]", usehistory="y", retmax=0)
    webenv = search.findtext("WebEnv") or ""
    for params in ({"WebEnv": "MCID_000000000000000000000000", "query_key": "1"},
                   {"WebEnv": webenv, "query_key": "2"}):  # fmt: skip
        response = client.get(EFETCH, params={"db": "pubmed", **params})
        assert response.status_code == 200
        root = ET.fromstring(response.content)
        assert root.tag == "eFetchResult"
        assert root.findtext("ERROR") == f"Unable to obtain query #{params['query_key']}"
    second = _search(client, term="melanoma", usehistory="y", WebEnv=webenv, retmax=0)
    assert second.findtext("WebEnv") == webenv and second.findtext("QueryKey") == "2"
    fetched = client.get(EFETCH, params={"WebEnv": webenv, "query_key": "2", "retmax": 500})
    assert len(_fetched(fetched.content)) == int(second.findtext("Count") or -1) > 0


@pytest.mark.parametrize(
    "params",
    [{"db": "pmc", "term": "all[sb]"}, {"term": "all[sb]", "retmode": "json"},
     {"term": "all[sb]", "datetype": "pdat", "mindate": "2019", "maxdate": "2020"},
     {"term": "all[sb]", "mindate": "2019/01/01", "maxdate": "2019/12/31"},
     {"term": "all[sb]", "reldate": "30"}, {"term": "all[sb]", "sort": "pub_date"},
     {"term": "medline[sb]"}, {"term": "2019/01/01:2019/12/31[mdat]"},
     {"term": "(melanoma"}, {"term": "all[sb]", "retmax": "-1"}],
)  # fmt: skip
def test_unsupported_esearch_requests_are_rejected_with_xml(
    client: httpx.Client, params: dict[str, str]
) -> None:
    response = client.get(ESEARCH, params=params)
    assert response.status_code == 400
    root = ET.fromstring(response.content)
    assert root.tag == "eSearchResult"
    assert root.findtext("ERROR")
    assert root.find("Count") is None


def test_empty_term_is_the_ncbi_error(client: httpx.Client) -> None:
    root = _search(client, term="")
    assert root.findtext("ERROR") == "Empty term and query_key - nothing todo"


def test_small_results_past_9999_are_empty_not_errors(client: httpx.Client) -> None:
    result = _search(client, term="all[sb]", retstart=10_000, retmax=20)
    assert result.findtext("ERROR") is None
    assert result.findtext("Count") == "255"
    assert _ids(result) == []


def test_big_day_lists_only_9999_records_like_pubmed(big_day: httpx.Client) -> None:
    day = _mdat_range(f"{BIG_DAY:%Y/%m/%d}", f"{BIG_DAY:%Y/%m/%d}")
    clamped = _search(big_day, term="all[sb]", retmax=20_000, **day)
    assert clamped.findtext("Count") == str(BIG_DAY_COUNT)
    assert clamped.findtext("RetMax") == "9999" and len(_ids(clamped)) == 9999
    assert clamped.findtext("WarningList/OutputMessage") == (
        "Restrictions achieved. start and count adjusted to 0, 9999"
    )
    tail = _search(big_day, term="all[sb]", retstart=9990, retmax=100, **day)
    assert _ids(tail) == _ids(clamped)[9990:]
    refused = _search(big_day, term="all[sb]", retstart=9999, **day)
    error = refused.findtext("ERROR") or ""
    assert "'retstart' cannot be larger than 9998" in error
    assert refused.find("Count") is None


def test_big_day_history_stops_at_9999_and_uid_ranges_reach_the_rest(
    big_day: httpx.Client,
) -> None:
    day = _mdat_range(f"{BIG_DAY:%Y-%m-%d}", f"{BIG_DAY:%Y-%m-%d}")
    search = _search(big_day, term="all[sb]", usehistory="y", retmax=0, **day)
    history = {"WebEnv": search.findtext("WebEnv"), "query_key": search.findtext("QueryKey")}
    tail = big_day.get(EFETCH, params={**history, "retstart": 9990, "retmax": 50})
    assert tail.status_code == 200 and len(_fetched(tail.content)) == 9
    beyond = big_day.get(EFETCH, params={**history, "retstart": 9999, "retmax": 50})
    assert beyond.status_code == 400
    assert "'retstart' cannot be larger than 9998" in (
        ET.fromstring(beyond.content).findtext("ERROR") or ""
    )
    # What the PubMed client does for such a day: split by PMID ranges until each part fits.
    middle = 97_000_000 + BIG_DAY_COUNT // 2
    halves = [f"all[sb] AND 1:{middle}[uid]", f"all[sb] AND {middle + 1}:99999999[uid]"]
    parts = [_ids(_search(big_day, term=term, retmax=9999, **day)) for term in halves]
    assert all(len(part) <= 9999 for part in parts)
    assert sorted(parts[0] + parts[1]) == list(range(97_000_000, 97_000_000 + BIG_DAY_COUNT))


def test_requests_to_eutils_are_counted(tmp_path: Path) -> None:
    with ReplayServer(tmp_path) as server, httpx.Client(base_url=server.url) as http:
        http.get(ESEARCH, params={"term": "all[sb]"})
        http.post(ESEARCH, data={"term": "all[sb]"})
        http.get(EFETCH, params={"id": "1"})
        assert server.request_count == 3
        assert server.requests_by_path() == {EFETCH: 1, ESEARCH: 2}
        assert len(server.articles) == 0


@pytest.mark.parametrize(("old_name", "new_name"), [("z.xml", "a.txt"), ("a.xml", "z.txt")])
def test_newest_version_wins_and_reload_rescans(
    tmp_path: Path, old_name: str, new_name: str
) -> None:
    source = ARTICLES / "30527807.xml"  # DateRevised 2019-09-10
    newer = source.read_bytes().replace(
        b"<DateRevised>\n            <Year>2019</Year>",
        b"<DateRevised>\n            <Year>2024</Year>",
    )
    assert newer != source.read_bytes()
    (tmp_path / old_name).write_bytes(source.read_bytes())
    (tmp_path / new_name).write_bytes(newer)  # recognized by content, not by extension
    (tmp_path / "not-pubmed.xml").write_bytes(b"<eSearchResult><Count>1</Count></eSearchResult>")
    with ReplayServer(tmp_path) as server, httpx.Client(base_url=server.url) as http:
        assert len(server.articles) == 1
        assert server.articles.skipped_files == 1
        assert _ids(_search(http, term="all[sb]", **_mdat_range("2024", "2024"))) == [30527807]
        assert _ids(_search(http, term="all[sb]", **_mdat_range("2019", "2019"))) == []
        fetched = http.get(EFETCH, params={"id": "30527807"}).content
        assert b"<Year>2024</Year>" in fetched
        (tmp_path / "more").mkdir()
        (tmp_path / "more" / "22663011.xml").write_bytes((ARTICLES / "22663011.xml").read_bytes())
        assert _ids(_search(http, term="all[sb]")) == [30527807]
        server.reload()
        assert _ids(_search(http, term="all[sb]")) == [30527807, 22663011]
        assert http.post("/__replay/reload").json() == {"studies": 0}
        assert len(server.articles) == 2
