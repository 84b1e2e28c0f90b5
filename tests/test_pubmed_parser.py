"""PubMed efetch XML splitter and article parser, and the core.publications DDL, against the
real records in ../shared/realdata/pubmed."""

from __future__ import annotations

import hashlib
import html
import io
import re
import socket
import threading
import tracemalloc
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bioloupe_data.sources.pubmed import (
    CHILD_TABLES,
    PUBLICATION_COLUMNS,
    SOURCE,
    ArticleParseError,
    ArticleXml,
    DeletedCitations,
    ParsedArticle,
    article_identity,
    find_nct_ids,
    iter_pubmed_xml,
    parse_article,
)
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.migrate import migrate

PUBMED = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "pubmed"
ARTICLES = PUBMED / "articles"
SETS = PUBMED / "sets"
BOOKKEEPING_COLUMNS = (
    "source_updated_at",
    "version_key",
    "content_hash",
    "derivation_hash",
    "partition_date",
    "normalized_at",
)
MONTH_ABBREVIATIONS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
MONTHS = {name: i for i, name in enumerate(MONTH_ABBREVIATIONS, 1)}
ORCID = re.compile(r"[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{3}[0-9X]")


@cache
def article_files() -> tuple[Path, ...]:
    return tuple(sorted(ARTICLES.glob("*.xml")))


@cache
def raw_text(pmid: str) -> str:
    return (ARTICLES / f"{pmid}.xml").read_text(encoding="utf-8")


@cache
def real_articles() -> tuple[ArticleXml, ...]:
    records = [record for path in article_files() for record in iter_pubmed_xml(path.read_bytes())]
    return tuple(record for record in records if isinstance(record, ArticleXml))


@cache
def parsed_by_pmid() -> dict[str, ParsedArticle]:
    return {record.pmid or "": parse_article(record.xml) for record in real_articles()}


def parsed(pmid: str) -> ParsedArticle:
    return parsed_by_pmid()[pmid]


def value(article: ParsedArticle, column: str) -> Any:
    return article.publication[PUBLICATION_COLUMNS.index(column)]


def values(column: str) -> dict[str, Any]:
    return {pmid: value(article, column) for pmid, article in parsed_by_pmid().items()}


def child_dicts(article: ParsedArticle, table: str) -> list[dict[str, Any]]:
    return [dict(zip(CHILD_TABLES[table], row, strict=True)) for row in article.children[table]]


def all_child_dicts(table: str) -> Iterator[dict[str, Any]]:
    for article in parsed_by_pmid().values():
        yield from child_dicts(article, table)


def pub_date_block(pmid: str) -> str:
    match = re.search(r"<PubDate>(.*?)</PubDate>", raw_text(pmid), re.S)
    assert match is not None
    return match.group(1)


def tag_text(block: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>([^<]*)</{tag}>", block)
    return html.unescape(match.group(1)) if match else None


def group(pattern: str, text: str, count: int = 1) -> Any:
    """The first match's group 1 (or groups 1..count as a tuple); the match must exist."""
    match = re.search(pattern, text, re.S)
    assert match is not None, pattern
    return match.group(1) if count == 1 else match.groups()[:count]


def pmids_where(pattern: str) -> set[str]:
    return {path.stem for path in article_files() if re.search(pattern, raw_text(path.stem), re.S)}


def synthetic(
    *,
    pub_date: str = "<Year>2020</Year>",
    article: str = "<ArticleTitle>A title.</ArticleTitle>",
    pmid: str = '<PMID Version="1">123</PMID>',
    dates: str = "<DateRevised><Year>2021</Year><Month>02</Month><Day>03</Day></DateRevised>",
    pubmed_data: str = "",
) -> str:
    """A minimal PubmedArticle with the given parts."""
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">{pmid}{dates}'
        f"<Article><Journal><JournalIssue><PubDate>{pub_date}</PubDate></JournalIssue></Journal>"
        f"{article}</Article></MedlineCitation>"
        f"<PubmedData>{pubmed_data}</PubmedData></PubmedArticle>"
    )


def strings_in(item: Any) -> Iterator[str]:
    if isinstance(item, str):
        yield item
    elif isinstance(item, list | tuple):
        for element in item:
            yield from strings_in(element)


# --- the real articles -------------------------------------------------------------------------


def test_the_real_data_is_there() -> None:
    assert SOURCE == "pubmed"
    assert len(article_files()) == 255
    assert len(list(SETS.glob("*.xml"))) == 18


def test_every_article_file_yields_exactly_one_standalone_article_with_its_pmid() -> None:
    for path in article_files():
        records = list(iter_pubmed_xml(path.read_bytes()))
        assert len(records) == 1, path.name
        record = records[0]
        assert isinstance(record, ArticleXml)
        assert record.pmid == path.stem
        assert record.xml.startswith("<PubmedArticle") and record.xml.endswith("</PubmedArticle>")
        assert "<!DOCTYPE" not in record.xml and "<?xml" not in record.xml
        assert ET.fromstring(record.xml).tag == "PubmedArticle"


def test_every_real_article_parses_into_well_shaped_rows() -> None:
    assert len(parsed_by_pmid()) == 255
    for path in article_files():
        article = parsed(path.stem)
        assert article.pmid == path.stem == value(article, "pmid")
        assert len(article.publication) == len(PUBLICATION_COLUMNS)
        assert set(article.children) == set(CHILD_TABLES)
        for table, rows in article.children.items():
            assert [row[:2] for row in rows] == [(path.stem, i) for i in range(1, len(rows) + 1)]
            assert all(len(row) == len(CHILD_TABLES[table]) for row in rows), table
        assert len(article.derivation_hash) == 64


def test_parse_article_also_accepts_a_file_holding_a_set_of_one() -> None:
    path = article_files()[0]
    assert parse_article(path.read_bytes()) == parsed(path.stem)
    assert parse_article(path.read_text(encoding="utf-8")) == parsed(path.stem)


