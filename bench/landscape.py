"""Backfill of `analytics/landscape` over years × every tumor area, on synthetic studies: the SQL
alone, then through Dagster (PostgreSQL storage, batched events) in the runs a UI backfill
launches, with Dagster's default per-partition "planned" events and with one per run; each
twice, the second time writing nothing.

    .venv/bin/python -m bench.landscape [--years 3] [--days 90] [--per-day 20]

Needs a PostgreSQL server to create throwaway databases on (`BIOLOUPE_BENCH_ADMIN_URL`, default
postgresql://postgres@127.0.0.1:5432/postgres). Prints a table and writes
bench/results/landscape.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from rich.console import Console
from rich.table import Table

from bench._common import RESULTS, postgres_instance, throwaway_database, timed
from bioloupe_data.assets.analytics import LANDSCAPE_KEY, build_landscape
from bioloupe_data.enrichment.geocode import shared_geocoder
from bioloupe_data.enrichment.trial_features import TUMOR_AREAS
from bioloupe_data.partitions import landscape_partitions
from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC, land_range
from bioloupe_data.pipelines.entities import (
    profile_drugs,
    profile_sponsors,
    refresh_drugs,
    refresh_sponsors,
)
from bioloupe_data.pipelines.features import extract_days
from bioloupe_data.pipelines.geocoding import geocode_days
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.pipelines.landscape import refresh_landscape
from bioloupe_data.pipelines.normalize import normalize_days
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic
from bioloupe_data.resources import WarehouseResource
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.migrate import migrate

END = date(2024, 12, 31)
# Dagster writes one "materialization planned" event per partition of a run, one at a time; with
# this set, one per run (but a failed run then marks no partition failed).
PLANNED_SUBSET_VAR = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
START_DATE = "2020-01-01"


def load(url: str, data: Path, first: date, last: date) -> dict[str, int]:
    """Land, normalize and enrich (rules alone, no LLM step) the synthetic studies through the
    pipelines the assets run."""
    with ReplayServer(data) as server, connect(url) as conn:
        migrate(conn)
        client = ClinicalTrialsClient.create(server.url, "all")
        days = days_between(first, last)
        land_range(conn, client, first, last, run_id="bench")
        normalize_days(conn, TRIALS_SPEC, days, run_id="bench")
        client.close()
        refresh_drugs(conn)
        refresh_sponsors(conn)
        drugs = [r[0] for r in conn.execute("SELECT drug_key FROM enriched.drugs")]
        sponsors = [r[0] for r in conn.execute("SELECT sponsor_key FROM enriched.sponsors")]
        profile_drugs(conn, drugs, None)
        profile_sponsors(conn, sponsors, None)
        extract_days(conn, days)
        geocode_days(conn, shared_geocoder(), days)
        trials = conn.execute("SELECT count(*) FROM core.trials").fetchone()
    return {"trials": trials[0] if trials else 0, "drugs": len(drugs), "sponsors": len(sponsors)}


def sql_only(url: str, keys: list[tuple[date, str]]) -> dict[str, Any]:
    with connect(url) as conn:
        seconds, chunks = timed(lambda: refresh_landscape(conn, keys))
        again, rerun = timed(lambda: refresh_landscape(conn, keys))
    return {
        "runs": 0,
        "statements": len(chunks),
        "seconds": seconds,
        "rows": sum(c.row_count for c in chunks),
        "written": sum(c.counts.written for c in chunks),
        "rerun_seconds": again,
        "rerun": sum(c.counts.written for c in rerun),
    }


def backfill_runs(asset: dg.AssetsDefinition, keys: list[str]) -> list[tuple[str, str]]:
    """The runs Dagster's backfill launches for these partitions under a single-run policy: one
    per partition key range of the subset (for date × area, one per area)."""
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    partitions_def = asset.partitions_def
    assert partitions_def is not None
    subset = partitions_def.subset_with_partition_keys(keys)
    return [(r.start, r.end) for r in subset.get_partition_key_ranges(partitions_def)]


@contextmanager
def environment(name: str, value: str | None) -> Iterator[None]:
    previous = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def through_dagster(
    url: str, asset: dg.AssetsDefinition, keys: list[str], subset_in_planned_events: bool
) -> dict[str, Any]:
    runs = backfill_runs(asset, keys)
    resources = {"warehouse": WarehouseResource(database_url=url)}

    def backfill(instance: dg.DagsterInstance) -> dict[str, int]:
        totals = {"rows": 0, "written": 0}
        for start, end in runs:
            result = dg.materialize(
                [asset],
                instance=instance,
                resources=resources,
                tags={
                    "dagster/asset_partition_range_start": start,
                    "dagster/asset_partition_range_end": end,
                },
                # As `bioloupe-data backfill` runs: a debug line per event would flood the
                # benchmark's output (15,344 partitions) and time the terminal with it.
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            assert result.success
            metadata = result.asset_materializations_for_node("analytics__landscape")[-1].metadata
            totals["rows"] += int(metadata["dagster/row_count"].value)
            totals["written"] += sum(
                int(metadata[k].value) for k in ("inserted", "updated", "deleted")
            )
        return totals

    with (
        environment(PLANNED_SUBSET_VAR, "1" if subset_in_planned_events else None),
        throwaway_database() as storage,
        postgres_instance(storage, "1000") as instance,
    ):
        seconds, first = timed(lambda: backfill(instance))
        again, second = timed(lambda: backfill(instance))
        recorded = len(instance.get_materialized_partitions(LANDSCAPE_KEY))
    assert recorded == len(keys)
    return {
        "runs": len(runs),
        "seconds": seconds,
        "rows": first["rows"],
        "written": first["written"],
        "rerun_seconds": again,
        "rerun": second["written"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--range-days", type=int, default=None, help="instead of --years")
    parser.add_argument("--days", type=int, default=90, help="synthetic update days")
    parser.add_argument("--per-day", type=int, default=20, help="synthetic studies per day")
    parser.add_argument("--out", type=Path, default=RESULTS / "landscape.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    first_day = END.replace(year=END.year - args.years) + timedelta(days=1)
    if args.range_days:
        first_day = END - timedelta(days=args.range_days - 1)
    days = days_between(first_day, END)
    keys = [(day, area) for day in days for area in TUMOR_AREAS]
    asset = build_landscape(landscape_partitions(START_DATE))
    partition_keys = [
        dg.MultiPartitionKey({"date": day.isoformat(), "tumor_area": area}) for day, area in keys
    ]
    console = Console(width=130)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as data, throwaway_database() as url:
        summary = write_synthetic(
            Path(data), args.days, args.per_day, seed=7, end=END, pubmed_per_day=0
        )
        loaded = load(url, Path(data), END - timedelta(days=args.days - 1), END)
        rows["SQL only (refresh_landscape)"] = sql_only(url, keys)
        for label, subset in (
            ("Dagster, a planned event per partition", False),
            ("Dagster, a planned event per run (*)", True),
        ):
            with connect(url) as conn:
                conn.execute("TRUNCATE analytics.landscape")
            rows[label] = through_dagster(url, asset, partition_keys, subset)

    table = Table(
        title=f"analytics/landscape: {len(days)} days × {len(TUMOR_AREAS)} areas = "
        f"{len(keys)} partitions ({loaded['trials']} synthetic trials)"
    )
    for column in ("setup", "runs", "first run s", "rows", "written", "re-run s", "re-run writes"):
        table.add_column(column, justify="left" if column == "setup" else "right")
    for label, row in rows.items():
        table.add_row(
            label,
            str(row["runs"]),
            f"{row['seconds']:.1f}",
            str(row["rows"]),
            str(row["written"]),
            f"{row['rerun_seconds']:.1f}",
            str(row["rerun"]),
        )
    console.print(table)
    console.print(f"(*) {PLANNED_SUBSET_VAR}=1")
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "days": len(days),
                "areas": len(TUMOR_AREAS),
                "partitions": len(keys),
                "synthetic": {"days": args.days, "per_day": args.per_day, **loaded},
                "studies": summary.studies,
                "results": rows,
            },
            indent=2,
        )
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
