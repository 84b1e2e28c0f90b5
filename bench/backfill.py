"""Backfill cost, side by side in one run: the day-by-day pipeline alone, the same range through
Dagster with PostgreSQL storage opened as `bioloupe-data backfill` opens it (per-partition events
written one by one, then in batches, the command's default), and a second, no-op backfill. The
ms/day column is what each day of a range costs, records or none: `--days 7300 --per-day 1` is a
twenty-year range.

    .venv/bin/python -m bench.backfill [--days 180] [--per-day 20]

Needs a PostgreSQL server to create throwaway databases on (`BIOLOUPE_BENCH_ADMIN_URL`, default
postgresql://postgres@127.0.0.1:5432/postgres). Prints a table and writes
bench/results/backfill.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench._common import (
    RESULTS,
    pipeline_only,
    postgres_instance,
    throwaway_database,
    timed,
)
from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY
from bioloupe_data.assets.normalize import TRIALS_KEY
from bioloupe_data.definitions import defs
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic
from bioloupe_data.runner import run_backfill

KEYS = [CLINICALTRIALS_LANDING_KEY, TRIALS_KEY]


def through_dagster(
    url: str, server: ReplayServer, start: date, end: date, batch: str
) -> dict[str, Any]:
    os.environ["BIOLOUPE_DATABASE_URL"] = url
    with (
        throwaway_database() as storage,
        postgres_instance(storage, batch, as_the_command=True) as instance,
    ):
        definitions = defs()
        quiet = Console(quiet=True)
        seconds, report = timed(
            lambda: run_backfill(definitions, instance, KEYS, start, end, console=quiet)
        )
        again, second = timed(
            lambda: run_backfill(definitions, instance, KEYS, start, end, console=quiet)
        )
    return {
        "seconds": seconds,
        "runs": len(report.runs),
        "written": report.changed,
        "rerun_seconds": again,
        "rerun": second.changed,
        "failed": report.failed or second.failed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--per-day", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS / "backfill.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    end = date(2024, 12, 31)
    start = end - timedelta(days=args.days - 1)
    os.environ.update(CTGOV_SCOPE="all", BIOLOUPE_START_DATE=str(start))
    console = Console(width=110)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as data:
        summary = write_synthetic(
            Path(data), args.days, args.per_day, seed=5, end=end, pubmed_per_day=0
        )
        with ReplayServer(Path(data)) as server:
            os.environ["CTGOV_BASE_URL"] = server.url
            with throwaway_database() as url:
                rows["pipeline only (no Dagster)"] = pipeline_only(url, server.url, start, end)
            for label, batch in (
                ("Dagster, events one by one", "0"),
                ("Dagster, events in batches", "1000"),
            ):
                with throwaway_database() as url:
                    rows[label] = through_dagster(url, server, start, end, batch)

    table = Table(
        title=f"backfill of {args.days} days × {args.per_day} studies "
        f"({summary.studies} studies, {summary.bytes / 1e6:.0f} MB)"
    )
    for column in ("setup", "first run s", "ms/day", "rows written", "re-run s", "re-run writes"):
        table.add_column(column, justify="left" if column == "setup" else "right")
    for label, row in rows.items():
        table.add_row(
            label,
            f"{row['seconds']:.1f}",
            f"{1000 * row['seconds'] / args.days:.1f}",
            str(row["written"]),
            f"{row['rerun_seconds']:.1f}",
            str(row["rerun"]),
        )
    console.print(table)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "days": args.days,
                "per_day": args.per_day,
                "studies": summary.studies,
                "results": rows,
            },
            indent=2,
        )
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