def test_a_compact_efetch_article_reads_into_every_column() -> None:
    row = dict(zip(PUBLICATION_COLUMNS, parsed("22663011").publication, strict=True))
    assert row.pop("abstract").startswith("BACKGROUND: Activating mutations in serine-threonine")
    assert row == {
        "pmid": "22663011",
        "title": "Improved survival with MEK inhibition in BRAF-mutated melanoma.",
        "vernacular_title": None,
        "journal_title": "The New England journal of medicine",
        "journal_iso_abbreviation": "N Engl J Med",
        "issn": "1533-4406",
        "volume": "367",
        "issue": "2",
        "pages": "107-14",
        "publication_date": date(2012, 7, 12),
        "publication_date_precision": "day",
        "publication_date_text": "2012 Jul 12",
        "publication_year": 2012,
        "status": "MEDLINE",
        "publication_status": "ppublish",
        "doi": "10.1056/NEJMoa1203421",
        "pmc_id": None,
        "language": "eng",
        "publication_types": [
            "Clinical Trial, Phase III",
            "Comparative Study",
            "Journal Article",
            "Multicenter Study",
            "Randomized Controlled Trial",
            "Research Support, Non-U.S. Gov't",
        ],
        "date_revised": date(2026, 5, 18),
        "date_completed": date(2012, 7, 27),
        "entrez_date": date(2012, 6, 6),
        "keywords": [],
        "nlm_unique_id": "0255562",
        "article_date": date(2012, 6, 4),
        "date_created": None,
    }


def test_pmc_ids_and_dois_come_from_the_article_own_id_list_not_from_references() -> None:
    with_pmc = {pmid: pmc for pmid, pmc in values("pmc_id").items() if pmc}
    assert len(with_pmc) == 80
    for pmid, pmc_id in with_pmc.items():
        own_ids = raw_text(pmid).split("<ReferenceList>")[0]
        assert f'<ArticleId IdType="pmc">{pmc_id}</ArticleId>' in own_ids, pmid
    reference = (
        "<ReferenceList><Reference><Citation>Other.</Citation><ArticleIdList>"
        '<ArticleId IdType="doi">10.1/other</ArticleId><ArticleId IdType="pmc">PMC1</ArticleId>'
        "</ArticleIdList></Reference></ReferenceList>"
    )
    only_cited = parse_article(synthetic(pubmed_data=reference))
    assert (value(only_cited, "doi"), value(only_cited, "pmc_id")) == (None, None)
    own = '<ArticleIdList><ArticleId IdType="pmc">PMC2</ArticleId></ArticleIdList>'
    assert value(parse_article(synthetic(pubmed_data=own + reference)), "pmc_id") == "PMC2"


def test_every_article_has_a_non_empty_title() -> None:
    titles = values("title")
    assert all(isinstance(title, str) and title.strip() for title in titles.values())


def test_author_rows_match_the_author_elements() -> None:
    total = 0
    for pmid, article in parsed_by_pmid().items():
        expected = len(re.findall(r"<Author[\s>]", raw_text(pmid)))
        assert len(article.children["publication_authors"]) == expected, pmid
        total += expected
    assert total == 1823


def test_mesh_rows_match_the_mesh_headings() -> None:
    for pmid, article in parsed_by_pmid().items():
        expected = len(re.findall(r"<MeshHeading>", raw_text(pmid)))
        assert len(article.children["publication_mesh"]) == expected, pmid


def test_publication_year_is_the_pubdate_year_or_the_medline_date_year() -> None:
    for pmid, year in values("publication_year").items():
        block = pub_date_block(pmid)
        year_text = tag_text(block, "Year")
        if year_text is None:
            year_text = group(r"([0-9]{4})", tag_text(block, "MedlineDate") or "")
        assert year == int(year_text), pmid


def test_every_article_has_an_identity_dated_by_date_revised_else_entrez() -> None:
    revised = re.compile(
        r"<DateRevised>\s*<Year>(\d+)</Year>\s*<Month>(\d+)</Month>\s*<Day>(\d+)</Day>"
    )
    entrez = re.compile(
        r'<PubMedPubDate PubStatus="entrez">\s*<Year>(\d+)</Year>\s*'
        r"<Month>(\d+)</Month>\s*<Day>(\d+)</Day>"
    )
    by_entrez = 0
    hashes = set()
    for record in real_articles():
        identity = article_identity(record.xml)
        text = raw_text(record.pmid or "")
        match = revised.search(text)
        if match is None:
            by_entrez += 1
            match = entrez.search(text)
        assert match is not None
        assert identity.pmid == record.pmid
        assert identity.modified == date(*map(int, match.groups()))
        assert identity.version_key == "0001"
        assert re.fullmatch(r"[0-9a-f]{64}", identity.content_hash)
        hashes.add(identity.content_hash)
    assert by_entrez == 13
    assert len(hashes) == 255


def _identity_or_reason(identity: Callable[[], object]) -> object:
    try:
        return identity()
    except ArticleParseError as exc:
        return exc.reason


def test_the_identity_a_stream_gives_each_article_is_the_one_its_xml_gives() -> None:
    """Landing takes the identity the stream read off each article's element; stored content
    hashes were made from the serialized XML, so the two must never differ."""
    bodies = [p.read_bytes() for p in sorted(ARTICLES.glob("*.xml")) + sorted(SETS.glob("*.xml"))]
    bodies.append(
        b"<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>abc</PMID>"
        b"</MedlineCitation></PubmedArticle></PubmedArticleSet>"
    )
    compared = 0
    reasons = Counter()
    for body in bodies:
        for record in iter_pubmed_xml(body):
            if not isinstance(record, ArticleXml):
                continue
            streamed = _identity_or_reason(record.identity)
            assert streamed == _identity_or_reason(lambda r=record: article_identity(r.xml))
            compared += 1
            if isinstance(streamed, str):
                reasons[streamed] += 1
    assert compared > 255
    assert reasons["invalid_pmid"] >= 1


def _documented_canonical(element: ET.Element) -> list[Any]:
    """The content hash's canonical form as documented: tag, sorted attributes, text and the
    children with their tails, whitespace-only text and tails dropped."""

    def significant(text: str | None) -> str | None:
        return text if text is not None and text.strip() else None

    return [
        element.tag,
        sorted(element.attrib.items()),
        significant(element.text),
        [[_documented_canonical(child), significant(child.tail)] for child in element],
    ]


