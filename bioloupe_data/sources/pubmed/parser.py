"""Split PubMed efetch XML into articles and parse one article into `core.publications` rows.

Streaming: `iter_pubmed_xml` reads a `<PubmedArticleSet>` (any DTD generation, any whitespace
layout, with or without DOCTYPE), a bare `<PubmedArticle>`, or an update file with
`<DeleteCitation>` blocks, and keeps at most one record in memory. `<PubmedBookArticle>` records
(NCBI Bookshelf chapters, not journal citations) are skipped, as are unknown record elements.

Security: the parser is the standard library's expat, which never fetches an external DTD or
external entity (a reference to an undefined or external entity is a parse error) and, from
expat 2.4.1 on, stops entity-expansion bombs ("billion laughs"). No network, no file access.

The parser is total: any input either yields rows or raises `ArticleParseError` with a short
machine-readable reason. Optional values that are absent or malformed read as NULL.

Decisions documented here because users' SQL depends on them:
- Child rows are keyed (pmid, ordinal) with ordinal counting from 1 in source order.
- Partial publication dates become the first day of the period, with a precision: 'day',
  'month', 'season' or 'year'. Seasons map to the month they start in (Spring = March,
  Summer = June, Fall/Autumn = September) except Winter = January, so the date stays in the
  stated year (a "Winter 2003" issue is usually a journal's first of 2003).
  MedlineDate free text ("2008 Sep-Oct", "1998 Dec-1999 Jan", "2003 Jul 15-21", "Summer 2003",
  "1989-1990") is read from its first component; anything unreadable falls back to the year,
  or NULL when there is no 4-digit year.
- NCT ids in text: "NCT" in any letter case, optionally followed by one space, hyphen or
  no-break space, then exactly 8 digits not followed by another digit; stored upper-case.
- Old records (pre-2014 DTDs) carry one `Article/Affiliation` instead of per-author
  affiliations; like NLM's own conversion, it is attributed to the first author when that
  author has none of their own.
"""

from __future__ import annotations

import hashlib
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, BinaryIO, TypeVar

import orjson

from bioloupe_data.sources.pubmed.slicing import ArticleSlicer

__all__ = [
    "CHILD_TABLES",
    "PUBLICATION_COLUMNS",
    "SOURCE",
    "ArticleIdentity",
    "ArticleParseError",
    "ArticleXml",
    "DeletedCitations",
    "ParsedArticle",
    "article_identity",
    "find_nct_ids",
    "iter_pubmed_xml",
    "parse_article",
]

SOURCE = "pubmed"

PMID_PATTERN = re.compile(r"[1-9][0-9]{0,11}")
VERSION_PATTERN = re.compile(r"[0-9]{1,4}")
NCT_ID_PATTERN = re.compile(r"NCT[0-9]{8}")
NCT_IN_TEXT_PATTERN = re.compile(r"(?<![A-Za-z0-9])NCT[ \-\u00a0]?([0-9]{8})(?![0-9])", re.I)
ORCID_PATTERN = re.compile(r"([0-9]{4})-?([0-9]{4})-?([0-9]{4})-?([0-9]{3}[0-9X])", re.I)
YEAR_PATTERN = re.compile(r"(?<![0-9])([0-9]{4})(?![0-9])")
WORD_PATTERN = re.compile(r"[A-Za-z]+")
# After the year of a MedlineDate: a month or season word, then optionally a day number.
MEDLINE_DATE_TAIL_PATTERN = re.compile(r"\s*([A-Za-z]+)\.?(?:\s+([0-9]{1,2})(?![0-9]))?")

# Newline-bearing whitespace is layout (indentation) in pretty-printed exports, never content.
LAYOUT_WHITESPACE_PATTERN = re.compile(r"[ \t\r]*\n[ \t\r\n]*")
MATHML_NAMESPACE = "http://www.w3.org/1998/Math/MathML"

