"""Synthetic PubMed articles: determinism, PMIDs, trial citations, parsing and serving."""

from __future__ import annotations

import re
import statistics
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import astuple, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bioloupe_data.cli import main
from bioloupe_data.replay import synth
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic
from bioloupe_data.replay.synth_pubmed import (
    BIG_DAY_FIRST_PMID,
    MAX_ARTICLES,
    PMID_BASE,
    write_synthetic_pubmed_day,
)
from bioloupe_data.sources.pubmed import (
    ArticleXml,
    article_identity,
    find_nct_ids,
    iter_pubmed_xml,
    parse_article,
)

REAL_ARTICLES = Path(__file__).parents[1].parent / "shared" / "realdata" / "pubmed" / "articles"
END = date(2025, 3, 31)
DAYS, PER_DAY, PUBMED_PER_DAY = 4, 30, 150
ESEARCH = "/entrez/eutils/esearch.fcgi"
EFETCH = "/entrez/eutils/efetch.fcgi"


@dataclass(frozen=True)
class Article:
    day: date
    xml: str
    root: ET.Element

    @property
    def pmid(self) -> int:
        return int(self.root.findtext("MedlineCitation/PMID") or 0)

    @property
    def databank_ncts(self) -> list[str]:
        return [n.text or "" for n in self.root.iterfind(".//DataBank/AccessionNumberList/*")]

    @property
    def abstract(self) -> str:
        return " ".join("".join(n.itertext()) for n in self.root.iterfind(".//AbstractText"))


def _read_articles(out: Path) -> list[Article]:
    articles = []
    for path in sorted((out / "pubmed").glob("*.xml")):
        day = date.fromisoformat(path.stem)
        for item in iter_pubmed_xml(path.read_bytes()):
            assert isinstance(item, ArticleXml)
            articles.append(Article(day, item.xml, ET.fromstring(item.xml)))
    return articles


def _studies(out: Path) -> dict[str, str]:
    """NCT id -> lastUpdatePostDate of every synthetic study."""
    updates = {}
    for path in sorted((out / "ctgov").glob("*.json")):
        for study in orjson.loads(path.read_bytes())["studies"]:
            protocol: dict[str, Any] = study["protocolSection"]
            nct_id = protocol["identificationModule"]["nctId"]
            updates[nct_id] = protocol["statusModule"]["lastUpdatePostDateStruct"]["date"]
    return updates


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth-pubmed")
    write_synthetic(out, DAYS, PER_DAY, seed=1, end=END, pubmed_per_day=PUBMED_PER_DAY)
    return out


@pytest.fixture(scope="module")
def sample(run: Path) -> list[Article]:
    return _read_articles(run)


def test_same_seed_gives_identical_files_and_studies_do_not_change(tmp_path: Path) -> None:
    first = write_synthetic(tmp_path / "a", 2, 10, seed=5, end=END, pubmed_per_day=20)
    second = write_synthetic(tmp_path / "b", 2, 10, seed=5, end=END, pubmed_per_day=20)
    other = write_synthetic(tmp_path / "c", 2, 10, seed=6, end=END, pubmed_per_day=20)
    studies_only = write_synthetic(tmp_path / "d", 2, 10, seed=5, end=END, pubmed_per_day=0)
    default = write_synthetic(tmp_path / "e", 2, 10, seed=5, end=END)
    assert astuple(first) == astuple(second)
    names = sorted(path.name for path in (tmp_path / "a" / "pubmed").iterdir())
    assert names == ["2025-03-30.xml", "2025-03-31.xml"]
    for name in names:
        content = (tmp_path / "a" / "pubmed" / name).read_bytes()
        assert content == (tmp_path / "b" / "pubmed" / name).read_bytes()
        assert content != (tmp_path / "c" / "pubmed" / name).read_bytes()
    for name in ("2025-03-30.json", "2025-03-31.json"):
        study_bytes = (tmp_path / "a" / "ctgov" / name).read_bytes()
        assert study_bytes == (tmp_path / "d" / "ctgov" / name).read_bytes()
    assert (studies_only.articles, studies_only.pubmed_files) == (0, 0)
    assert not (tmp_path / "d" / "pubmed").exists()
    assert other.articles == first.articles == 40
    assert default.articles == 20 and len(_read_articles(tmp_path / "e")) == 20


def test_summary_counts_the_article_files(tmp_path: Path) -> None:
    summary = write_synthetic(tmp_path, 3, 5, seed=2, end=END, pubmed_per_day=12)
    files = sorted((tmp_path / "pubmed").iterdir())
    articles = _read_articles(tmp_path)
    assert summary.articles == len(articles) == 36
    assert summary.pubmed_files == len(files) == 3
    assert summary.pubmed_bytes == sum(path.stat().st_size for path in files)
    assert summary.citing_articles == sum(1 for a in articles if a.databank_ncts)
    assert summary.bytes == sum(path.stat().st_size for path in (tmp_path / "ctgov").iterdir())
    assert Counter(article.day for article in articles) == {
        END - timedelta(days=offset): 12 for offset in range(3)
    }