def test_content_hashes_are_the_sha256_of_the_documented_canonical_form() -> None:
    """Stored content hashes decide what a re-fetch rewrites: a change to how they are computed
    must not change a single one."""
    odd_space = (
        "<PubmedArticle><MedlineCitation><PMID Version='1'>7</PMID><DateRevised><Year>2024"
        "</Year><Month>01</Month><Day>02</Day></DateRevised><Article z='2' a='1'>"
        "<ArticleTitle>\u00a0</ArticleTitle><Abstract> <AbstractText></AbstractText>"
        "\u2003\n<AbstractText> x </AbstractText>\t</Abstract></Article></MedlineCitation>"
        "</PubmedArticle>"
    )
    xmls = [r.xml for r in real_articles()] + [odd_space]
    for xml in xmls:
        element = ET.fromstring(xml)
        documented = hashlib.sha256(orjson.dumps(_documented_canonical(element))).hexdigest()
        assert article_identity(xml).content_hash == documented


# --- the anomalies listed in ANOMALIES.md --------------------------------------------------------


def test_medline_dates_keep_their_text_and_become_month_precision_dates() -> None:
    medline = pmids_where(r"<MedlineDate>")
    assert len(medline) == 12
    for pmid in medline:
        text = tag_text(pub_date_block(pmid), "MedlineDate")
        article = parsed(pmid)
        assert value(article, "publication_date_text") == text
        assert value(article, "publication_date_precision") == "month"
        year, month = group(r"([0-9]{4}) ([A-Z][a-z]{2})", text or "", 2)
        assert value(article, "publication_date") == date(int(year), MONTHS[month[:3]], 1)
    texts = {value(parsed(pmid), "publication_date_text"): parsed(pmid) for pmid in medline}
    assert value(texts["2008 Sep-Oct"], "publication_date") == date(2008, 9, 1)
    assert value(texts["2019 Jan - Feb"], "publication_date") == date(2019, 1, 1)


def test_seasons_become_season_precision_dates() -> None:
    seasons = pmids_where(r"<Season>")
    assert len(seasons) == 3
    assert {value(parsed(p), "publication_date_precision") for p in seasons} == {"season"}
    article = parsed("12091962")
    assert value(article, "publication_date") == date(1990, 3, 1)
    assert value(article, "publication_date_text") == "1990 Spring"
    summer = {value(parsed(p), "publication_date_text"): parsed(p) for p in seasons}
    assert value(summer["2017 Summer"], "publication_date") == date(2017, 6, 1)


def test_text_and_numeric_months_are_both_read() -> None:
    kinds: Counter[str] = Counter()
    for pmid in parsed_by_pmid():
        month = tag_text(pub_date_block(pmid), "Month")
        if month is None:
            continue
        kinds["numeric" if month.isdigit() else "text"] += 1
        expected = int(month) if month.isdigit() else MONTHS[month[:3]]
        publication_date = value(parsed(pmid), "publication_date")
        assert publication_date.month == expected, pmid
        day = tag_text(pub_date_block(pmid), "Day")
        assert publication_date.day == (int(day) if day else 1)
        precision = value(parsed(pmid), "publication_date_precision")
        assert precision == ("day" if day else "month")
    assert kinds == {"text": 143, "numeric": 79}


def test_articles_without_an_abstract_have_a_null_abstract() -> None:
    without = pmids_where(r"^(?!.*<Abstract>)")
    assert len(without) == 25
    abstracts = values("abstract")
    assert {pmid for pmid, text in abstracts.items() if text is None} == without


def test_an_empty_abstract_text_is_skipped_and_labels_are_kept() -> None:
    abstract = value(parsed("33278872"), "abstract")
    assert abstract.startswith("ABSTRACT: Strict physical distancing measures")
    assert "\n" not in abstract
    assert "Commonwealth of Australia" not in abstract
    labelled = value(parsed("22663011"), "abstract").split("\n")
    assert [section.split(":")[0] for section in labelled] == [
        "BACKGROUND",
        "METHODS",
        "RESULTS",
        "CONCLUSIONS",
    ]
    only_empty = synthetic(
        article="<ArticleTitle>T</ArticleTitle><Abstract><AbstractText/>"
        "<AbstractText>  </AbstractText></Abstract>"
    )
    assert value(parse_article(only_empty), "abstract") is None


def test_an_empty_article_title_falls_back_to_the_vernacular_title() -> None:
    article = parsed("33279447")
    assert "<ArticleTitle/>" in raw_text("33279447")
    assert value(article, "title") == "Pere Barceló." == value(article, "vernacular_title")


def test_bracketed_translated_titles_keep_their_text() -> None:
    bracketed = {pmid: t for pmid, t in values("title").items() if t.startswith("[")}
    assert len(bracketed) == 15
    for pmid, title in bracketed.items():
        assert title == tag_text(raw_text(pmid), "ArticleTitle"), pmid
        assert title.rstrip(".").endswith("]")


def test_inline_markup_in_titles_is_read_as_text() -> None:
    assert value(parsed("29301793"), "title") == (
        "O-GlcNAcylation of the Tumor Suppressor FOXO3 Triggers Aberrant Cancer Cell Growth."
    )
    assert "the TERT gene region" in value(parsed("27797938"), "title")
    assert not [t for t in values("title").values() if re.search(r"</?(i|sup|sub|b)>", t)]


def test_collective_name_authors_have_only_a_collective_name() -> None:
    groups = [row for row in all_child_dicts("publication_authors") if row["collective_name"]]
    assert len(groups) == 3
    assert all(row["last_name"] is None and row["fore_name"] is None for row in groups)
    last = child_dicts(parsed("22663011"), "publication_authors")[-1]
    assert (last["ordinal"], last["collective_name"]) == (26, "METRIC Study Group")
    first = child_dicts(parsed("22663011"), "publication_authors")[0]
    assert (first["last_name"], first["fore_name"], first["initials"]) == (
        "Flaherty",
        "Keith T",
        "KT",
    )
    assert first["affiliations"][0].startswith("Massachusetts General Hospital Cancer Center")
    assert first["is_valid"] is True


def test_articles_without_a_doi_have_a_null_doi() -> None:
    dois = values("doi")
    assert sum(doi is None for doi in dois.values()) == 25
    for pmid, doi in dois.items():
        text = raw_text(pmid)
        located = re.search(r'<ELocationID EIdType="doi" ValidYN="Y">([^<]*)<', text)
        listed = re.search(r'<PubmedData>.*?<ArticleId IdType="doi">([^<]*)<', text, re.S)
        match = located or listed
        assert doi == (match.group(1) if match else None), pmid