MONTH_NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
SEASON_MONTHS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 1}

_SET_ROOTS = frozenset({"PubmedArticleSet", "PubmedBookArticleSet"})
_RECORD_ROOTS = frozenset({"PubmedArticle", "PubmedBookArticle"})

# Serialize MathML with the prefix PubMed uses rather than ElementTree's generated "ns0".
ET.register_namespace("mml", MATHML_NAMESPACE)

Result = TypeVar("Result")
Row = tuple[Any, ...]

PUBLICATION_COLUMNS: tuple[str, ...] = (
    "pmid",
    "title",
    "vernacular_title",
    "abstract",
    "journal_title",
    "journal_iso_abbreviation",
    "issn",
    "volume",
    "issue",
    "pages",
    "publication_date",
    "publication_date_precision",
    "publication_date_text",
    "publication_year",
    "status",
    "publication_status",
    "doi",
    "pmc_id",
    "language",
    "publication_types",
    "date_revised",
    "date_completed",
    "entrez_date",
    "keywords",
    "nlm_unique_id",
    "article_date",
    "date_created",
)

CHILD_TABLES: dict[str, tuple[str, ...]] = {
    "publication_authors": (
        "pmid",
        "ordinal",
        "last_name",
        "fore_name",
        "initials",
        "suffix",
        "collective_name",
        "affiliations",
        "orcid",
        "is_valid",
    ),
    "publication_mesh": (
        "pmid",
        "ordinal",
        "descriptor",
        "descriptor_ui",
        "is_major_topic",
        "qualifiers",
        "major_qualifiers",
    ),
    "publication_trials": ("pmid", "ordinal", "nct_id", "origin"),
}

# Strongest first: a DataBank accession beats an id seen in the title, which beats the abstract.
TRIAL_ORIGINS = ("databank", "title", "abstract")


class ArticleParseError(ValueError):
    """Input that cannot be used; `reason` is a short machine-readable code."""

    reason: str

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ArticleXml:
    """One `<PubmedArticle>` serialized as a standalone XML string (no declaration, no DOCTYPE),
    with what `article_identity(xml)` returns, or the error it raises, read off the element the
    stream parsed (parsing the serialized string again cost as much as the rest of landing)."""

    pmid: str | None
    xml: str
    identity_or_error: ArticleIdentity | ArticleParseError = field(repr=False, compare=False)

    def identity(self) -> ArticleIdentity:
        """Key, partition day, version and content hash, as `article_identity(self.xml)`."""
        if isinstance(self.identity_or_error, ArticleParseError):
            raise self.identity_or_error
        return self.identity_or_error


@dataclass(frozen=True, slots=True)
class DeletedCitations:
    pmids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ArticleIdentity:
    pmid: str
    version_key: str
    modified: date
    content_hash: str


@dataclass(frozen=True, slots=True)
class ParsedArticle:
    pmid: str
    publication: tuple[Any, ...]
    children: dict[str, list[tuple[Any, ...]]]
    derivation_hash: str


def _raising_only_parse_errors(parse: Callable[[Any], Result], xml: Any) -> Result:
    """Run `parse`, turning any unexpected exception into an ArticleParseError."""
    try:
        return parse(xml)
    except ArticleParseError:
        raise
    except Exception as exc:
        reason = f"parse_error:{type(exc).__name__}"
        raise ArticleParseError(reason, f"cannot parse article: {exc!r}") from exc


# ---------------------------------------------------------------------------------------------
# Streaming a file or response into records


