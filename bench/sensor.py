"""How long an `drugs_registration_sensor` tick takes with tens of thousands of known drug
partitions: 20,000 registered, 1,000 new; then a tick with nothing new, and a tick without a
cursor (every entity looked at again), side by side in one run.

    .venv/bin/python -m bench.sensor [--known 20000] [--new 1000] [--out PATH]

Targets: the tick that registers the new drugs within 5 s, the idle tick within 0.5 s.

Dagster's storage and the warehouse are throwaway PostgreSQL databases on
`BIOLOUPE_BENCH_ADMIN_URL` (default 127.0.0.1:5432). Prints a table and writes
bench/results/sensor.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
from rich.console import Console
from rich.table import Table

from bench._common import (
    RESULTS,
    Row,
    machine_facts,
    postgres_instance,
    print_table,
    throwaway_database,
)
from bioloupe_data.resources import WarehouseResource
from bioloupe_data.sensors import drug_registration_sensor
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.migrate import migrate

SENSOR_TIMEOUT_SECONDS = 60  # Dagster's default sensor evaluation timeout
REGISTER_TARGET_SECONDS, IDLE_TARGET_SECONDS = 5.0, 0.5


REGISTERING = "new drugs registered"
IDLE = "nothing new (idle tick, cursor)"


def seed_drugs(url: str, count: int) -> None:
    with connect(url) as conn:
        migrate(conn)
        with (
            conn.transaction(),
            conn.cursor().copy("COPY enriched.drugs (drug_key, name) FROM STDIN") as copy,
        ):
            for i in range(count):
                copy.write_row((f"bench-drug-{i:06d}", f"Bench drug {i}"))


def tick(instance: dg.DagsterInstance, url: str, cursor: str | None) -> tuple[float, Any]:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"warehouse": WarehouseResource(database_url=url)},
    )
    started = time.perf_counter()
    result = drug_registration_sensor(context)
    return time.perf_counter() - started, result


def new_keys(result: Any) -> int:
    if isinstance(result, dg.SkipReason):
        return 0
    return sum(len(r.partition_keys) for r in result.dynamic_partitions_requests or [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--known", type=int, default=20_000)
    parser.add_argument("--new", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "sensor.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    rows: dict[str, dict[str, Any]] = {}
    with throwaway_database() as url, throwaway_database() as storage:
        seed_drugs(url, args.known + args.new)
        with postgres_instance(storage, "1000") as instance:
            known = [f"bench-drug-{i:06d}" for i in range(args.known)]
            for i in range(0, len(known), 5_000):
                instance.add_dynamic_partitions("drugs", known[i : i + 5_000])
            cursor = str(args.known)

            seconds, result = tick(instance, url, cursor)
            rows[REGISTERING] = {
                "seconds": seconds,
                "new_keys": new_keys(result),
                "run_requests": len(getattr(result, "run_requests", None) or []),
            }
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(
                    request.partitions_def_name, list(request.partition_keys)
                )
            seconds, again = tick(instance, url, result.cursor)
            rows[IDLE] = {
                "seconds": seconds,
                "new_keys": new_keys(again),
                "run_requests": 0,
            }
            seconds, cold = tick(instance, url, None)
            rows["no cursor: 21,000 looked at"] = {
                "seconds": seconds,
                "new_keys": new_keys(cold),
                "run_requests": len(getattr(cold, "run_requests", None) or []),
            }

    console = Console(width=110)
    table = Table(title=f"sensor tick with {args.known:,} known drug partitions")
    for column in ("tick", "seconds", "new keys", "run requests", "share of 60 s timeout"):
        table.add_column(column, justify="left" if column == "tick" else "right")
    for label, row in rows.items():
        table.add_row(
            label,
            f"{row['seconds']:.3f}",
            str(row["new_keys"]),
            str(row["run_requests"]),
            f"{100 * row['seconds'] / SENSOR_TIMEOUT_SECONDS:.2f}%",
        )
    console.print(table)
    verdicts = [
        Row(
            f"{args.new:,} new drugs among {args.known:,} known: tick",
            f"{rows[REGISTERING]['seconds']:.2f} s, {rows[REGISTERING]['new_keys']:,} registered",
            f"≤ {REGISTER_TARGET_SECONDS:g} s",
            rows[REGISTERING]["seconds"] <= REGISTER_TARGET_SECONDS
            and rows[REGISTERING]["new_keys"] == args.new,
        ),
        Row(
            "idle tick",
            f"{rows[IDLE]['seconds']:.3f} s, {rows[IDLE]['new_keys']} registered",
            f"≤ {IDLE_TARGET_SECONDS:g} s",
            rows[IDLE]["seconds"] <= IDLE_TARGET_SECONDS and rows[IDLE]["new_keys"] == 0,
        ),
    ]
    print_table(console, "sensor targets", verdicts)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": machine_facts(),
        "known": args.known,
        "new": args.new,
        "results": rows,
        "table": [row.as_json() for row in verdicts],
    }
    out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