def test_pmids_are_unique_and_out_of_the_real_range(sample: list[Article]) -> None:
    pmids = [article.pmid for article in sample]
    real = {int(path.stem) for path in REAL_ARTICLES.glob("*.xml")}
    assert len(set(pmids)) == len(pmids) == DAYS * PUBMED_PER_DAY
    assert min(pmids) == PMID_BASE and max(pmids) < BIG_DAY_FIRST_PMID
    assert len(real) == 255 and max(real) < PMID_BASE


def test_every_article_parses_and_is_revised_on_its_day(sample: list[Article]) -> None:
    for article in sample:
        identity = article_identity(article.xml)
        assert identity.modified == article.day
        assert int(identity.pmid) == article.pmid
        assert parse_article(article.xml).pmid == str(article.pmid)
        revised = article.root.find("MedlineCitation/DateRevised")
        assert revised is not None
        assert date(*(int(revised.findtext(k) or 0) for k in ("Year", "Month", "Day"))) == (
            article.day
        )


def test_a_fifth_cite_trials_of_the_same_run_in_databank_and_abstract(
    run: Path, sample: list[Article]
) -> None:
    studies = _studies(run)
    citing = [article for article in sample if article.databank_ncts]
    assert 0.14 <= len(citing) / len(sample) <= 0.26
    for article in citing:
        (nct_id,) = article.databank_ncts
        assert nct_id in studies
        assert studies[nct_id] <= article.day.isoformat()
        assert find_nct_ids(article.abstract) == [nct_id]
    others = [article for article in sample if not article.databank_ncts]
    assert all(not find_nct_ids(article.abstract) for article in others)
    cited_days = {studies[article.databank_ncts[0]] for article in citing}
    assert cited_days == {(END - timedelta(days=n)).isoformat() for n in range(DAYS)}