def iter_pubmed_xml(source: bytes | BinaryIO) -> Iterator[ArticleXml | DeletedCitations]:
    """Yield each `<PubmedArticle>` and each `<DeleteCitation>` block of a PubMed XML document.

    Records are yielded as soon as they end, so a document that turns out to be damaged raises
    `ArticleParseError("invalid_xml")` only after yielding the records before the damage.
    """
    if isinstance(source, str):
        raise TypeError("iter_pubmed_xml reads bytes or a binary stream, not str")
    if isinstance(source, bytes | bytearray | memoryview):
        body = bytes(source)
        stream: BinaryIO = io.BytesIO(body)
        slicer = ArticleSlicer.of(body)
    else:
        stream, slicer = source, None
    try:
        yield from _iter_records(stream, slicer)
    except ET.ParseError as exc:
        raise ArticleParseError("invalid_xml", f"PubMed XML is not well-formed: {exc}") from exc


def _iter_records(
    stream: BinaryIO, slicer: ArticleSlicer | None
) -> Iterator[ArticleXml | DeletedCitations]:
    root: ET.Element | None = None
    record_level = 1
    depth = 0
    for event, element in ET.iterparse(stream, events=("start", "end")):
        if event == "start":
            if root is None:
                root = element
                record_level = _record_level(element)
            depth += 1
            continue
        depth -= 1
        if depth != record_level:
            continue
        record = _record(element, slicer)
        if record is not None:
            yield record
        element.clear()
        if root is not None and depth > 0:
            # Drop finished records from the root so memory stays bounded by one record.
            root.clear()


def _record_level(root: ET.Element) -> int:
    if root.tag in _SET_ROOTS:
        return 1
    if root.tag in _RECORD_ROOTS:
        return 0
    raise ArticleParseError(
        "not_pubmed_xml", f"root element <{root.tag}> is not a PubmedArticleSet or PubmedArticle"
    )


def _record(
    element: ET.Element, slicer: ArticleSlicer | None
) -> ArticleXml | DeletedCitations | None:
    if element.tag == "PubmedArticle":
        element.tail = None
        pmid = _clean(element.findtext("MedlineCitation/PMID"))
        cut = slicer.next_article(pmid) if slicer is not None else None
        xml = cut if cut is not None else ET.tostring(element, encoding="unicode")
        try:
            identity: ArticleIdentity | ArticleParseError = _raising_only_parse_errors(
                _element_identity, element
            )
        except ArticleParseError as exc:
            identity = exc
        return ArticleXml(pmid=pmid, xml=xml, identity_or_error=identity)
    if element.tag == "DeleteCitation":
        pmids = (_clean(pmid.text) for pmid in element.iter("PMID"))
        return DeletedCitations(pmids=tuple(pmid for pmid in pmids if pmid))
    return None


# ---------------------------------------------------------------------------------------------
# Element helpers: absent or empty reads as None


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    return text.strip() or None


def _text(element: ET.Element | None) -> str | None:
    """All text inside an element, inline markup (<i>, <sup>, MathML) included.

    Layout whitespace is dropped between elements and folded to one space inside text, so the
    same article reads the same in compact, 4-space and tab-indented layouts.
    """
    if element is None:
        return None
    pieces = (piece for piece in element.itertext() if piece.strip() or "\n" not in piece)
    return _clean(LAYOUT_WHITESPACE_PATTERN.sub(" ", "".join(pieces)))


def _texts(elements: list[ET.Element]) -> list[str]:
    return [text for text in map(_text, elements) if text is not None]


def _child_or_empty(parent: ET.Element, tag: str) -> ET.Element:
    """The child, or an empty stand-in so that lookups below it read as absent."""
    child = parent.find(tag)
    return child if child is not None else ET.Element(tag)


def _first_with(elements: list[ET.Element], attribute: str, value: str) -> ET.Element | None:
    return next((e for e in elements if e.get(attribute) == value), None)


def _yes_no(value: str | None, default: bool | None) -> bool | None:
    if value is None:
        return default
    return {"Y": True, "N": False}.get(value.strip().upper())


# ---------------------------------------------------------------------------------------------
# Dates