def test_every_status_is_read() -> None:
    raw_statuses = Counter(
        group(r'<MedlineCitation[^>]*Status="([^"]+)"', raw_text(pmid)) for pmid in parsed_by_pmid()
    )
    assert Counter(values("status").values()) == raw_statuses
    assert set(raw_statuses) == {
        "MEDLINE",
        "In-Process",
        "In-Data-Review",
        "Publisher",
        "PubMed-not-MEDLINE",
    }
    assert Counter(values("publication_status").values()) == {
        "ppublish": 229,
        "epublish": 23,
        "aheadofprint": 3,
    }


def test_orcids_are_normalized_to_the_bare_form() -> None:
    identifiers = sum(len(re.findall(r'Source="ORCID"', raw_text(p))) for p in parsed_by_pmid())
    orcids = [row["orcid"] for row in all_child_dicts("publication_authors") if row["orcid"]]
    assert len(orcids) == identifiers == 36
    assert all(ORCID.fullmatch(orcid) for orcid in orcids)
    assert any(orcid.endswith("X") for orcid in orcids)


def test_old_records_use_date_created_and_an_article_level_affiliation() -> None:
    created = pmids_where(r"<DateCreated>")
    assert len(created) == 15
    assert all(value(parsed(pmid), "date_created") is not None for pmid in created)
    article = parsed("22441635")
    affiliation = "Department of Respiratory Medicine, Hamamatsu University School of Medicine"
    first, *others = child_dicts(article, "publication_authors")
    assert first["affiliations"][0].startswith(affiliation)
    assert all(author["affiliations"] == [] for author in others)


def test_mesh_headings_with_qualifiers() -> None:
    mesh = {row["descriptor"]: row for row in child_dicts(parsed("22663011"), "publication_mesh")}
    melanoma = mesh["Melanoma"]
    assert melanoma["descriptor_ui"] == "D008545"
    assert melanoma["qualifiers"] == ["drug therapy", "genetics", "mortality"]
    assert melanoma["major_qualifiers"] == ["drug therapy"]
    assert melanoma["is_major_topic"] is True
    assert mesh["Male"]["is_major_topic"] is False and mesh["Male"]["qualifiers"] == []
    old = child_dicts(parsed("12091962"), "publication_mesh")
    assert {row["descriptor"] for row in old if row["is_major_topic"]} >= {"Prisoners"}


def test_databank_trials_win_over_the_same_id_in_the_abstract() -> None:
    assert "NCT01245062" in value(parsed("22663011"), "abstract")
    assert parsed("22663011").children["publication_trials"] == [
        ("22663011", 1, "NCT01245062", "databank")
    ]
    linked = {row["pmid"]: row["nct_id"] for row in all_child_dicts("publication_trials")}
    assert linked == {
        "22663011": "NCT01245062",
        "22705118": "NCT00881296",
        "29514256": "NCT01095302",
    }


def test_trial_origins_rank_databank_then_title_then_abstract() -> None:
    article = synthetic(
        article=(
            "<ArticleTitle>Results of nct00000002 (NCT 00000003)</ArticleTitle>"
            "<Abstract><AbstractText>See NCT00000001, NCT00000003 and NCT-00000004."
            "</AbstractText></Abstract><DataBankList><DataBank><DataBankName>ClinicalTrials.gov"
            "</DataBankName><AccessionNumberList><AccessionNumber>NCT00000001</AccessionNumber>"
            "<AccessionNumber>not-an-id</AccessionNumber></AccessionNumberList></DataBank>"
            "<DataBank><DataBankName>ISRCTN</DataBankName><AccessionNumberList>"
            "<AccessionNumber>NCT00000009</AccessionNumber></AccessionNumberList></DataBank>"
            "</DataBankList>"
        )
    )
    rows = parse_article(article).children["publication_trials"]
    assert [row[1:] for row in rows] == [
        (1, "NCT00000001", "databank"),
        (2, "NCT00000002", "title"),
        (3, "NCT00000003", "title"),
        (4, "NCT00000004", "abstract"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, []),
        ("", []),
        ("NCT01234567", ["NCT01234567"]),
        ("nct01234567 and NCT01234567 again", ["NCT01234567"]),
        ("ids NCT 01234567, NCT-07654321.", ["NCT01234567", "NCT07654321"]),
        ("(NCT02000000)(NCT01000000)", ["NCT02000000", "NCT01000000"]),
        ("NCT012345678 has nine digits", []),
        ("NCT0123456 has seven digits", []),
        ("XNCT01234567 is glued to a letter", []),
        ("NCT  01234567 has two spaces", []),
    ],
)
def test_find_nct_ids(text: str | None, expected: list[str]) -> None:
    assert find_nct_ids(text) == expected


# --- dates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pub_date", "expected"),
    [
        ("<Year>2001</Year><Month>Sept</Month>", (date(2001, 9, 1), "month", 2001)),
        ("<Year>2001</Year><Month>January</Month><Day>5</Day>", (date(2001, 1, 5), "day", 2001)),
        ("<Year>2001</Year><Month>2</Month><Day>30</Day>", (date(2001, 2, 1), "month", 2001)),
        ("<Year>2001</Year><Month>13</Month>", (date(2001, 1, 1), "year", 2001)),
        ("<Year>2001</Year><Month>Ju</Month>", (date(2001, 1, 1), "year", 2001)),
        ("<Year>2001</Year><Season>Winter</Season>", (date(2001, 1, 1), "season", 2001)),
        ("<Year>2001</Year><Season>Fall</Season>", (date(2001, 9, 1), "season", 2001)),
        ("<Year>2001</Year><Season>Autumn</Season>", (date(2001, 9, 1), "season", 2001)),
        ("<MedlineDate>1998 Dec-1999 Jan</MedlineDate>", (date(1998, 12, 1), "month", 1998)),
        ("<MedlineDate>2000 Spring</MedlineDate>", (date(2000, 3, 1), "season", 2000)),
        ("<MedlineDate>Summer 2003</MedlineDate>", (date(2003, 6, 1), "season", 2003)),
        ("<MedlineDate>Dec 2003</MedlineDate>", (date(2003, 12, 1), "month", 2003)),
        ("<MedlineDate>2003 Jul 15-21</MedlineDate>", (date(2003, 7, 15), "day", 2003)),
        ("<MedlineDate>2003 Feb 30-Mar 2</MedlineDate>", (date(2003, 2, 1), "month", 2003)),
        ("<MedlineDate>1989-1990</MedlineDate>", (date(1989, 1, 1), "year", 1989)),
        ("<MedlineDate>1999 4th Quarter</MedlineDate>", (date(1999, 1, 1), "year", 1999)),
        ("<MedlineDate>0000 Jan</MedlineDate>", (None, None, None)),
        ("<MedlineDate>undated</MedlineDate>", (None, None, None)),
        ("<Year>20x1</Year><Month>Jan</Month>", (None, None, None)),
        ("", (None, None, None)),
    ],
)
def test_publication_dates_never_crash_and_fall_back(
    pub_date: str, expected: tuple[Any, ...]
) -> None:
    article = parse_article(synthetic(pub_date=pub_date))
    columns = ("publication_date", "publication_date_precision", "publication_year")
    assert tuple(value(article, column) for column in columns) == expected


