"""ClinicalTrials.gov API v2 client: one date-range query per chunk of days, paged with
`pageToken`, sorted by `LastUpdatePostDate` so the caller can split the stream by day."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

from bioloupe_data.sources.clinicaltrials.pages import CutPage, StudyCut, cut_page
from bioloupe_data.sources.http import (
    HttpClient,
    HttpSettings,
    HTTPStatusError,
    PendingGet,
    RetryEvent,
    SourceError,
)

PUBLIC_BASE_URL = "https://clinicaltrials.gov"
# The public API allows about 50 requests a minute per client.
PUBLIC_REQUESTS_PER_SECOND = 50 / 60
MAX_PAGE_SIZE = 1000
STUDIES_PATH = "/api/v2/studies"
SOURCE = "clinicaltrials_gov"
# A page token the API no longer accepts (HTTP 400) restarts the query this many times at most.
MAX_QUERY_RESTARTS = 3

# Oncology by condition: what the registry's own condition search expands (synonyms included).
ONCOLOGY_CONDITION_QUERY = (
    "cancer OR neoplasm OR tumor OR carcinoma OR lymphoma OR leukemia OR myeloma OR melanoma "
    "OR sarcoma OR glioma OR glioblastoma OR blastoma OR mesothelioma OR malignancy"
)


def condition_query(scope: str | None) -> str | None:
    """`CTGOV_SCOPE`: unset means oncology, `all` means every study, anything else is a
    ClinicalTrials.gov condition query (`query.cond`)."""
    scope = (scope or "").strip()
    if not scope:
        return ONCOLOGY_CONDITION_QUERY
    if scope.lower() == "all":
        return None
    return scope


@dataclass(frozen=True, slots=True)
class StudyPage:
    studies: list[dict[str, Any]]
    total_count: int | None
    page_number: int


@dataclass(frozen=True, slots=True)
class CutStudyPage:
    """A page whose studies are cut from its bytes (`pages.cut_page`), none decoded yet.
    `studies_of` decodes a body of this page as the client decodes any page."""

    cuts: list[StudyCut]
    body: bytes
    total_count: int | None
    page_number: int
    studies_of: Callable[[bytes], list[Any]]

    def decoded(self) -> list[Any]:
        """Every study of the page, decoded as a whole (when a cut does not decode alone)."""
        return self.studies_of(self.body)


class ClinicalTrialsClient:
    def __init__(
        self, http: HttpClient, scope: str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> None:
        self.http = http
        self.query = condition_query(scope)
        self.page_size = page_size

    @classmethod
    def create(
        cls,
        base_url: str | None = None,
        scope: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        **settings: Any,
    ) -> ClinicalTrialsClient:
        http_settings = HttpSettings(
            **{"requests_per_second": PUBLIC_REQUESTS_PER_SECOND, **settings}
        )
        http = HttpClient(SOURCE, base_url or PUBLIC_BASE_URL, http_settings)
        return cls(http, scope, page_size)

    def close(self) -> None:
        self.http.close()

    def range_params(self, start: date, end: date, page_size: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "format": "json",
            "filter.advanced": (
                f"AREA[LastUpdatePostDate]RANGE[{start.isoformat()},{end.isoformat()}]"
            ),
            "sort": "LastUpdatePostDate:asc",
            "pageSize": min(page_size, MAX_PAGE_SIZE),
            "countTotal": "true",
        }
        if self.query:
            params["query.cond"] = self.query
        return params

    def iter_pages(
        self, start: date, end: date, page_size: int | None = None, *, cut: bool = False
    ) -> Iterator[StudyPage | CutStudyPage]:
        """Every study whose last update was posted between `start` and `end` (inclusive); with
        `cut`, each page written as the API writes it comes as its studies' cuts, undecoded.

        A `pageToken` the API rejects (it expires, or the API restarted) restarts the query
        from its first page: the pages already delivered are fetched again but not delivered
        twice, and each must start with the study it started with before, or the results
        changed under the query and the range fails (to be run again)."""
        params = self.range_params(start, end, page_size or self.page_size)
        delivered: list[str | None] = []  # the first study of each page delivered
        restarts = 0
        while True:
            try:
                yield from self._pages(params, delivered, start, end, cut)
                return
            except _ExpiredToken as expired:
                restarts += 1
                if restarts > MAX_QUERY_RESTARTS:
                    raise SourceError(
                        f"{SOURCE}: the API rejected the page token of page "
                        f"{len(delivered) + 1} of {start}..{end} {restarts} times: {expired}"
                    ) from None
                self.http.record_retry(
                    RetryEvent(
                        restarts,
                        0.0,
                        f"page token rejected after {len(delivered)} pages ({expired}); "
                        "querying again from the first page",
                    )
                )

    def _pages(
        self,
        params: dict[str, Any],
        delivered: list[str | None],
        start: date,
        end: date,
        cut: bool,
    ) -> Iterator[StudyPage | CutStudyPage]:
        total: int | None = None
        number = 0
        token: str | None = None
        # The next page is requested as soon as this one's token is known, so the API's time
        # to answer overlaps the caller's work on this page.
        pending = self._start_page(params, cut)
        page_params = params
        while True:
            this_page = page_params
            try:
                raw, cuts = pending.result()
                body = cuts.envelope if cuts else self.http.json_of(raw, STUDIES_PATH, this_page)
            except HTTPStatusError as exc:
                if token and exc.status == 400:
                    raise _ExpiredToken(str(exc)) from None
                raise
            _check_shape(body, start, end)
            if number == 0:
                total = body.get("totalCount")
            first = cuts.cuts[0].nct_id if cuts and cuts.cuts else _first_id(body["studies"])
            if number < len(delivered) and first != delivered[number]:
                raise SourceError(
                    f"{SOURCE}: the results of {start}..{end} changed while paging (page "
                    f"{number + 1} now starts with {first}, before with "
                    f"{delivered[number]}); run the range again"
                )
            token = body.get("nextPageToken")
            if token:
                page_params = {**params, "pageToken": token}
                pending = self._start_page(page_params, cut)
            if number >= len(delivered):
                delivered.append(first)
                page: list[StudyPage | CutStudyPage] = [
                    CutStudyPage(
                        cuts.cuts,
                        raw,
                        total,
                        number,
                        partial(self._studies_of, this_page, first, start, end),
                    )
                    if cuts
                    else StudyPage(body.pop("studies"), total, number)
                ]
                raw, cuts = b"", None
                # Handed over, not kept: the caller may free the page before asking for the next.
                yield page.pop()
            if not token:
                return
            number += 1

    def _studies_of(
        self, params: dict[str, Any], first: str | None, start: date, end: date, raw: bytes
    ) -> list[Any]:
        """The studies of a cut page's body, decoded: a body that is not JSON after all (damaged
        on the way) is one more retry, fetched again, and must start where the cut did."""
        body = self.http.json_of(raw, STUDIES_PATH, params)
        _check_shape(body, start, end)
        now = _first_id(body["studies"])
        if now != first:
            raise SourceError(
                f"{SOURCE}: the results of {start}..{end} changed while paging (a page "
                f"fetched again starts with {now}, before with {first}); run the range again"
            )
        return list(body["studies"])

    def _start_page(
        self, params: dict[str, Any], cut: bool
    ) -> PendingGet[tuple[bytes, CutPage | None]]:
        """The page's request, started; with `cut`, its studies are cut and hashed as it
        arrives, beside the caller's work on the page before."""
        return self.http.start_get(
            STUDIES_PATH, params, then=lambda raw: (raw, cut_page(raw) if cut else None)
        )

    def data_timestamp(self) -> str | None:
        body = self.http.get_json("/api/v2/version")
        return body.get("dataTimestamp") if isinstance(body, dict) else None


def _check_shape(body: Any, start: date, end: date) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("studies"), list):
        raise SourceError(f"{SOURCE}: unexpected response shape for {start}..{end}")


class _ExpiredToken(Exception):
    """The API rejected a page token."""


def _first_id(studies: list[Any]) -> str | None:
    try:
        return studies[0]["protocolSection"]["identificationModule"]["nctId"]
    except (IndexError, KeyError, TypeError):
        return None
