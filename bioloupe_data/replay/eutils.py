"""NCBI E-utilities (PubMed ``esearch.fcgi`` and ``efetch.fcgi``) for the replay server.

Articles: every file below the data folder except ``*.json`` (those are studies) whose first
64 KB contain ``<PubmedArticle`` is read with the project's PubMed parser: a
``<PubmedArticleSet>`` with any number of ``<PubmedArticle>``, or a bare ``<PubmedArticle>``.
``<DeleteCitation>`` blocks are ignored. Articles the parser rejects are skipped and counted, so
are files it cannot read at all. When a PMID occurs several times, the newest by (modified day,
version key, content hash) is served, whatever the order in which files are found. An
article's ``mdat`` is the parser's ``modified`` day (``DateRevised``, else the entrez date, …);
its ``edat`` is the History ``PubMedPubDate[@PubStatus="entrez"]`` day, else ``mdat``.

``GET`` or ``POST`` (form body; query-string parameters count too, the body wins)
``/entrez/eutils/esearch.fcgi``:

- ``db``: ``pubmed`` (the default). ``retmode``: ``xml`` (the default). ``tool``, ``email`` and
  ``api_key`` are accepted and ignored. Any other parameter is a 400.
- ``term`` (required): PubMed's Boolean syntax read left to right as PubMed does (``AND``,
  ``OR``, ``NOT`` in capitals, parentheses group). ``all[sb]`` selects every article;
  ``a:b[uid]`` (or ``[pmid]``, or a single PMID) a PMID range, inclusive. Any other term is an
  approximation of PubMed's search: quotes, ``*`` and field tags (``[MeSH Terms]``, ``[tiab]``,
  …) are dropped, adjacent words form one phrase, and a phrase matches when it is a
  case-insensitive substring of the title, an abstract section, a MeSH descriptor or a keyword
  (one value at a time). There is no automatic term mapping, so ``cancer`` does not find an
  article indexed only under "Neoplasms". Other ``[sb]`` subsets and date tags in the term are
  a 400.
- ``datetype`` ``mdat`` or ``edat`` with ``mindate`` and ``maxdate`` (both or neither;
  ``YYYY/MM/DD``, ``YYYY-MM-DD``, ``YYYY/MM`` or ``YYYY``; inclusive). ``pdat`` (PubMed's default)
  is a 400: publication dates are not indexed.
- Results are sorted by PMID, newest (largest) first; ``sort`` is a 400 (the real order depends
  on the query and is not reproduced).
- ``retstart`` (default 0) and ``retmax`` (default 20). As in PubMed, only the first 9,999
  records can be listed: ``retmax`` and ``retstart + retmax`` are cut to 9,999 with the real
  warning ``Restrictions achieved. start and count adjusted to …``, and ``retstart`` above 9,998
  on a result with more than ``retstart`` records is answered, with HTTP 200 like the real
  service, by ``<ERROR>Search Backend failed: Exception: 'retstart' cannot be larger than 9998.
  …``. On a smaller result PubMed answers an empty page instead (observed on NCBI), and so does
  this server. ``Count`` is always the full count. An empty ``term`` is NCBI's ``Empty term and
  query_key - nothing todo``; a result of 0 carries the warning ``No items found.``
- ``rettype``: ``uilist`` (the default) or ``count`` (only ``<Count>``).
- ``usehistory=y`` keeps the whole ordered result on the server and returns ``<QueryKey>`` and
  ``<WebEnv>``; with a known ``WebEnv`` the result is added to it under the next query key (an
  unknown one starts a new environment). The server keeps the newest 512 environments.

``GET`` or ``POST`` ``/entrez/eutils/efetch.fcgi``:

- ``db=pubmed``, ``retmode=xml`` (the defaults), ``rettype`` empty, ``abstract`` or ``full``
  (all the same XML here), ``tool``/``email``/``api_key`` ignored; others are a 400.
- ``id=1,2,3``: those articles in that order, duplicates once, unknown ids omitted.
- Or ``WebEnv`` + ``query_key`` with ``retstart`` (default 0) and ``retmax`` (default 20, at most
  10,000): that slice of the stored result. Like PubMed's history server, only the first 9,999
  records of a result are reachable: a slice crossing that line is cut without notice, and
  ``retstart`` above 9,998 on a result with more records is HTTP 400
  ``<eFetchResult><ERROR>Search backend cannot retrieve history data. …`` (NCBI's status and
  text). An unknown ``WebEnv`` or ``query_key`` is HTTP 200
  ``<eFetchResult><ERROR>Unable to obtain query #N</ERROR></eFetchResult>``, as on NCBI.
- The answer is a ``<PubmedArticleSet>`` of the stored ``<PubmedArticle>`` elements.

Requests the replay server cannot answer faithfully are HTTP 400 with the real error envelope
(``<eSearchResult><ERROR>…`` or ``<eFetchResult><ERROR>…``) and a message saying what is
supported.
"""