def test_publication_date_text_joins_the_structured_parts() -> None:
    article = parse_article(synthetic(pub_date="<Year>2001</Year><Month>Jan</Month><Day>5</Day>"))
    assert value(article, "publication_date_text") == "2001 Jan 5"
    assert value(parse_article(synthetic(pub_date="")), "publication_date_text") is None


ENTREZ = (
    '<History><PubMedPubDate PubStatus="pubmed"><Year>2019</Year><Month>1</Month><Day>1</Day>'
    '</PubMedPubDate><PubMedPubDate PubStatus="entrez"><Year>2019</Year><Month>4</Month>'
    "<Day>5</Day></PubMedPubDate></History>"
)
COMPLETED = "<DateCompleted><Year>2018</Year><Month>07</Month><Day>08</Day></DateCompleted>"
CREATED = "<DateCreated><Year>2017</Year><Month>09</Month><Day>10</Day></DateCreated>"
REVISED = "<DateRevised><Year>2021</Year><Month>02</Month><Day>03</Day></DateRevised>"


@pytest.mark.parametrize(
    ("dates", "pubmed_data", "expected"),
    [
        (CREATED + COMPLETED + REVISED, ENTREZ, date(2021, 2, 3)),
        (CREATED + COMPLETED, ENTREZ, date(2019, 4, 5)),
        (CREATED + REVISED.replace("<Month>02", "<Month>13"), ENTREZ, date(2019, 4, 5)),
        (CREATED + COMPLETED, "", date(2018, 7, 8)),
        (CREATED, "", date(2017, 9, 10)),
    ],
)
def test_the_modified_date_falls_back_from_revised_to_entrez_completed_created(
    dates: str, pubmed_data: str, expected: date
) -> None:
    identity = article_identity(synthetic(dates=dates, pubmed_data=pubmed_data))
    assert identity.modified == expected


def test_an_article_without_any_usable_date_is_rejected() -> None:
    with pytest.raises(ArticleParseError) as error:
        article_identity(synthetic(dates="<DateRevised><Year>2021</Year></DateRevised>"))
    assert error.value.reason == "missing_modified_date"


def test_version_keys_are_zero_padded_and_sort_numerically() -> None:
    def key(pmid: str) -> str:
        return article_identity(synthetic(pmid=pmid)).version_key

    keys = [
        key('<PMID Version="10">1</PMID>'),
        key("<PMID>1</PMID>"),
        key('<PMID Version="2">1</PMID>'),
    ]
    assert keys == ["0010", "0001", "0002"]
    assert sorted(keys) == ["0001", "0002", "0010"]
    with pytest.raises(ArticleParseError) as error:
        key('<PMID Version="two">1</PMID>')
    assert error.value.reason == "invalid_version"


# --- content hash --------------------------------------------------------------------------------


def _reindented(xml: str, space: str) -> str:
    element = ET.fromstring(xml)
    ET.indent(element, space=space)
    return ET.tostring(element, encoding="unicode")


def test_the_same_article_in_three_whitespace_layouts_hashes_and_parses_the_same() -> None:
    compact = next(r.xml for r in real_articles() if r.pmid == "22663011")
    assert "\n" not in compact
    layouts = [compact, _reindented(compact, "    "), _reindented(compact, "\t")]
    assert len(set(layouts)) == 3
    assert len({article_identity(xml) for xml in layouts}) == 1
    assert len({parse_article(xml).derivation_hash for xml in layouts}) == 1


@pytest.mark.parametrize("pmid", ["30527807", "29963580", "30108519"])
def test_a_real_indented_article_hashes_and_parses_like_its_compacted_form(pmid: str) -> None:
    indented = next(r.xml for r in real_articles() if r.pmid == pmid)
    assert "\n    " in indented
    # What efetch's compact layout lacks: whitespace runs that carry a newline between tags.
    compacted = re.sub(r">[ \t\r\n]*\n[ \t\r\n]*<", "><", indented)
    assert "\n" not in compacted
    assert article_identity(compacted) == article_identity(indented)
    assert parse_article(compacted) == parse_article(indented)


def test_mathml_in_an_abstract_reads_as_text() -> None:
    abstract = value(parsed("29963580"), "abstract")
    assert "(1)\xa0inhaled He3/Xe129\u2009MRI ventilation" in abstract
    assert "\n" not in abstract and "  " not in abstract


def test_the_content_hash_ignores_attribute_order_but_not_content() -> None:
    xml = next(r.xml for r in real_articles() if r.pmid == "22441635")
    assert '<MedlineCitation Owner="NLM" Status="MEDLINE">' in xml
    swapped = xml.replace(
        '<MedlineCitation Owner="NLM" Status="MEDLINE">',
        '<MedlineCitation Status="MEDLINE" Owner="NLM">',
    )
    assert article_identity(swapped).content_hash == article_identity(xml).content_hash
    edited = xml.replace("</ArticleTitle>", " </ArticleTitle>")
    assert article_identity(edited).content_hash != article_identity(xml).content_hash


def test_the_derivation_hash_changes_with_a_derived_value_only() -> None:
    xml = next(r.xml for r in real_articles() if r.pmid == "22663011")
    base = parse_article(xml).derivation_hash
    assert parse_article(xml.replace("METRIC Study Group", "METRIC Group")).derivation_hash != base
    not_derived = xml.replace("<Country>United States</Country>", "<Country>USA</Country>")
    assert parse_article(not_derived).derivation_hash == base