def _month(text: str | None) -> int | None:
    """1-12 from '03', '3', 'Mar', 'March' or 'Sept'; None otherwise."""
    value = (_clean(text) or "").rstrip(".").lower()
    if value.isascii() and value.isdigit():
        number = int(value)
        return number if 1 <= number <= 12 else None
    if len(value) < 3:
        return None
    return next((i for i, name in enumerate(MONTH_NAMES, 1) if name.startswith(value)), None)


def _season(text: str | None) -> int | None:
    return SEASON_MONTHS.get((_clean(text) or "").lower())


def _int(text: str | None) -> int | None:
    value = _clean(text)
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 4:
        return None
    return int(value)


def _day_or_none(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _full_date(element: ET.Element | None) -> date | None:
    """A Year/Month/Day element (DateRevised, PubMedPubDate, …) as a date, if complete."""
    if element is None:
        return None
    year, month = _int(element.findtext("Year")), _month(element.findtext("Month"))
    day = _int(element.findtext("Day"))
    if year is None or month is None or day is None:
        return None
    return _day_or_none(year, month, day)


def _dated(year: int, month: int, day: int | None, precision: str) -> tuple[date, str]:
    """First possible day of a period; a day that does not exist degrades to month precision."""
    if day is not None:
        exact = _day_or_none(year, month, day)
        if exact is not None:
            return exact, "day"
    return date(year, month, 1), precision


def _medline_date(text: str) -> tuple[date | None, str | None, int | None]:
    """(first day, precision, year) of a free-text MedlineDate."""
    match = YEAR_PATTERN.search(text)
    year = int(match.group(1)) if match else 0
    if match is None or year < 1:
        return None, None, None
    tail = MEDLINE_DATE_TAIL_PATTERN.match(text, match.end())
    if tail is not None:
        month = _month(tail.group(1))
        if month is not None:
            return (*_dated(year, month, _int(tail.group(2)), "month"), year)
        season = _season(tail.group(1))
        if season is not None:
            return date(year, season, 1), "season", year
    words_before = WORD_PATTERN.findall(text[: match.start()])
    if words_before:
        month = _month(words_before[-1])
        if month is not None:
            return date(year, month, 1), "month", year
        season = _season(words_before[-1])
        if season is not None:
            return date(year, season, 1), "season", year
    return date(year, 1, 1), "year", year


def _publication_date(
    pub_date: ET.Element | None,
) -> tuple[date | None, str | None, str | None, int | None]:
    """(date, precision, raw text, year) of a JournalIssue/PubDate."""
    if pub_date is None:
        return None, None, None, None
    medline_date = _clean(pub_date.findtext("MedlineDate"))
    if medline_date is not None:
        first_day, precision, year = _medline_date(medline_date)
        return first_day, precision, medline_date, year
    parts = [_clean(pub_date.findtext(tag)) for tag in ("Year", "Season", "Month", "Day")]
    raw = " ".join(part for part in parts if part) or None
    year = _int(parts[0])
    if year is None or year < 1:
        return None, None, raw, None
    month, season = _month(parts[2]), _season(parts[1])
    if month is not None:
        return (*_dated(year, month, _int(parts[3]), "month"), raw, year)
    if season is not None:
        return date(year, season, 1), "season", raw, year
    return date(year, 1, 1), "year", raw, year


# ---------------------------------------------------------------------------------------------
# Identity


def _article_element(xml: str | bytes) -> ET.Element:
    """The `<PubmedArticle>` of a standalone article, or of a set holding exactly one."""
    if not isinstance(xml, str | bytes):
        raise ArticleParseError("not_an_article", f"article XML is a {type(xml).__name__}")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ArticleParseError("invalid_xml", f"article XML is not well-formed: {exc}") from exc
    if root.tag == "PubmedArticleSet":
        articles = root.findall("PubmedArticle")
        if len(articles) != 1:
            raise ArticleParseError(
                "not_an_article", f"PubmedArticleSet holds {len(articles)} PubmedArticle elements"
            )
        root = articles[0]
    if root.tag != "PubmedArticle":
        raise ArticleParseError("not_an_article", f"root element <{root.tag}> is not PubmedArticle")
    return root


def _citation(article: ET.Element) -> ET.Element:
    citation = article.find("MedlineCitation")
    if citation is None:
        raise ArticleParseError("missing_pmid", "PubmedArticle has no MedlineCitation")
    return citation


def _pmid_element(citation: ET.Element) -> tuple[str, ET.Element]:
    element = citation.find("PMID")
    pmid = _clean(element.text) if element is not None else None
    if element is None or pmid is None:
        raise ArticleParseError("missing_pmid", "MedlineCitation/PMID is missing")
    if not PMID_PATTERN.fullmatch(pmid):
        raise ArticleParseError("invalid_pmid", f"PMID {pmid[:40]!r} is not a positive integer")
    return pmid, element


def _version_key(pmid_element: ET.Element) -> str:
    version = _clean(pmid_element.get("Version")) or "1"
    if not VERSION_PATTERN.fullmatch(version) or int(version) < 1:
        raise ArticleParseError("invalid_version", f"PMID Version {version[:40]!r} is not 1-9999")
    return f"{int(version):04d}"


def _history_date(article: ET.Element, status: str) -> date | None:
    dates = article.findall("PubmedData/History/PubMedPubDate")
    return _full_date(_first_with(dates, "PubStatus", status))


def _modified(article: ET.Element, citation: ET.Element) -> date:
    candidates = (
        lambda: _full_date(citation.find("DateRevised")),
        lambda: _history_date(article, "entrez"),
        lambda: _full_date(citation.find("DateCompleted")),
        lambda: _full_date(citation.find("DateCreated")),
    )
    for candidate in candidates:
        modified = candidate()
        if modified is not None:
            return modified
    raise ArticleParseError(
        "missing_modified_date",
        "no complete DateRevised, entrez date, DateCompleted or DateCreated",
    )


def _canonical(element: ET.Element) -> list[Any]:
    """Layout-independent form: sorted attributes, whitespace-only text and tails dropped."""
    return [
        element.tag,
        sorted(element.attrib.items()),
        _significant(element.text),
        [[_canonical(child), _significant(child.tail)] for child in element],
    ]


def _significant(text: str | None) -> str | None:
    return text if text is not None and text.strip() else None


def _content_hash(article: ET.Element) -> str:
    return hashlib.sha256(orjson.dumps(_canonical(article))).hexdigest()


def article_identity(xml: str | bytes) -> ArticleIdentity:
    """Key, partition day, version and content hash of one article."""
    return _raising_only_parse_errors(_article_identity, xml)


def _article_identity(xml: str | bytes) -> ArticleIdentity:
    return _element_identity(_article_element(xml))


def _element_identity(article: ET.Element) -> ArticleIdentity:
    citation = _citation(article)
    pmid, pmid_element = _pmid_element(citation)
    return ArticleIdentity(
        pmid=pmid,
        version_key=_version_key(pmid_element),
        modified=_modified(article, citation),
        content_hash=_content_hash(article),
    )


# ---------------------------------------------------------------------------------------------
# core.publications


def _title(article_info: ET.Element) -> str | None:
    return _text(article_info.find("ArticleTitle")) or _text(article_info.find("VernacularTitle"))


def _abstract(article_info: ET.Element) -> str | None:
    sections = []
    for element in article_info.iterfind("Abstract/AbstractText"):
        text = _text(element)
        if text is None:
            continue
        label = _clean(element.get("Label"))
        sections.append(f"{label}: {text}" if label else text)
    return "\n".join(sections) or None


def _pages(article_info: ET.Element) -> str | None:
    pagination = article_info.find("Pagination")
    if pagination is None:
        return None
    medline_pages = _clean(pagination.findtext("MedlinePgn"))
    if medline_pages is not None:
        return medline_pages
    start, end = _clean(pagination.findtext("StartPage")), _clean(pagination.findtext("EndPage"))
    if start is None:
        return None
    return f"{start}-{end}" if end else start


def _article_id(article: ET.Element, id_type: str) -> str | None:
    # PubmedData/ArticleIdList only: ReferenceList entries carry ArticleIdLists of their own.
    ids = article.findall("PubmedData/ArticleIdList/ArticleId")
    return _text(_first_with(ids, "IdType", id_type))


def _doi(article: ET.Element, article_info: ET.Element) -> str | None:
    for location in article_info.iterfind("ELocationID"):
        if location.get("EIdType") == "doi" and location.get("ValidYN", "Y") != "N":
            doi = _text(location)
            if doi is not None:
                return doi
    return _article_id(article, "doi")


def _publication_row(pmid: str, article: ET.Element, citation: ET.Element) -> Row:
    info = _child_or_empty(citation, "Article")
    journal = _child_or_empty(info, "Journal")
    journal_info = _child_or_empty(citation, "MedlineJournalInfo")
    pub_date, precision, pub_date_text, year = _publication_date(
        journal.find("JournalIssue/PubDate")
    )
    values: dict[str, Any] = {
        "pmid": pmid,
        "title": _title(info),
        "vernacular_title": _text(info.find("VernacularTitle")),
        "abstract": _abstract(info),
        "journal_title": _text(journal.find("Title")),
        "journal_iso_abbreviation": _text(journal.find("ISOAbbreviation")),
        "issn": _text(journal.find("ISSN")) or _text(journal_info.find("ISSNLinking")),
        "volume": _text(journal.find("JournalIssue/Volume")),
        "issue": _text(journal.find("JournalIssue/Issue")),
        "pages": _pages(info),
        "publication_date": pub_date,
        "publication_date_precision": precision,
        "publication_date_text": pub_date_text,
        "publication_year": year,
        "status": _clean(citation.get("Status")),
        "publication_status": _text(article.find("PubmedData/PublicationStatus")),
        "doi": _doi(article, info),
        "pmc_id": _article_id(article, "pmc"),
        "language": _text(info.find("Language")),
        "publication_types": _texts(info.findall("PublicationTypeList/PublicationType")),
        "date_revised": _full_date(citation.find("DateRevised")),
        "date_completed": _full_date(citation.find("DateCompleted")),
        "entrez_date": _history_date(article, "entrez"),
        "keywords": _texts(citation.findall("KeywordList/Keyword")),
        "nlm_unique_id": _text(journal_info.find("NlmUniqueID")),
        "article_date": _full_date(info.find("ArticleDate")),
        "date_created": _full_date(citation.find("DateCreated")),
    }
    return tuple(values[column] for column in PUBLICATION_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Child tables. Each builder yields the row values after (pmid, ordinal).


def _orcid(author: ET.Element) -> str | None:
    identifier = _first_with(author.findall("Identifier"), "Source", "ORCID")
    match = ORCID_PATTERN.search(_text(identifier) or "")
    return "-".join(match.groups()).upper() if match else None


def _authors(citation: ET.Element) -> Iterator[Row]:
    info = citation.find("Article")
    if info is None:
        return
    article_affiliation = _text(info.find("Affiliation"))
    for position, author in enumerate(info.iterfind("AuthorList/Author")):
        affiliations = _texts(
            author.findall("AffiliationInfo/Affiliation") + author.findall("Affiliation")
        )
        if position == 0 and not affiliations and article_affiliation:
            affiliations = [article_affiliation]
        yield (
            _text(author.find("LastName")),
            _text(author.find("ForeName")) or _text(author.find("FirstName")),
            _text(author.find("Initials")),
            _text(author.find("Suffix")),
            _text(author.find("CollectiveName")),
            affiliations,
            _orcid(author),
            _yes_no(author.get("ValidYN"), default=True),
        )


def _mesh(citation: ET.Element) -> Iterator[Row]:
    for heading in citation.iterfind("MeshHeadingList/MeshHeading"):
        descriptor = heading.find("DescriptorName")
        qualifiers = heading.findall("QualifierName")
        major_qualifiers = [q for q in qualifiers if _yes_no(q.get("MajorTopicYN"), False)]
        descriptor_major = descriptor is not None and _yes_no(descriptor.get("MajorTopicYN"), False)
        yield (
            _text(descriptor),
            _clean(descriptor.get("UI")) if descriptor is not None else None,
            bool(descriptor_major or major_qualifiers),
            _texts(qualifiers),
            _texts(major_qualifiers),
        )


def find_nct_ids(text: str | None) -> list[str]:
    """Distinct ClinicalTrials.gov ids in text, upper-cased, in order of first appearance.

    Matches 'NCT01234567', 'nct01234567', 'NCT 01234567' and 'NCT-01234567'; never a run of
    more than 8 digits nor an id glued to a preceding letter or digit.
    """
    if not text:
        return []
    found = (f"NCT{digits}" for digits in NCT_IN_TEXT_PATTERN.findall(text))
    return list(dict.fromkeys(found))


def _databank_nct_ids(citation: ET.Element) -> list[str]:
    ids = []
    for bank in citation.iterfind("Article/DataBankList/DataBank"):
        if (_text(bank.find("DataBankName")) or "").lower() != "clinicaltrials.gov":
            continue
        for accession in _texts(bank.findall("AccessionNumberList/AccessionNumber")):
            nct_id = re.sub(r"\s+", "", accession).upper()
            if NCT_ID_PATTERN.fullmatch(nct_id):
                ids.append(nct_id)
    return ids


def _trials(publication: Row, citation: ET.Element) -> Iterator[Row]:
    values = dict(zip(PUBLICATION_COLUMNS, publication, strict=True))
    title_text = " ".join(filter(None, (values["title"], values["vernacular_title"])))
    found = {
        "databank": _databank_nct_ids(citation),
        "title": find_nct_ids(title_text),
        "abstract": find_nct_ids(values["abstract"]),
    }
    seen: set[str] = set()
    for origin in TRIAL_ORIGINS:
        for nct_id in found[origin]:
            if nct_id not in seen:
                seen.add(nct_id)
                yield nct_id, origin


def _child_rows(
    pmid: str, publication: Row, citation: ET.Element
) -> dict[str, list[tuple[Any, ...]]]:
    builders: dict[str, Iterator[Row]] = {
        "publication_authors": _authors(citation),
        "publication_mesh": _mesh(citation),
        "publication_trials": _trials(publication, citation),
    }
    return {
        table: [(pmid, ordinal, *values) for ordinal, values in enumerate(builders[table], 1)]
        for table in CHILD_TABLES
    }


# ---------------------------------------------------------------------------------------------
# Derivation hash and entry point


def _derivation_hash(publication: Row, children: dict[str, list[tuple[Any, ...]]]) -> str:
    """sha256 over every derived value, with column names, so schema changes count too."""
    document = [
        ["publications", PUBLICATION_COLUMNS, [publication]],
        *([table, CHILD_TABLES[table], children[table]] for table in sorted(children)),
    ]
    return hashlib.sha256(orjson.dumps(document)).hexdigest()


def parse_article(xml: str | bytes) -> ParsedArticle:
    """Derive the `core.publications` row and all child-table rows of one article."""
    return _raising_only_parse_errors(_parse_article, xml)


def _parse_article(xml: str | bytes) -> ParsedArticle:
    article = _article_element(xml)
    citation = _citation(article)
    pmid, _ = _pmid_element(citation)
    publication = _publication_row(pmid, article, citation)
    children = _child_rows(pmid, publication, citation)
    return ParsedArticle(
        pmid=pmid,
        publication=publication,
        children=children,
        derivation_hash=_derivation_hash(publication, children),
    )