from __future__ import annotations

import bisect
import calendar
import re
import secrets
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from xml.sax.saxutils import escape

from bioloupe_data.sources.pubmed.parser import (
    ArticleParseError,
    ArticleXml,
    iter_pubmed_xml,
)

ESEARCH_PATH = "/entrez/eutils/esearch.fcgi"
EFETCH_PATH = "/entrez/eutils/efetch.fcgi"
EUTILS_PATHS = frozenset({ESEARCH_PATH, EFETCH_PATH})
XML_CONTENT_TYPE = "text/xml; charset=UTF-8"

# PubMed lists at most 9,999 records of one result: positions 0..9998.
MAX_LISTED = 9999
MAX_EFETCH_RETMAX = 10_000
DEFAULT_RETMAX = 20
HISTORY_CAPACITY = 512
_SNIFF_BYTES = 65_536

_ESEARCH_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n'
    '<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
    '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
)
_EFETCH_ERROR_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n'
    '<!DOCTYPE eEfetchResult PUBLIC "-//NLM//DTD efetch 20131226//EN" '
    '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">\n'
)
_ARTICLE_SET_HEAD = (
    b'<?xml version="1.0" ?>\n'
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
    b"<PubmedArticleSet>\n"
)
_ESEARCH_RETSTART_ERROR = (
    "Search Backend failed: Exception:\n'retstart' cannot be larger than 9998. For PubMed, "
    "ESearch can only retrieve the first 9,999 records matching the query. To obtain more than "
    "9,999 PubMed records, consider using EDirect that contains additional logic to batch "
    "PubMed search results automatically so that an arbitrary number can be retrieved. For "
    "details see https://www.ncbi.nlm.nih.gov/books/NBK25499/"
)
_EFETCH_RETSTART_ERROR = (
    "Search backend cannot retrieve history data. Reason: Exception: 'retstart' cannot be "
    "larger than 9998. For PubMed, ESearch can only retrieve the first 9,999 records matching "
    "the query."
)

_COMMON_PARAMETERS = frozenset({"db", "retmode", "rettype", "tool", "email", "api_key"})
_ESEARCH_PARAMETERS = _COMMON_PARAMETERS | {
    "term",
    "datetype",
    "mindate",
    "maxdate",
    "retstart",
    "retmax",
    "usehistory",
    "webenv",
    "sort",
}
_EFETCH_PARAMETERS = _COMMON_PARAMETERS | {"id", "webenv", "query_key", "retstart", "retmax"}
_DATE_TYPES = {"mdat": "Date - Modification", "edat": "Date - Entry"}
_DATE_TAGS = frozenset({"mdat", "edat", "pdat", "dp", "crdt", "lr", "dcom", "mhda"})
_DATE_VALUE = re.compile(r"(\d{4})(?:[/-](\d{1,2})(?:[/-](\d{1,2}))?)?")
_UID_VALUE = re.compile(r"(\d+)(?::(\d+))?")
_TOKEN = re.compile(r'\s*(?:(\()|(\))|"([^"]*)"|(\[[^\]]*\])|([^\s()"\[]+))')
_OPERATORS = frozenset({"AND", "OR", "NOT"})
_SEARCH_PATHS = (
    "MedlineCitation/Article/ArticleTitle",
    "MedlineCitation/Article/VernacularTitle",
    "MedlineCitation/Article/Abstract/AbstractText",
    "MedlineCitation/MeshHeadingList/MeshHeading/DescriptorName",
    "MedlineCitation/KeywordList/Keyword",
)


