"""Resources: the warehouse connection, the source API clients and the pandas I/O manager."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import psycopg
from pydantic import PrivateAttr

from bioloupe_data.pipelines.normalize import PROCESS_MIN_DOCUMENTS
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.sources.clinicaltrials.client import MAX_PAGE_SIZE, PUBLIC_BASE_URL
from bioloupe_data.sources.http import HttpClient, RetryEvent
from bioloupe_data.sources.pubmed.client import FETCH_BATCH, PubmedClient
from bioloupe_data.sources.pubmed.client import PUBLIC_BASE_URL as PUBMED_PUBLIC_BASE_URL
from bioloupe_data.warehouse.database import connect, default_data_dir, resolve_warehouse_url
from bioloupe_data.warehouse.frames import SliceFilter, read_frame, write_frame
from bioloupe_data.warehouse.migrate import migrate


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse. Without a URL, the embedded `pgserver` PostgreSQL in
    `.bioloupe/` is started (or reused)."""

    database_url: str = ""
    embedded_dir: str = ""
    # False in staging and production (`BIOLOUPE_ENV`): without a URL the run fails instead of
    # starting a PostgreSQL of its own.
    allow_embedded: bool = True
    # Days a range run writes side by side, each on a connection of its own: while one day's
    # documents are parsed or derived in Python, PostgreSQL works on another's.
    parallel_days: int = 2
    # A range with at least this many documents to derive normalizes its days in
    # `parallel_days` worker processes, each with its own connection: deriving holds the GIL,
    # so threads leave the other core to PostgreSQL alone. Fewer stay in threads (a daily
    # increment), which cost nothing to start.
    process_min_documents: int = PROCESS_MIN_DOCUMENTS

    _url: str | None = PrivateAttr(default=None)

    def url(self) -> str:
        if self._url is None:
            if not self.database_url and not self.allow_embedded:
                raise dg.DagsterInvariantViolationError(
                    "no warehouse URL: set BIOLOUPE_DATABASE_URL (staging and production never "
                    "start an embedded PostgreSQL)"
                )
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

    @contextmanager
    def day_connections(self) -> Iterator[list[psycopg.Connection]]:
        """`parallel_days` connections (at least one) for the day-by-day pipelines."""
        with ExitStack() as stack:
            yield [
                stack.enter_context(connect(self.url())) for _ in range(max(1, self.parallel_days))
            ]


class ClinicalTrialsResource(dg.ConfigurableResource):
    """ClinicalTrials.gov API v2 (`CTGOV_BASE_URL`, scope `CTGOV_SCOPE`)."""

    base_url: str = PUBLIC_BASE_URL
    scope: str = ""
    timeout_seconds: float = 60.0
    max_attempts: int = 6
    # The first wait between attempts of a request; it doubles with each attempt (jittered).
    backoff_seconds: float = 1.0
    page_size: int = MAX_PAGE_SIZE

    @contextmanager
    def client(self, log: dg.DagsterLogManager | None = None) -> Iterator[ClinicalTrialsClient]:
        client = ClinicalTrialsClient.create(
            self.base_url or PUBLIC_BASE_URL,
            self.scope or None,
            page_size=self.page_size,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_initial=self.backoff_seconds,
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
    backoff_seconds: float = 1.0
    # Articles per efetch request.
    fetch_batch: int = FETCH_BATCH

    @contextmanager
    def client(self, log: dg.DagsterLogManager | None = None) -> Iterator[PubmedClient]:
        client = PubmedClient.create(
            self.base_url or PUBMED_PUBLIC_BASE_URL,
            self.query or None,
            email=self.email or None,
            api_key=self.api_key or None,
            fetch_batch=self.fetch_batch,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_initial=self.backoff_seconds,
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


class PostgresPandasIOManager(dg.ConfigurableIOManager):
    """pandas DataFrames in warehouse tables, partition by partition.

    An asset key `[schema, table]` is its table, created by a migration. A partitioned asset
    names its partition column in its definition metadata `partition_expr` (for a
    multi-partitioned one, `{dimension: column}`). An output replaces the slice of the run's
    partitions (its one partition, or every partition of its range; a time dimension as the
    run's time window) in one transaction, through COPY into a temporary table and a merge that
    leaves identical rows unwritten (`warehouse.frames.write_frame`); an unpartitioned output
    replaces the whole table. Loading an input reads the same slice back.
    """

    warehouse: WarehouseResource

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        schema, table = _table_of(context.asset_key)
        filters = _slice_filters(context, context.definition_metadata)
        with self.warehouse.connection() as conn:
            counts = write_frame(conn, schema, table, obj, filters)
        context.add_output_metadata({"dagster/row_count": len(obj), **counts.as_metadata()})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        schema, table = _table_of(context.asset_key)
        upstream = context.upstream_output
        filters = _slice_filters(context, upstream.definition_metadata if upstream else {})
        with self.warehouse.connection() as conn:
            return read_frame(conn, schema, table, filters)


def _table_of(key: dg.AssetKey) -> tuple[str, str]:
    if len(key.path) != 2:
        raise ValueError(f"asset key {key.to_user_string()} is not [schema, table]")
    return key.path[0], key.path[1]


def _slice_filters(
    context: dg.OutputContext | dg.InputContext, metadata: Mapping[str, Any]
) -> list[SliceFilter]:
    """The run's partitions of the asset as column filters; none when it is unpartitioned."""
    if not context.has_asset_partitions:
        return []
    expr = metadata.get("partition_expr")
    if expr is None:
        raise ValueError(
            f"{context.asset_key.to_user_string()} is partitioned but names no partition column "
            '(definition metadata {"partition_expr": "column"})'
        )
    partitions_def = context.asset_partitions_def
    keys = context.asset_partition_keys
    if not isinstance(partitions_def, dg.MultiPartitionsDefinition):
        if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            window = context.asset_partitions_time_window
            return [SliceFilter(str(expr), window=(window.start, window.end))]
        return [SliceFilter(str(expr), values=tuple(keys))]
    filters = []
    for dimension in partitions_def.partitions_defs:
        column = dict(expr).get(dimension.name)
        if column is None:
            raise ValueError(f"partition_expr names no column for dimension {dimension.name}")
        values = sorted(
            {
                partitions_def.get_partition_key_from_str(str(k)).keys_by_dimension[dimension.name]
                for k in keys
            }
        )
        dimension_def = dimension.partitions_def
        if isinstance(dimension_def, dg.TimeWindowPartitionsDefinition):
            # A run's partitions are one range, so its time keys form one window.
            windows = [dimension_def.time_window_for_partition_key(v) for v in values]
            start = min(w.start for w in windows)
            end = max(w.end for w in windows)
            filters.append(SliceFilter(column, window=(start, end)))
        else:
            filters.append(SliceFilter(column, values=tuple(values)))
    return filters