# --- sets, update files and streaming ------------------------------------------------------------


def test_every_set_file_parses_and_reports_its_deleted_citations() -> None:
    deleted_total = 0
    for path in sorted(SETS.glob("*.xml")):
        text = path.read_text(encoding="utf-8")
        blocks = re.findall(r"<DeleteCitation>(.*?)</DeleteCitation>", text, re.S)
        expected_deleted = [
            pmid for block in blocks for pmid in re.findall(r">(\d+)</PMID>", block)
        ]
        records = list(iter_pubmed_xml(path.read_bytes()))
        articles = [r for r in records if isinstance(r, ArticleXml)]
        deleted = [pmid for r in records if isinstance(r, DeletedCitations) for pmid in r.pmids]
        assert len(articles) == len(re.findall(r"<PubmedArticle>", text)), path.name
        assert deleted == expected_deleted, path.name
        deleted_total += len(deleted)
        for record in articles:
            assert parse_article(record.xml).pmid == record.pmid
            identity = article_identity(record.xml)
            if record.pmid in parsed_by_pmid():
                own_file = (ARTICLES / f"{record.pmid}.xml").read_bytes()
                assert identity == article_identity(own_file)
    assert deleted_total > 10


def test_streams_accept_files_bare_articles_and_any_prolog() -> None:
    path = ARTICLES / "22663011.xml"
    with path.open("rb") as stream:
        (from_stream,) = list(iter_pubmed_xml(stream))
    bare = list(iter_pubmed_xml(from_stream.xml.encode()))
    no_prolog = re.sub(rb"^.*?(?=<PubmedArticleSet>)", b"", path.read_bytes(), flags=re.S)
    assert no_prolog.startswith(b"<PubmedArticleSet>")
    for records in (bare, list(iter_pubmed_xml(no_prolog))):
        (record,) = records
        assert record.pmid == from_stream.pmid
        assert record.identity() == from_stream.identity()
        assert parse_article(record.xml) == parse_article(from_stream.xml)


def test_an_article_read_from_bytes_is_its_own_markup_cut_from_the_document() -> None:
    for path in sorted(SETS.glob("*.xml")):
        body = path.read_bytes()
        for record in iter_pubmed_xml(body):
            if isinstance(record, ArticleXml):
                assert record.xml.encode() in body, (path.name, record.pmid)
                assert record.xml.startswith("<PubmedArticle")
                assert record.xml.endswith("</PubmedArticle>")


_TWO_ARTICLES = (
    b"<PubmedArticleSet>"
    b'<PubmedArticle><MedlineCitation><PMID Version="1">101</PMID><Article>'
    b"<ArticleTitle>First &amp; <i>one</i></ArticleTitle></Article></MedlineCitation>"
    b"</PubmedArticle>\n"
    b'<PubmedArticle><MedlineCitation><PMID Version="1">102</PMID><Article>'
    b"<ArticleTitle>Second</ArticleTitle></Article></MedlineCitation></PubmedArticle>"
    b"</PubmedArticleSet>"
)


@pytest.mark.parametrize(
    "document",
    [
        # `<PubmedArticle>` as the text of a comment or of a CDATA section, not a tag
        _TWO_ARTICLES.replace(b"<PubmedArticle>", b"<!-- <PubmedArticle> --><PubmedArticle>", 1),
        _TWO_ARTICLES.replace(b"First", b"<![CDATA[</PubmedArticle><PubmedArticle>]]>"),
        _TWO_ARTICLES.replace(b"</PubmedArticle>\n", b"</PubmedArticle><?pi <PubmedArticle>?>"),
        # an entity of an internal DTD subset, a namespace declared on the set
        b'<!DOCTYPE PubmedArticleSet [<!ENTITY nbsp "&#160;">]>'
        + _TWO_ARTICLES.replace(b"First", b"First&nbsp;"),
        _TWO_ARTICLES.replace(
            b"<PubmedArticleSet>",
            b'<PubmedArticleSet xmlns:mml="http://www.w3.org/1998/Math/MathML">',
        ).replace(b"<i>one</i>", b"<mml:math><mml:mi>x</mml:mi></mml:math>"),
        # an empty article, and an encoding other than UTF-8
        _TWO_ARTICLES.replace(b"<PubmedArticleSet>", b"<PubmedArticleSet><PubmedArticle/>"),
        b'<?xml version="1.0" encoding="ISO-8859-1"?>'
        + _TWO_ARTICLES.replace(b"First", b"F\xefrst"),
    ],
    ids=["comment", "cdata", "instruction", "dtd-entity", "namespace", "empty", "latin-1"],
)
def test_an_article_that_cannot_be_cut_safely_is_serialized_from_its_element(
    document: bytes,
) -> None:
    articles = [r for r in iter_pubmed_xml(document) if isinstance(r, ArticleXml)]
    assert [a.pmid for a in articles][-2:] == ["101", "102"]
    for article in articles:
        # the XML stored is the article the stream parsed: it gives the same identity again
        assert _identity_or_reason(lambda a=article: article_identity(a.xml)) == (
            _identity_or_reason(article.identity)
        )


def test_book_articles_are_skipped_and_deletions_reported_in_order() -> None:
    article = synthetic()
    document = (
        "<PubmedArticleSet>"
        f"<PubmedBookArticle><BookDocument><PMID>555</PMID></BookDocument></PubmedBookArticle>"
        f"{article}<DeleteCitation><PMID Version='1'>7</PMID> <PMID>8</PMID></DeleteCitation>"
        "</PubmedArticleSet>"
    ).encode()
    first, second = iter_pubmed_xml(document)
    assert isinstance(first, ArticleXml) and first.pmid == "123"
    assert ET.canonicalize(first.xml) == ET.canonicalize(article)
    assert second == DeletedCitations(pmids=("7", "8"))
    assert list(iter_pubmed_xml(b"<PubmedBookArticle><X/></PubmedBookArticle>")) == []


