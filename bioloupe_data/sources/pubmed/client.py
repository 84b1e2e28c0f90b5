"""NCBI E-utilities client for PubMed: `esearch.fcgi` by modification date over a range of days
(with the history server), then `efetch.fcgi` XML in batches.

Neither esearch nor the history server goes past 9,999 records, so a range with more results
is split by PMID ranges (`(query) AND a:b[uid]`), bisecting until every part fits.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bioloupe_data.sources.http import HttpClient, HttpSettings, PendingGet, SourceError

PUBLIC_BASE_URL = "https://eutils.ncbi.nlm.nih.gov"
ESEARCH_PATH = "/entrez/eutils/esearch.fcgi"
EFETCH_PATH = "/entrez/eutils/efetch.fcgi"
SOURCE = "pubmed"
# NCBI allows 3 requests a second without an API key and 10 with one.
REQUESTS_PER_SECOND = 3.0
REQUESTS_PER_SECOND_WITH_KEY = 10.0
MAX_RETRIEVABLE = 9999
# A range over the limit is split into runs of days expected to hold about this many records
# each (the headroom absorbs days busier than the range's average).
PART_TARGET = 8000
FETCH_BATCH = 500
MAX_PMID = 99_999_999
TOOL = "bioloupe-data"

# Oncology: the Neoplasms MeSH tree plus cancer words in titles and abstracts (which also
# catches articles not yet indexed with MeSH).
ONCOLOGY_QUERY = (
    "neoplasms[MeSH Terms] OR cancer[tiab] OR tumor[tiab] OR tumour[tiab] OR carcinoma[tiab] "
    "OR lymphoma[tiab] OR leukemia[tiab] OR myeloma[tiab] OR melanoma[tiab] OR sarcoma[tiab] "
    "OR oncology[tiab]"
)


def pubmed_query(value: str | None) -> str:
    """`PUBMED_QUERY`: unset means oncology; anything else is a PubMed query (`all[sb]` selects
    every citation)."""
    value = (value or "").strip()
    return value or ONCOLOGY_QUERY


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One esearch on the history server: `count` records under (`webenv`, `query_key`)."""

    count: int
    webenv: str | None
    query_key: str | None
    uid_range: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class FetchPlan:
    """The searches that together cover a range of days, each within the 9,999 limit."""

    total: int
    parts: tuple[SearchResult, ...]
    searches: int


def _day(value: date) -> str:
    return value.strftime("%Y/%m/%d")


def _day_runs(first: date, last: date, count: int) -> list[tuple[date, date]]:
    """first..last cut into `count` (at most one per day) consecutive runs of days as equal in
    length as they can be, in order."""
    days = (last - first).days + 1
    count = max(1, min(count, days))
    runs = []
    start = 0
    for index in range(count):
        length = days // count + (1 if index < days % count else 0)
        runs.append((first + timedelta(days=start), first + timedelta(days=start + length - 1)))
        start += length
    return runs


def _text(root: ET.Element, tag: str) -> str | None:
    element = root.find(tag)
    return element.text.strip() if element is not None and element.text else None


_ROOT_ELEMENT = re.compile(rb"<([A-Za-z_][\w.:-]*)[\s>/]")


def check_complete_xml(body: bytes) -> None:
    """Raise ValueError unless `body` ends by closing the element it opened first: a cut body
    never does, and checking that is cheap for a batch of hundreds of articles (the parser
    streams it later)."""
    head = re.sub(rb"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>", b"", body[:4096], flags=re.S)
    root = _ROOT_ELEMENT.search(head)
    if root is None:
        raise ValueError("no XML element")
    tail = body.rstrip()
    if not (tail.endswith(b"</" + root.group(1) + b">") or head.strip().endswith(b"/>")):
        raise ValueError(f"<{root.group(1).decode(errors='replace')}> is never closed")


def parse_esearch(body: bytes) -> SearchResult:
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise SourceError(f"{SOURCE}: esearch answered with invalid XML: {exc}") from None
    error = _text(root, "ERROR")
    if error:
        raise SourceError(f"{SOURCE}: esearch error: {error}")
    count = _text(root, "Count")
    if count is None or not count.isdigit():
        raise SourceError(f"{SOURCE}: esearch answer without a Count")
    return SearchResult(int(count), _text(root, "WebEnv"), _text(root, "QueryKey"))