class EutilsError(Exception):
    """An answer in E-utilities' error envelope: ``<ERROR>message</ERROR>`` with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --------------------------------------------------------------------------------------------
# Article store
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredArticle:
    pmid: int
    mdat: str
    edat: str
    version_key: str
    content_hash: str
    xml: bytes
    search_values: tuple[str, ...]

    def newness(self) -> tuple[str, str, str]:
        return (self.mdat, self.version_key, self.content_hash)


@dataclass
class ArticleLoadCounts:
    files_read: int = 0
    skipped_files: int = 0
    skipped_articles: int = 0
    superseded_versions: int = 0


class _DayIndex:
    """Articles sorted by one of their days, for inclusive day-range slices."""

    def __init__(self, articles: Iterable[StoredArticle], day: Callable[[StoredArticle], str]):
        self.articles = sorted(articles, key=lambda a: (day(a), a.pmid))
        self.days = [day(article) for article in self.articles]

    def between(self, first: str, last: str) -> list[StoredArticle]:
        low = bisect.bisect_left(self.days, first)
        high = bisect.bisect_right(self.days, last)
        return self.articles[low:high] if low < high else []


class _ArticleIndex:
    """Immutable snapshot of one folder scan; reload swaps in a new one."""

    def __init__(self, articles: dict[int, StoredArticle], counts: ArticleLoadCounts) -> None:
        self.counts = counts
        self.by_pmid = articles
        self.by_day = {
            "mdat": _DayIndex(articles.values(), lambda a: a.mdat),
            "edat": _DayIndex(articles.values(), lambda a: a.edat),
        }


class ArticleStore:
    """The newest version of every PubMed article found below ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._index = _scan_folder(folder)

    @classmethod
    def from_folder(cls, path: Path) -> ArticleStore:
        return cls(Path(path))

    def reload(self) -> int:
        """Rescan the folder; requests already running keep the snapshot they started with."""
        self._index = _scan_folder(self.folder)
        return len(self)

    def get(self, pmid: int) -> StoredArticle | None:
        return self._index.by_pmid.get(pmid)

    def candidates(self, dates: DateFilter | None) -> Iterable[StoredArticle]:
        index = self._index
        if dates is None:
            return index.by_pmid.values()
        return index.by_day[dates.datetype].between(dates.first, dates.last)

    def __len__(self) -> int:
        return len(self._index.by_pmid)

    @property
    def load_counts(self) -> ArticleLoadCounts:
        return self._index.counts

    @property
    def skipped_files(self) -> int:
        return self._index.counts.skipped_files

    @property
    def skipped_articles(self) -> int:
        return self._index.counts.skipped_articles


@dataclass
class _Collector:
    articles: dict[int, StoredArticle] = field(default_factory=dict)
    counts: ArticleLoadCounts = field(default_factory=ArticleLoadCounts)

    def add_file(self, path: Path) -> None:
        try:
            content = path.read_bytes()
            items = list(iter_pubmed_xml(content)) if _looks_like_pubmed(content) else None
        except (OSError, ET.ParseError, ArticleParseError, ValueError):
            items = None
        if items is None:
            self.counts.skipped_files += 1
            return
        self.counts.files_read += 1
        for item in items:
            if isinstance(item, ArticleXml):
                self.add_article(item)

    def add_article(self, item: ArticleXml) -> None:
        try:
            article = _stored_article(item)
        except (ArticleParseError, ET.ParseError, ValueError):
            self.counts.skipped_articles += 1
            return
        current = self.articles.get(article.pmid)
        if current is not None:
            self.counts.superseded_versions += 1
            if current.newness() >= article.newness():
                return
        self.articles[article.pmid] = article


def _scan_folder(folder: Path) -> _ArticleIndex:
    collector = _Collector()
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() != ".json"):
        if path.is_file():
            collector.add_file(path)
    return _ArticleIndex(collector.articles, collector.counts)


def _looks_like_pubmed(content: bytes) -> bool:
    return b"<PubmedArticle" in content[:_SNIFF_BYTES]


def _stored_article(item: ArticleXml) -> StoredArticle:
    identity = item.identity()  # read off the element the stream parsed, hash included
    xml = item.xml
    root = ET.fromstring(xml)
    mdat = identity.modified.isoformat()
    entrez = _entrez_day(root)
    return StoredArticle(
        pmid=int(identity.pmid),
        mdat=mdat,
        edat=entrez.isoformat() if entrez else mdat,
        version_key=identity.version_key,
        content_hash=identity.content_hash,
        xml=xml.encode("utf-8"),
        search_values=_search_values(root),
    )


