"""ClinicalTrials.gov API v2 client: one date-range query per chunk of days, paged with
`pageToken`, sorted by `LastUpdatePostDate` so the caller can split the stream by day."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from bioloupe_data.sources.http import HttpClient, HttpSettings, SourceError

PUBLIC_BASE_URL = "https://clinicaltrials.gov"
# The public API allows about 50 requests a minute per client.
PUBLIC_REQUESTS_PER_SECOND = 50 / 60
MAX_PAGE_SIZE = 1000
SOURCE = "clinicaltrials_gov"

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


class ClinicalTrialsClient:
    def __init__(self, http: HttpClient, scope: str | None = None) -> None:
        self.http = http
        self.query = condition_query(scope)

    @classmethod
    def create(
        cls, base_url: str | None = None, scope: str | None = None, **settings: Any
    ) -> ClinicalTrialsClient:
        http_settings = HttpSettings(
            **{"requests_per_second": PUBLIC_REQUESTS_PER_SECOND, **settings}
        )
        return cls(HttpClient(SOURCE, base_url or PUBLIC_BASE_URL, http_settings), scope)

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
        self, start: date, end: date, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[StudyPage]:
        """Every study whose last update was posted between `start` and `end` (inclusive)."""
        params = self.range_params(start, end, page_size)
        total: int | None = None
        number = 0
        while True:
            body = self.http.get_json("/api/v2/studies", params)
            if not isinstance(body, dict) or not isinstance(body.get("studies"), list):
                raise SourceError(f"{SOURCE}: unexpected response shape for {start}..{end}")
            if number == 0:
                total = body.get("totalCount")
            yield StudyPage(body["studies"], total, number)
            token = body.get("nextPageToken")
            if not token:
                return
            params = {**params, "pageToken": token}
            number += 1

    def data_timestamp(self) -> str | None:
        body = self.http.get_json("/api/v2/version")
        return body.get("dataTimestamp") if isinstance(body, dict) else None