class PubmedClient:
    def __init__(
        self,
        http: HttpClient,
        query: str | None = None,
        *,
        email: str | None = None,
        api_key: str | None = None,
        fetch_batch: int = FETCH_BATCH,
    ) -> None:
        self.http = http
        self.query = pubmed_query(query)
        self.email = email
        self.api_key = api_key
        self.fetch_batch = fetch_batch

    @classmethod
    def create(
        cls,
        base_url: str | None = None,
        query: str | None = None,
        *,
        email: str | None = None,
        api_key: str | None = None,
        fetch_batch: int = FETCH_BATCH,
        **settings: Any,
    ) -> PubmedClient:
        rate = REQUESTS_PER_SECOND_WITH_KEY if api_key else REQUESTS_PER_SECOND
        http_settings = HttpSettings(**{"requests_per_second": rate, **settings})
        http = HttpClient(SOURCE, base_url or PUBLIC_BASE_URL, http_settings)
        return cls(http, query, email=email, api_key=api_key, fetch_batch=fetch_batch)

    def close(self) -> None:
        self.http.close()

    def _params(self, **extra: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"db": "pubmed", "tool": TOOL, **extra}
        if self.email:
            params["email"] = self.email
        if self.api_key:
            params["api_key"] = self.api_key
        return params

    def search(
        self, start: date, end: date, uid_range: tuple[int, int] | None = None
    ) -> SearchResult:
        """Records modified between `start` and `end` (inclusive), optionally within a PMID
        range, kept on the history server."""
        term = self.query
        if uid_range:
            term = f"({term}) AND {uid_range[0]}:{uid_range[1]}[uid]"
        body = self.http.get_bytes(
            ESEARCH_PATH,
            self._params(
                term=term,
                datetype="mdat",
                mindate=_day(start),
                maxdate=_day(end),
                retmax=0,
                usehistory="y",
                retmode="xml",
            ),
            check=check_complete_xml,
        )
        result = parse_esearch(body)
        return SearchResult(result.count, result.webenv, result.query_key, uid_range)

    def plan(self, start: date, end: date) -> FetchPlan:
        """Searches covering the range, each within the 9,999 records efetch can page through.

        A range over the limit is split into equal runs of days, as many as its count calls for
        (each run over the limit again is split the same way), and a single day over it into
        PMID ranges. Every esearch is a request to NCBI, so the split follows the count instead
        of halving blindly."""
        top = self.search(start, end)
        searches = 1
        parts: list[SearchResult] = []
        pending = [(start, end, top)]
        while pending:
            first, last, found = pending.pop()
            if found.count <= MAX_RETRIEVABLE:
                if found.count:
                    parts.append(found)
                continue
            if first == last:
                day_parts, day_searches = self._split_day(first)
                parts += day_parts
                searches += day_searches
                continue
            runs = _day_runs(first, last, -(-found.count // PART_TARGET))
            searched = [(a, b, self.search(a, b)) for a, b in runs]
            searches += len(searched)
            pending += reversed(searched)  # popped earliest first
        return FetchPlan(top.count, tuple(parts), searches)

    def _split_day(self, day: date) -> tuple[list[SearchResult], int]:
        """One day over the limit, split by halving PMID ranges until each part fits."""
        parts: list[SearchResult] = []
        searches = 0
        pending = [(1, MAX_PMID)]
        while pending:
            low, high = pending.pop()
            part = self.search(day, day, (low, high))
            searches += 1
            if part.count == 0:
                continue
            if part.count <= MAX_RETRIEVABLE or low == high:
                parts.append(part)
                continue
            middle = (low + high) // 2
            pending += [(middle + 1, high), (low, middle)]  # popped lowest range first
        return parts, searches

    def fetch(self, part: SearchResult) -> Iterator[bytes]:
        """The part's records as efetch XML bodies of at most `fetch_batch` articles each."""
        if not part.webenv or not part.query_key:
            raise SourceError(f"{SOURCE}: esearch returned no history (WebEnv/QueryKey)")
        webenv, query_key = part.webenv, part.query_key

        def start(retstart: int) -> PendingGet[bytes]:
            params = self._params(
                WebEnv=webenv,
                query_key=query_key,
                retstart=retstart,
                retmax=self.fetch_batch,
                retmode="xml",
            )
            return self.http.start_get_bytes(EFETCH_PATH, params, check=check_complete_xml)

        # Each batch is requested while the caller works on the one before.
        starts = iter(range(0, min(part.count, MAX_RETRIEVABLE), self.fetch_batch))
        first = next(starts, None)
        pending = start(first) if first is not None else None
        while pending is not None:
            body = pending.result()
            following = next(starts, None)
            pending = start(following) if following is not None else None
            yield body
