"""PubMed range backfills end to end: articles per second and peak memory of `bioloupe-data
backfill --select raw/pubmed,core/publications` over a range, and a no-op re-run of it.

    .venv/bin/python -m bench.pubmed [--per-day 1000] [--days 30] [--cache-dir DIR] [--out PATH]

Setup. Synthetic articles (`bioloupe-data synth --pubmed-per-day`) for the last `--days` days up
to 2024-12-31, `--per-day` a day, written once into a folder under `--cache-dir` and reused.
The replay server serves them through its E-utilities (esearch on the history server, efetch in
batches) with no rate limit; the command runs as in `bench.throughput`: a subprocess with its
own throwaway warehouse and Dagster storage databases, the process tree's peak RSS sampled, the
time by step read from the run's events. The query is the project's default (oncology), which
some synthetic articles do not match: the rate counts what landed.

Measurements: the range's first backfill (articles a second over the command's wall time), then
the same range again with nothing changed at the source (everything searched and fetched
again): its time against the first run's, and the rows PostgreSQL counts as written in raw and
core tables. Targets, as for ClinicalTrials.gov: 0 rows; at most 30% of the first run's time.

Needs a PostgreSQL server to create throwaway databases on (`--admin-url`). Prints one table and
writes bench/results/pubmed.json (`--out`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console

from bench._common import (
    ADMIN_URL,
    END,
    RESULTS,
    Row,
    Workspace,
    add_cache_dir_argument,
    machine_facts,
    megabytes,
    print_table,
    scratch_with_server,
    synthetic_folder,
    workspace,
)
from bench.throughput import (
    CliRun,
    backfill,
    counter_delta,
    landed_documents,
    noop_rows,
    where_time_went,
    write_counters,
)

SELECT = "raw/pubmed,core/publications"


def landed_articles(url: str, start: date, end: date) -> int:
    return landed_documents(url, start, end, "pubmed", "publications")


def first_run_rows(run: CliRun) -> list[Row]:
    return [
        Row(
            f"{run.label}: end to end",
            f"{run.rate:,.0f} articles/s ({run.studies:,} in {run.wall_seconds:.1f} s, "
            f"CPU {run.cpu_seconds:.0f} s, {run.requests} requests)",
        ),
        Row(f"{run.label}: time by step", where_time_went(run)),
        Row(f"{run.label}: peak RSS", megabytes(run.peak_rss_bytes)),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=1000, help="articles a day (default 1000)")
    parser.add_argument("--days", type=int, default=30)
    add_cache_dir_argument(parser)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--out", type=Path, default=RESULTS / "pubmed.json")
    args = parser.parse_args(argv)
    if min(args.per_day, args.days) < 1:
        parser.error("--days and --per-day must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console()
    facts = machine_facts(args.admin_url)
    synthetic = synthetic_folder(args.cache_dir, args.days, args.per_day, pubmed=True)
    start, end = END - timedelta(days=args.days - 1), END
    with ExitStack() as stack:
        scratch, logs, server_url, server_load = scratch_with_server(
            stack, synthetic.folder, "bench-pm-"
        )
        label = f"{args.days} days"

        def measure(name: str, space: Workspace) -> CliRun:
            console.print(f"{name}: bioloupe-data backfill --from {start} --to {end} …")
            run = backfill(
                name, space, server_url, start, start, end, SELECT, logs, count=landed_articles
            )
            console.print(f"  {run.studies:,} articles in {run.wall_seconds:.1f} s")
            return run

        with workspace(args.admin_url, scratch) as space:
            first = measure(label, space)
            before = write_counters(space.warehouse_url)
            again = measure(f"{label}, no-op re-run", space)
            rewritten = counter_delta(before, write_counters(space.warehouse_url))

    rows = [
        Row(
            "synthetic articles" + (" (cached)" if synthetic.cached else ""),
            f"{synthetic.studies:,} ({synthetic.bytes / 1e6:,.0f} MB) generated in "
            f"{synthetic.generation_seconds:.0f} s",
        ),
        Row("replay server start-up (no rate limit)", f"{server_load:.1f} s"),
        *first_run_rows(first),
        *noop_rows(first, again, rewritten, None),
    ]
    print_table(console, f"PubMed backfill ({args.per_day} articles a day)", rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": facts,
                "parameters": {"days": args.days, "per_day": args.per_day, "select": SELECT},
                "replay_server_load_seconds": server_load,
                "runs": [first.as_json(), again.as_json()],
                "rewritten": rewritten,
                "table": [row.as_json() for row in rows],
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