def test_the_citing_fraction_is_configurable(tmp_path: Path) -> None:
    none = write_synthetic(tmp_path / "none", 1, 5, end=END, pubmed_per_day=30, nct_fraction=0)
    every = write_synthetic(tmp_path / "all", 1, 5, end=END, pubmed_per_day=30, nct_fraction=1)
    assert (none.citing_articles, every.citing_articles) == (0, 30)
    assert all(article.databank_ncts for article in _read_articles(tmp_path / "all"))
    with pytest.raises(ValueError):
        write_synthetic(tmp_path / "bad", 1, 5, end=END, pubmed_per_day=3, nct_fraction=1.5)
    with pytest.raises(ValueError):
        write_synthetic(tmp_path / "bad", 1, 5, end=END, pubmed_per_day=-1)
    with pytest.raises(ValueError):
        write_synthetic(tmp_path / "bad", 2, 5, end=END, pubmed_per_day=MAX_ARTICLES // 2 + 1)
    assert not (tmp_path / "bad").exists()


def test_structure_and_variety_like_real_articles(sample: list[Article]) -> None:
    roots = [article.root for article in sample]
    statuses = Counter(map(_status, roots))
    assert set(statuses) == {
        "MEDLINE", "PubMed-not-MEDLINE", "In-Process", "In-Data-Review", "Publisher"
    }  # fmt: skip
    assert statuses["MEDLINE"] > len(roots) * 0.7
    for root in roots:
        indexed = _status(root) == "MEDLINE"
        assert (root.find(".//MeshHeadingList") is not None) == indexed
    assert any(root.find(".//Author/CollectiveName") is not None for root in roots)
    assert any(root.find(".//Author/AffiliationInfo/Affiliation") is not None for root in roots)
    assert any(root.find(".//MeshHeading/QualifierName") is not None for root in roots)
    assert any(root.find(".//AbstractText[@Label]") is not None for root in roots)
    assert any(root.find(".//AbstractText") is not None and root.find(".//AbstractText[@Label]")
               is None for root in roots)  # fmt: skip
    assert any(root.find(".//Abstract") is None for root in roots)
    assert any(root.find(".//AbstractText/i") is not None for root in roots)
    dois = sum(root.find(".//ArticleId[@IdType='doi']") is not None for root in roots)
    assert 0.8 <= dois / len(roots) <= 0.97
    months = {root.findtext(".//JournalIssue/PubDate/Month") for root in roots} - {None}
    assert "Jan" in months or "Feb" in months
    assert any((month or "").isdigit() for month in months)
    assert any(root.find(".//PubDate/MedlineDate") is not None for root in roots)
    foreign = [root for root in roots if root.findtext(".//Language") != "eng"]
    assert foreign and all((r.findtext(".//ArticleTitle") or "").startswith("[") for r in foreign)
    assert any(root.find(".//ReferenceList/Reference") is not None for root in roots)
    entrez_after_revision = [article for article in sample if article.day < _entrez(article.root)]
    assert not entrez_after_revision


def test_article_sizes_are_close_to_the_real_ones(sample: list[Article]) -> None:
    def compact_size(xml: str) -> int:
        return len(re.sub(r">\s+<", "><", xml).encode("utf-8"))

    real = [
        compact_size(item.xml)
        for path in sorted(REAL_ARTICLES.glob("*.xml"))
        for item in iter_pubmed_xml(path.read_bytes())
        if isinstance(item, ArticleXml)
    ]
    synthetic = [compact_size(article.xml) for article in sample]
    assert len(real) == 255
    assert abs(statistics.median(synthetic) / statistics.median(real) - 1) <= 0.25
    assert max(synthetic) > 2.5 * statistics.median(synthetic)


def _status(root: ET.Element) -> str:
    citation = root.find("MedlineCitation")
    assert citation is not None
    return citation.get("Status", "")


def _entrez(root: ET.Element) -> date:
    node = root.find(".//History/PubMedPubDate[@PubStatus='entrez']")
    assert node is not None
    return date(*(int(node.findtext(k) or 0) for k in ("Year", "Month", "Day")))


def test_the_replay_server_serves_them_by_mdat_day(run: Path, sample: list[Article]) -> None:
    by_day: dict[date, list[int]] = {}
    for article in sample:
        by_day.setdefault(article.day, []).append(article.pmid)
    with ReplayServer(run) as server, httpx.Client(base_url=server.url) as http:
        assert len(server.articles) == len(sample)
        assert len(server.store) == DAYS * PER_DAY
        for day, pmids in by_day.items():
            search = http.get(ESEARCH, params={"db": "pubmed", "term": "all[sb]", "datetype":
                              "mdat", "mindate": f"{day:%Y/%m/%d}", "maxdate":
                              f"{day:%Y/%m/%d}", "retmax": 1000})  # fmt: skip
            ids = [int(n.text or 0) for n in ET.fromstring(search.content).iter("Id")]
            assert ids == sorted(pmids, reverse=True)
        some = by_day[END][:5]
        fetched = http.get(EFETCH, params={"db": "pubmed", "id": ",".join(map(str, some))})
        served = [item.pmid for item in iter_pubmed_xml(fetched.content)]
        assert served == [str(pmid) for pmid in some]
        cited = next(article for article in sample if article.databank_ncts)
        by_nct = http.get(ESEARCH, params={"term": cited.databank_ncts[0], "retmax": 100})
        found = [int(n.text or 0) for n in ET.fromstring(by_nct.content).iter("Id")]
        assert cited.pmid in found


def test_one_big_day(tmp_path: Path) -> None:
    ncts = ["NCT90000001", "NCT90000002"]
    summary = write_synthetic_pubmed_day(tmp_path / "a", END, 300, seed=4, nct_ids=ncts)
    again = write_synthetic_pubmed_day(tmp_path / "b", END, 300, seed=4, nct_ids=ncts)
    path = tmp_path / "a" / "pubmed" / "2025-03-31.xml"
    assert path.read_bytes() == (tmp_path / "b" / "pubmed" / "2025-03-31.xml").read_bytes()
    articles = _read_articles(tmp_path / "a")
    assert summary == again and summary.articles == len(articles) == 300
    assert [a.pmid for a in articles] == list(range(BIG_DAY_FIRST_PMID, BIG_DAY_FIRST_PMID + 300))
    assert all(article_identity(a.xml).modified == END for a in articles)
    assert {nct for a in articles for nct in a.databank_ncts} == set(ncts)
    plain = write_synthetic_pubmed_day(tmp_path / "c", END, 50, first_pmid=PMID_BASE)
    assert plain.citing == 0
    wrapped = synth.write_synthetic_pubmed_day(tmp_path / "e", END, 300, seed=4, nct_ids=ncts)
    assert wrapped == summary
    assert (tmp_path / "e" / "pubmed" / "2025-03-31.xml").read_bytes() == path.read_bytes()
    for count, first_pmid in ((0, BIG_DAY_FIRST_PMID), (10, 1), (2, 99_999_999)):
        with pytest.raises(ValueError):
            write_synthetic_pubmed_day(tmp_path / "d", END, count, first_pmid=first_pmid)


def test_cli_writes_articles_per_day_by_default(tmp_path: Path) -> None:
    args = ["synth", "--days", "2", "--per-day", "3", "--seed", "9"]
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    assert main([*args, "--out", str(tmp_path / "more"), "--pubmed-per-day", "7"]) == 0
    assert main([*args, "--out", str(tmp_path / "none"), "--pubmed-per-day", "0"]) == 0
    per_day = Counter(article.day for article in _read_articles(tmp_path / "default"))
    assert len(per_day) == 2 and set(per_day.values()) == {3}
    assert len(_read_articles(tmp_path / "more")) == 14
    assert not (tmp_path / "none" / "pubmed").exists()
    assert len(list((tmp_path / "none" / "ctgov").glob("*.json"))) == 2