def _entrez_day(root: ET.Element) -> date | None:
    for node in root.iterfind("PubmedData/History/PubMedPubDate"):
        if node.get("PubStatus") == "entrez":
            try:
                return date(*(int(node.findtext(part) or "") for part in ("Year", "Month", "Day")))
            except ValueError:
                return None
    return None


def _search_values(root: ET.Element) -> tuple[str, ...]:
    texts = (" ".join("".join(node.itertext()).split()) for path in _SEARCH_PATHS
             for node in root.iterfind(path))  # fmt: skip
    return tuple(text.lower() for text in texts if text)


# --------------------------------------------------------------------------------------------
# Query terms
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllArticles:
    pass


@dataclass(frozen=True, slots=True)
class UidRange:
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Phrase:
    text: str


@dataclass(frozen=True, slots=True)
class Combined:
    operator: str
    left: Term
    right: Term


Term = AllArticles | UidRange | Phrase | Combined


def parse_term(term: str) -> Term:
    tokens = _tokenize(term)
    if not tokens:
        raise EutilsError("Empty term and query_key - nothing todo", status=200)
    parsed, position = _parse_sequence(tokens, 0)
    if position != len(tokens):
        raise EutilsError(f"unbalanced parentheses in term {term!r}")
    return parsed


def _tokenize(term: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(term.rstrip()):
        match = _TOKEN.match(term, position)
        if match is None:
            raise EutilsError(f"cannot read term {term!r} at position {position}")
        opening, closing, quoted, tag, word = match.groups()
        if opening or closing:
            tokens.append(("paren", opening or closing))
        elif tag is not None:
            tokens.append(("tag", tag[1:-1].strip().lower()))
        elif quoted is not None:
            tokens.append(("word", quoted))
        else:
            tokens.append(("operator" if word in _OPERATORS else "word", word))
        position = match.end()
    return tokens


def _parse_sequence(tokens: Sequence[tuple[str, str]], position: int) -> tuple[Term, int]:
    """Operands joined left to right (PubMed has no operator precedence); adjacent terms AND."""
    left, position = _parse_operand(tokens, position)
    while position < len(tokens) and tokens[position] != ("paren", ")"):
        operator = "AND"
        if tokens[position][0] == "operator":
            operator = tokens[position][1]
            position += 1
        right, position = _parse_operand(tokens, position)
        left = Combined(operator, left, right)
    return left, position


def _parse_operand(tokens: Sequence[tuple[str, str]], position: int) -> tuple[Term, int]:
    if position >= len(tokens):
        raise EutilsError("term ends where an operand is expected")
    kind, value = tokens[position]
    if (kind, value) == ("paren", "("):
        inner, position = _parse_sequence(tokens, position + 1)
        if position >= len(tokens):
            raise EutilsError("unbalanced parentheses in term")
        return inner, position + 1
    words: list[str] = []
    while position < len(tokens) and tokens[position][0] == "word":
        words.append(tokens[position][1])
        position += 1
    if not words:
        raise EutilsError(f"unexpected {value!r} in term")
    tag = None
    if position < len(tokens) and tokens[position][0] == "tag":
        tag = tokens[position][1]
        position += 1
    return _tagged_term(" ".join(words), tag), position


def _tagged_term(text: str, tag: str | None) -> Term:
    if tag == "sb":
        if text.lower() != "all":
            raise EutilsError(f"only the subset all[sb] is supported, got {text}[sb]")
        return AllArticles()
    if tag in ("uid", "pmid"):
        match = _UID_VALUE.fullmatch(text.strip())
        if match is None:
            raise EutilsError(f"invalid PMID range {text}[{tag}]: expected a:b[uid]")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        return UidRange(min(low, high), max(low, high))
    if tag in _DATE_TAGS:
        raise EutilsError(f"date tags ([{tag}]) are not supported: use datetype/mindate/maxdate")
    phrase = " ".join(text.replace("*", " ").split()).lower()
    if not phrase:
        raise EutilsError(f"empty phrase in term before [{tag}]")
    return Phrase(phrase)


def matches(term: Term, article: StoredArticle) -> bool:
    match term:
        case AllArticles():
            return True
        case UidRange(low, high):
            return low <= article.pmid <= high
        case Phrase(text):
            return any(text in value for value in article.search_values)
        case Combined("AND", left, right):
            return matches(left, article) and matches(right, article)
        case Combined("OR", left, right):
            return matches(left, article) or matches(right, article)
        case Combined(_, left, right):
            return matches(left, article) and not matches(right, article)
    raise AssertionError(term)


def translate(term: Term) -> str:
    """The term as a QueryTranslation, in PubMed's style."""
    match term:
        case AllArticles():
            return "all[sb]"
        case UidRange(low, high):
            return f"{low}:{high}[uid]"
        case Phrase(text):
            return f'"{text}"[All Fields]'
        case Combined(operator, left, right):
            return f"{_grouped(left)} {operator} {_grouped(right)}"
    raise AssertionError(term)


def _grouped(term: Term) -> str:
    return f"({translate(term)})" if isinstance(term, Combined) else translate(term)


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DateFilter:
    datetype: str
    first: str
    last: str


@dataclass(frozen=True, slots=True)
class SearchRequest:
    term: Term
    dates: DateFilter | None
    retstart: int
    retmax: int
    count_only: bool
    use_history: bool
    webenv: str | None


@dataclass(frozen=True, slots=True)
class FetchRequest:
    ids: tuple[int, ...] | None
    webenv: str | None
    query_key: str | None
    retstart: int
    retmax: int


def normalize_parameters(parameters: Mapping[str, str]) -> dict[str, str]:
    """Parameter names are case-insensitive here (``WebEnv`` is sent capitalized)."""
    return {name.lower(): value for name, value in parameters.items()}


def parse_search_request(parameters: Mapping[str, str]) -> SearchRequest:
    _check_common(parameters, _ESEARCH_PARAMETERS)
    if parameters.get("sort", ""):
        raise EutilsError("sort is not supported: results are always by PMID, largest first")
    if parameters.get("rettype", "uilist") not in ("uilist", "count"):
        raise EutilsError("rettype must be uilist or count")
    usehistory = parameters.get("usehistory", "").lower()
    if usehistory not in ("", "y", "n"):
        raise EutilsError(f"usehistory must be y, got {usehistory!r}")
    return SearchRequest(
        term=parse_term(parameters.get("term", "")),
        dates=parse_date_filter(parameters),
        retstart=_non_negative(parameters, "retstart", 0),
        retmax=_non_negative(parameters, "retmax", DEFAULT_RETMAX),
        count_only=parameters.get("rettype") == "count",
        use_history=usehistory == "y",
        webenv=parameters.get("webenv") or None,
    )


def parse_fetch_request(parameters: Mapping[str, str]) -> FetchRequest:
    _check_common(parameters, _EFETCH_PARAMETERS)
    if parameters.get("rettype", "") not in ("", "abstract", "full"):
        raise EutilsError("rettype must be empty, abstract or full (PubMed XML)")
    ids_text = parameters.get("id", "").strip()
    webenv = parameters.get("webenv") or None
    if ids_text and webenv:
        raise EutilsError("give either id or WebEnv with query_key, not both")
    if not ids_text and not webenv:
        raise EutilsError("Empty id list - nothing todo", status=200)
    return FetchRequest(
        ids=_parse_ids(ids_text) if ids_text else None,
        webenv=webenv,
        query_key=parameters.get("query_key", "1").strip(),
        retstart=_non_negative(parameters, "retstart", 0),
        retmax=min(_non_negative(parameters, "retmax", DEFAULT_RETMAX), MAX_EFETCH_RETMAX),
    )


def _check_common(parameters: Mapping[str, str], supported: frozenset[str]) -> None:
    unsupported = sorted(set(parameters) - supported)
    if unsupported:
        raise EutilsError(
            f"unsupported parameter(s) {', '.join(unsupported)}; the replay server supports "
            f"{', '.join(sorted(supported))}"
        )
    if parameters.get("db", "pubmed") != "pubmed":
        raise EutilsError(f"only db=pubmed is served, got db={parameters['db']}")
    if parameters.get("retmode", "xml") != "xml":
        raise EutilsError(f"only retmode=xml is supported, got retmode={parameters['retmode']}")


def _non_negative(parameters: Mapping[str, str], name: str, default: int) -> int:
    value = parameters.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise EutilsError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _parse_ids(text: str) -> tuple[int, ...]:
    ids = [part for part in re.split(r"[\s,]+", text) if part]
    if not all(part.isdigit() for part in ids):
        raise EutilsError(f"id must be comma-separated PMIDs, got {text!r}")
    return tuple(dict.fromkeys(int(part) for part in ids))


def parse_date_filter(parameters: Mapping[str, str]) -> DateFilter | None:
    mindate = parameters.get("mindate", "").strip()
    maxdate = parameters.get("maxdate", "").strip()
    datetype = parameters.get("datetype", "").strip().lower()
    if not mindate and not maxdate:
        if datetype and datetype not in _DATE_TYPES:
            raise EutilsError(f"datetype must be mdat or edat, got {datetype!r}")
        return None
    if not mindate or not maxdate:
        raise EutilsError("mindate and maxdate must be given together")
    if datetype not in _DATE_TYPES:
        raise EutilsError(
            f"datetype {datetype or 'pdat (the default)'} is not supported by the replay "
            "server: publication dates are not indexed; use datetype=mdat or datetype=edat"
        )
    first = _bound(mindate, last=False)
    last = _bound(maxdate, last=True)
    return DateFilter(datetype, first.isoformat(), last.isoformat())


def _bound(value: str, last: bool) -> date:
    """``YYYY[/MM[/DD]]`` (or with dashes) as a day: the first or the last it covers."""
    match = _DATE_VALUE.fullmatch(value)
    if match is None:
        raise EutilsError(f"invalid date {value!r}: expected YYYY/MM/DD, YYYY/MM or YYYY")
    year, month, day = match.groups()
    try:
        if month is None:
            return date(int(year), 12, 31) if last else date(int(year), 1, 1)
        if day is None:
            days = calendar.monthrange(int(year), int(month))[1]
            return date(int(year), int(month), days if last else 1)
        return date(int(year), int(month), int(day))
    except ValueError:
        raise EutilsError(f"invalid date {value!r}") from None


# --------------------------------------------------------------------------------------------
# History server
# --------------------------------------------------------------------------------------------


class HistoryServer:
    """Ordered PMID lists per (WebEnv, query key); the oldest environments are forgotten."""

    def __init__(self, capacity: int = HISTORY_CAPACITY) -> None:
        self._capacity = capacity
        self._environments: OrderedDict[str, list[tuple[int, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, pmids: tuple[int, ...], webenv: str | None) -> tuple[str, int]:
        with self._lock:
            if webenv is None or webenv not in self._environments:
                webenv = f"MCID_{secrets.token_hex(12)}"
                self._environments[webenv] = []
            queries = self._environments[webenv]
            queries.append(pmids)
            self._environments.move_to_end(webenv)
            while len(self._environments) > self._capacity:
                self._environments.popitem(last=False)
            return webenv, len(queries)

    def get(self, webenv: str, query_key: str) -> tuple[int, ...] | None:
        with self._lock:
            queries = self._environments.get(webenv)
        if queries is None or not query_key.isdigit() or not 1 <= int(query_key) <= len(queries):
            return None
        return queries[int(query_key) - 1]


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EutilsResponse:
    status: int
    body: bytes
    content_type: str = XML_CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class _Window:
    """``limit`` records from ``start``; ``adjusted`` when PubMed's 9,999 cut ``retmax``."""

    start: int
    limit: int
    adjusted: bool

    def of(self, pmids: Sequence[int]) -> Sequence[int]:
        return pmids[self.start : self.start + self.limit]


class EutilsService:
    """Answers esearch and efetch requests from an :class:`ArticleStore`."""

    def __init__(self, store: ArticleStore, history: HistoryServer | None = None) -> None:
        self.store = store
        self.history = history or HistoryServer()

    def handle(self, path: str, parameters: Mapping[str, str]) -> EutilsResponse:
        normalized = normalize_parameters(parameters)
        is_search = path == ESEARCH_PATH
        try:
            if is_search:
                return self.esearch(parse_search_request(normalized))
            return self.efetch(parse_fetch_request(normalized))
        except EutilsError as error:
            render = render_search_error if is_search else render_fetch_error
            return EutilsResponse(error.status, render(error.message))

    def search(self, request: SearchRequest) -> list[int]:
        pmids = [a.pmid for a in self.store.candidates(request.dates) if matches(request.term, a)]
        pmids.sort(reverse=True)
        return pmids

    def esearch(self, request: SearchRequest) -> EutilsResponse:
        pmids = self.search(request)
        translation = _query_translation(request)
        if request.count_only:
            return EutilsResponse(200, render_count(len(pmids)))
        window = _window(request.retstart, request.retmax, len(pmids))
        if window is None:
            raise EutilsError(_ESEARCH_RETSTART_ERROR, status=200)
        history = None
        if request.use_history:
            history = self.history.keep(tuple(pmids), request.webenv)
        shown = window.of(pmids)
        warning = (
            f"Restrictions achieved. start and count adjusted to {window.start}, {window.limit}"
            if window.adjusted
            else ("No items found." if not pmids else None)
        )
        body = render_search(len(pmids), window.start, shown, history, translation, warning)
        return EutilsResponse(200, body)

    def efetch(self, request: FetchRequest) -> EutilsResponse:
        if request.ids is not None:
            return EutilsResponse(200, self._article_set(request.ids))
        assert request.webenv is not None and request.query_key is not None
        pmids = self.history.get(request.webenv, request.query_key)
        if pmids is None:
            raise EutilsError(f"Unable to obtain query #{request.query_key}", status=200)
        window = _window(request.retstart, request.retmax, len(pmids))
        if window is None:
            raise EutilsError(_EFETCH_RETSTART_ERROR, status=400)
        return EutilsResponse(200, self._article_set(window.of(pmids)))

    def _article_set(self, pmids: Iterable[int]) -> bytes:
        found = (self.store.get(pmid) for pmid in pmids)
        articles = [article.xml for article in found if article is not None]
        return b"".join([_ARTICLE_SET_HEAD, *(xml + b"\n" for xml in articles)]) + (
            b"</PubmedArticleSet>\n"
        )


def _window(retstart: int, retmax: int, total: int) -> _Window | None:
    """The listable slice, or None when PubMed refuses ``retstart`` (past 9,998 with more)."""
    if retstart >= MAX_LISTED and total > retstart:
        return None
    limit = min(retmax, max(0, MAX_LISTED - retstart))
    return _Window(retstart, limit, adjusted=limit < retmax)


def _query_translation(request: SearchRequest) -> str:
    translation = translate(request.term)
    dates = request.dates
    if dates is None:
        return translation
    if isinstance(request.term, Combined):
        translation = f"({translation})"
    first, last = (day.replace("-", "/") for day in (dates.first, dates.last))
    return f"{translation} AND {first}:{last}[{_DATE_TYPES[dates.datetype]}]"


def render_search(
    count: int,
    retstart: int,
    pmids: Sequence[int],
    history: tuple[str, int] | None,
    translation: str,
    warning: str | None,
) -> bytes:
    parts = [
        _ESEARCH_HEAD,
        f"<eSearchResult><Count>{count}</Count><RetMax>{len(pmids)}</RetMax>"
        f"<RetStart>{retstart}</RetStart>",
    ]
    if history is not None:
        parts.append(f"<QueryKey>{history[1]}</QueryKey><WebEnv>{history[0]}</WebEnv>")
    if pmids:
        parts.extend(["<IdList>\n", *(f"<Id>{pmid}</Id>\n" for pmid in pmids), "</IdList>"])
    else:
        parts.append("<IdList/>")
    parts.append(f"<TranslationSet/><QueryTranslation>{escape(translation)}</QueryTranslation>")
    if warning:
        parts.append(f"<WarningList><OutputMessage>{escape(warning)}</OutputMessage></WarningList>")
    parts.append("</eSearchResult>\n")
    return "".join(parts).encode("utf-8")


def render_count(count: int) -> bytes:
    return f"{_ESEARCH_HEAD}<eSearchResult><Count>{count}</Count></eSearchResult>\n".encode()


def render_search_error(message: str) -> bytes:
    body = f"{_ESEARCH_HEAD}<eSearchResult><ERROR>{escape(message)}</ERROR></eSearchResult>\n"
    return body.encode("utf-8")


def render_fetch_error(message: str) -> bytes:
    error = f"<eFetchResult>\n\t<ERROR>{escape(message)}</ERROR>\n</eFetchResult>\n"
    return (_EFETCH_ERROR_HEAD + error).encode("utf-8")