def test_a_truncated_stream_yields_what_came_before_the_damage() -> None:
    text = (SETS / "PathwayCommons__ncbiutils__tests_data_double.xml").read_bytes()
    second = text.rindex(b"<PubmedArticle>")
    records = iter_pubmed_xml(text[: second + 500])
    first = next(records)
    assert isinstance(first, ArticleXml) and first.pmid == "31302001"
    with pytest.raises(ArticleParseError) as error:
        next(records)
    assert error.value.reason == "invalid_xml"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"", "invalid_xml"),
        (b"\x00\xff garbage", "invalid_xml"),
        (b"<eFetchResult><ERROR>Empty id list</ERROR></eFetchResult>", "not_pubmed_xml"),
        (b"<PubmedArticleSet><PubmedArticle>", "invalid_xml"),
    ],
)
def test_unusable_streams_raise_article_parse_errors(document: bytes, reason: str) -> None:
    with pytest.raises(ArticleParseError) as error:
        list(iter_pubmed_xml(document))
    assert error.value.reason == reason


def test_a_str_is_not_mistaken_for_a_file_name() -> None:
    with pytest.raises(TypeError):
        list(iter_pubmed_xml("<PubmedArticleSet/>"))  # type: ignore[arg-type]


class _RepeatedArticles(io.RawIOBase):
    """A set of `count` copies of one article, generated while it is read."""

    def __init__(self, article: bytes, count: int) -> None:
        self._parts = iter(
            [b"<PubmedArticleSet>\n", *([article + b"\n"] * count), b"</PubmedArticleSet>"]
        )
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._buffer) < len(buffer):
            part = next(self._parts, None)
            if part is None:
                break
            self._buffer += part
        size = min(len(buffer), len(self._buffer))
        buffer[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def test_streaming_memory_is_bounded_by_one_article() -> None:
    article = next(r.xml for r in real_articles() if r.pmid == "22663011").encode()
    count = 100
    tracemalloc.start()
    try:
        seen = 0
        for record in iter_pubmed_xml(io.BufferedReader(_RepeatedArticles(article, count))):
            assert isinstance(record, ArticleXml) and record.pmid == "22663011"
            seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    # Holding the input, or the tree of more than a few articles, would exceed this.
    assert len(article) * count > 2_000_000
    assert peak < 1_500_000


# --- security ------------------------------------------------------------------------------------


@pytest.fixture
def listening_port() -> Iterator[tuple[int, list[bytes]]]:
    """A local TCP port that records any connection made to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                continue
            connections.append(client.recv(1024))
            client.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], connections
    finally:
        stop.set()
        thread.join()
        server.close()


def test_external_dtds_and_entities_are_never_fetched(
    listening_port: tuple[int, list[bytes]], tmp_path: Path
) -> None:
    port, connections = listening_port
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    article = synthetic(article="<ArticleTitle>&ext;</ArticleTitle>")
    url = f"http://127.0.0.1:{port}/pubmed.dtd"
    documents = [
        f'<!DOCTYPE PubmedArticleSet SYSTEM "{url}"><PubmedArticleSet>{synthetic()}'
        "</PubmedArticleSet>",
        f'<!DOCTYPE PubmedArticle [<!ENTITY % p SYSTEM "{url}"> %p;]>{synthetic()}',
        f'<!DOCTYPE PubmedArticle [<!ENTITY ext SYSTEM "{secret.as_uri()}">]>{article}',
        f'<!DOCTYPE PubmedArticle [<!ENTITY ext SYSTEM "{url}">]>{article}',
    ]
    for document in documents:
        for attempt in (
            lambda d=document: list(iter_pubmed_xml(d.encode())),
            lambda d=document: parse_article(d),
        ):
            try:
                result = attempt()
            except ArticleParseError as error:
                assert "TOP-SECRET" not in str(error)
            else:
                assert "TOP-SECRET" not in repr(result)
    threading.Event().wait(0.3)
    assert connections == []
    # The listener does see a connection when one is made.
    with socket.create_connection(("127.0.0.1", port)) as probe:
        probe.sendall(b"probe")
    threading.Event().wait(0.5)
    assert connections == [b"probe"]


def test_entity_expansion_bombs_are_refused() -> None:
    entities = "".join(
        f'<!ENTITY e{i} "{"".join(f"&e{i - 1};" for _ in range(10))}">' for i in range(1, 10)
    )
    bomb = f'<!DOCTYPE PubmedArticle [<!ENTITY e0 "lol">{entities}]>' + synthetic(
        article="<ArticleTitle>&e9;</ArticleTitle>"
    )
    with pytest.raises(ArticleParseError):
        parse_article(bomb)
    with pytest.raises(ArticleParseError):
        list(iter_pubmed_xml(bomb.encode()))


# --- damaged input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (synthetic(pmid=""), "missing_pmid"),
        (synthetic(pmid="<PMID> </PMID>"), "missing_pmid"),
        (synthetic(pmid="<PMID>12a</PMID>"), "invalid_pmid"),
        ("<PubmedArticle/>", "missing_pmid"),
        ("<PubmedArticleSet/>", "not_an_article"),
        ("<PubmedArticleSet>" + synthetic() * 2 + "</PubmedArticleSet>", "not_an_article"),
        ("<PubmedBookArticle/>", "not_an_article"),
        (synthetic()[:300], "invalid_xml"),
        ("", "invalid_xml"),
        (b"\x89PNG\r\n\x1a\n", "invalid_xml"),
        ("<PubmedArticle>&nbsp;</PubmedArticle>", "invalid_xml"),
        (None, "not_an_article"),
        (123, "not_an_article"),
    ],
)
def test_unusable_articles_raise_article_parse_error_with_a_reason(xml: Any, reason: str) -> None:
    for parse in (parse_article, article_identity):
        with pytest.raises(ArticleParseError) as error:
            parse(xml)
        assert error.value.reason == reason


def test_a_deeply_nested_article_is_a_parse_error_not_a_crash() -> None:
    deep = "<i>" * 100_000 + "x" + "</i>" * 100_000
    xml = synthetic(article=f"<ArticleTitle>{deep}</ArticleTitle>")
    try:
        parse_article(xml)
        article_identity(xml)
    except ArticleParseError as error:
        assert error.reason


GARBAGE = st.one_of(
    st.sampled_from(["<", ">", "&", "&amp;", "</Year>", "<Month>", "13", "x", "\u00e9", "]]>"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
)


def _mutate(data: st.DataObject, xml: str) -> str:
    mutation = data.draw(st.sampled_from(["truncate", "delete", "insert", "element", "text"]))
    position = data.draw(st.integers(0, len(xml)))
    if mutation == "truncate":
        return xml[:position]
    if mutation == "delete":
        return xml[:position] + xml[position + data.draw(st.integers(1, 200)) :]
    if mutation == "insert":
        return xml[:position] + data.draw(GARBAGE) + xml[position:]
    tags = re.findall(r"<([A-Za-z]+)[\s>]", xml)
    if not tags:
        return xml
    tag = data.draw(st.sampled_from(tags))
    if mutation == "element":
        return re.sub(rf"<{tag}[\s>].*?</{tag}>|<{tag}/>", "", xml, count=1, flags=re.S)
    return re.sub(
        rf"(<{tag}(?:\s[^>]*)?>)[^<]*", lambda m: m.group(1) + data.draw(GARBAGE), xml, count=1
    )


def _assert_well_formed(article: ParsedArticle) -> None:
    assert len(article.publication) == len(PUBLICATION_COLUMNS)
    for table, rows in article.children.items():
        assert all(len(row) == len(CHILD_TABLES[table]) for row in rows)
    assert not any(
        "\x00" in s for s in strings_in([article.publication, *article.children.values()])
    )


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), index=st.integers(0, 254), mutation_count=st.integers(1, 4))
def test_damaged_articles_only_ever_parse_or_raise_article_parse_error(
    data: st.DataObject, index: int, mutation_count: int
) -> None:
    xml = real_articles()[index].xml
    for _ in range(mutation_count):
        xml = _mutate(data, xml)
    for source in (xml, xml.encode()):
        try:
            _assert_well_formed(parse_article(source))
        except ArticleParseError as error:
            assert error.reason
        try:
            article_identity(source)
        except ArticleParseError as error:
            assert error.reason
    try:
        for record in iter_pubmed_xml(xml.encode()):
            assert isinstance(record, ArticleXml | DeletedCitations)
    except ArticleParseError as error:
        assert error.reason


# --- DDL -----------------------------------------------------------------------------------------


@pytest.fixture
def warehouse(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url) as conn:
        migrate(conn)
        yield conn


def _columns(conn: psycopg.Connection, table: str) -> tuple[str, ...]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'core' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return tuple(row[0] for row in rows)


def test_ddl_column_order_matches_the_parser(warehouse: psycopg.Connection) -> None:
    assert _columns(warehouse, "publications") == PUBLICATION_COLUMNS + BOOKKEEPING_COLUMNS
    for table, columns in CHILD_TABLES.items():
        assert _columns(warehouse, table) == columns, table
    references = warehouse.execute(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint"
        " WHERE contype = 'f' AND conrelid::regclass::text LIKE 'core.publication_%'"
    ).fetchall()
    assert references == []  # children follow their parent by trigger (migration 009)
    triggers = warehouse.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'core.publications'::regclass"
        " AND NOT tgisinternal"
    ).fetchall()
    assert triggers == [("publications_delete_children",)]
    commented = warehouse.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'core' AND c.relkind = 'r' AND c.relname LIKE 'publication%'"
        " AND obj_description(c.oid, 'pg_class') <> ''"
    ).fetchall()
    assert {row[0] for row in commented} == {"publications", *CHILD_TABLES}
    indexed = warehouse.execute(
        "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'core'"
        " AND indexname IN ('publication_trials_nct_id_idx', 'publication_mesh_descriptor_idx')"
    ).fetchall()
    assert {row[0] for row in indexed} == {"publication_trials", "publication_mesh"}


def _copy_rows(
    conn: psycopg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    with conn.cursor().copy(f"COPY core.{table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _bookkept_publication(record: ArticleXml, article: ParsedArticle) -> tuple[Any, ...]:
    identity = article_identity(record.xml)
    updated_at = datetime.combine(identity.modified, datetime.min.time(), UTC)
    return (
        *article.publication,
        updated_at,
        identity.version_key,
        identity.content_hash,
        article.derivation_hash,
        identity.modified,
    )


def test_every_real_article_loads_into_the_tables(warehouse: psycopg.Connection) -> None:
    with warehouse.transaction():
        publications = [
            _bookkept_publication(record, parsed(record.pmid or "")) for record in real_articles()
        ]
        _copy_rows(
            warehouse, "publications", PUBLICATION_COLUMNS + BOOKKEEPING_COLUMNS[:-1], publications
        )
        for table, columns in CHILD_TABLES.items():
            rows = [row for article in parsed_by_pmid().values() for row in article.children[table]]
            _copy_rows(warehouse, table, columns, rows)

    counts = warehouse.execute(
        "SELECT (SELECT count(*) FROM core.publications), (SELECT count(*) FROM"
        " core.publication_authors), (SELECT count(*) FROM core.publication_trials),"
        " (SELECT count(*) FROM core.trials)"
    ).fetchone()
    assert counts == (255, 1823, 3, 0)
    loaded = warehouse.execute(
        "SELECT publication_date, publication_date_precision, publication_year, keywords,"
        " publication_types[1], normalized_at IS NOT NULL FROM core.publications"
        " WHERE pmid = '12091962'"
    ).fetchone()
    assert loaded == (
        date(1990, 3, 1),
        "season",
        1990,
        ["Health Care and Public Health", "Legal Approach"],
        "Journal Article",
        True,
    )
    melanoma = warehouse.execute(
        "SELECT pmid, qualifiers FROM core.publication_mesh WHERE descriptor = 'Melanoma'"
        " AND major_qualifiers = ARRAY['drug therapy'] AND pmid = '22663011'"
    ).fetchone()
    assert melanoma == ("22663011", ["drug therapy", "genetics", "mortality"])

    with pytest.raises(psycopg.errors.CheckViolation), warehouse.transaction():
        warehouse.execute(
            "INSERT INTO core.publication_trials VALUES ('22663011', 2, 'nct1', 'title')"
        )
    with warehouse.transaction():
        warehouse.execute("DELETE FROM core.publications WHERE pmid = '22663011'")
    orphans = warehouse.execute(
        "SELECT (SELECT count(*) FROM core.publication_authors WHERE pmid = '22663011')"
        " + (SELECT count(*) FROM core.publication_trials WHERE pmid = '22663011')"
    ).fetchone()
    assert orphans == (0,)
