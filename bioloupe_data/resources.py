"""Resources: the warehouse connection and the source API clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import PrivateAttr

from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.sources.clinicaltrials.client import PUBLIC_BASE_URL
from bioloupe_data.sources.http import HttpClient, RetryEvent
from bioloupe_data.sources.pubmed.client import PUBLIC_BASE_URL as PUBMED_PUBLIC_BASE_URL
from bioloupe_data.sources.pubmed.client import PubmedClient
from bioloupe_data.warehouse.database import connect, default_data_dir, resolve_warehouse_url
from bioloupe_data.warehouse.migrate import migrate


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse. Without a URL, the embedded `pgserver` PostgreSQL in
    `.bioloupe/` is started (or reused)."""

    database_url: str = ""
    embedded_dir: str = ""

    _url: str | None = PrivateAttr(default=None)

    def url(self) -> str:
        if self._url is None:
            data_dir = Path(self.embedded_dir) if self.embedded_dir else default_data_dir()
            self._url = resolve_warehouse_url(self.database_url or None, data_dir)
        return self._url

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        with connect(self.url()) as conn:
            migrate(conn)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with connect(self.url()) as conn:
            yield conn


class ClinicalTrialsResource(dg.ConfigurableResource):
    """ClinicalTrials.gov API v2 (`CTGOV_BASE_URL`, scope `CTGOV_SCOPE`)."""

    base_url: str = PUBLIC_BASE_URL
    scope: str = ""
    timeout_seconds: float = 60.0
    max_attempts: int = 6

    @contextmanager
    def client(self, log: dg.DagsterLogManager | None = None) -> Iterator[ClinicalTrialsClient]:
        client = ClinicalTrialsClient.create(
            self.base_url or PUBLIC_BASE_URL,
            self.scope or None,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
        )
        _log_retries(client.http, log)
        try:
            yield client
        finally:
            client.close()


class PubmedResource(dg.ConfigurableResource):
    """NCBI E-utilities for PubMed (`PUBMED_BASE_URL`, query `PUBMED_QUERY`, `NCBI_API_KEY`)."""

    base_url: str = PUBMED_PUBLIC_BASE_URL
    query: str = ""
    api_key: str = ""
    email: str = ""
    timeout_seconds: float = 120.0
    max_attempts: int = 6

    @contextmanager
    def client(self, log: dg.DagsterLogManager | None = None) -> Iterator[PubmedClient]:
        client = PubmedClient.create(
            self.base_url or PUBMED_PUBLIC_BASE_URL,
            self.query or None,
            email=self.email or None,
            api_key=self.api_key or None,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
        )
        _log_retries(client.http, log)
        try:
            yield client
        finally:
            client.close()


def _log_retries(http: HttpClient, log: dg.DagsterLogManager | None) -> None:
    """Each request-level retry as a warning in the run's log (secrets already redacted)."""
    if log is None:
        return

    def log_retry(event: RetryEvent) -> None:
        log.warning(
            f"{http.source}: attempt {event.attempt} failed ({event.cause}); "
            f"retrying in {event.wait_seconds:.1f}s"
        )

    http.on_retry = log_retry


class LlmSettings(dg.ConfigurableResource):
    """Whether enrichment may ask an LLM (only with `OPENAI_API_KEY`), which model
    (`OPENAI_MODEL`) and how much one run may spend."""

    enabled: bool = False
    model: str = "gpt-4o-mini"
    max_calls_per_run: int = 500
    max_tokens_per_run: int = 500_000
