"""How much of a source's time to answer a range's landing hides: ClinicalTrials.gov landing
(no Dagster) from a replay server that answers at once and from one that holds every answer back.

    .venv/bin/python -m bench.latency [--per-day 300] [--days 30] [--latency 0.5]
        [--rounds 2] [--cache-dir DIR] [--out PATH]

The public API takes seconds to answer a page of a thousand studies; the replay server answers
at once. The client requests the next page as soon as it has the current one's token, so the
source's time to answer overlaps the landing of the page before. Two replay server processes
serve the same synthetic folder (the throughput benchmark's, `bioloupe-data synth`): one as it
is, one with `--faults slow=LATENCY:*`, which holds every answer back `--latency` seconds.
Each round lands the range from each server into a throwaway warehouse (the first run), then
again (the no-op re-run: everything fetched again, nothing written), the two servers
alternating. Reported: the medians, the latency the requests would add waiting in turn
(requests × latency), the part of it that showed in the landing's time, and the part hidden.

Needs a PostgreSQL server to create throwaway databases on (`--admin-url`). Prints one table and
writes bench/results/latency.json (`--out`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from bench._common import (
    ADMIN_URL,
    END,
    RESULTS,
    Row,
    add_cache_dir_argument,
    machine_facts,
    pipeline_only,
    print_table,
    replay_requests,
    replay_server,
    synthetic_folder,
    throwaway_database,
)


@dataclass(slots=True)
class Timings:
    first: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    requests: int = 0


def land_twice(admin_url: str, server_url: str, start: date, end: date) -> tuple[float, float, int]:
    """Land start..end into a new warehouse, then again: (first run s, no-op s, requests)."""
    before = replay_requests(server_url)
    with throwaway_database(admin_url) as url:
        landed = pipeline_only(url, server_url, start, end, normalize=False)
    return landed["seconds"], landed["rerun_seconds"], (replay_requests(server_url) - before) // 2


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=300)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds each answer waits")
    parser.add_argument("--rounds", type=int, default=2)
    add_cache_dir_argument(parser)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    args = parser.parse_args(argv)
    if min(args.per_day, args.days, args.rounds) < 1 or args.latency <= 0:
        parser.error("--per-day, --days, --rounds and --latency must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    console = Console(width=150)
    facts = machine_facts(args.admin_url)
    start, end = END - timedelta(days=args.days - 1), END
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    synthetic = synthetic_folder(args.cache_dir, args.days, args.per_day)
    servers = {"at once": None, f"held back {args.latency:g} s": f"slow={args.latency}:*"}
    timings = {name: Timings() for name in servers}
    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-latency-")))
        urls = {
            name: stack.enter_context(replay_server(synthetic.folder, logs / f"{i}.log", faults))[0]
            for i, (name, faults) in enumerate(servers.items())
        }
        for round_number in range(args.rounds):
            for name, url in urls.items():
                console.print(f"round {round_number + 1}, answers {name}: landing {start}..{end} …")
                first, noop, requests = land_twice(args.admin_url, url, start, end)
                timings[name].first.append(first)
                timings[name].noop.append(noop)
                timings[name].requests = requests
                console.print(f"  first run {first:.2f} s, no-op re-run {noop:.2f} s")

    prompt, slow = (timings[name] for name in servers)
    added = slow.requests * args.latency
    rows = [
        Row(
            "studies, requests a landing makes",
            f"{args.days * args.per_day:,} ({args.days} days × {args.per_day}), {slow.requests}",
        )
    ]
    results: dict[str, Any] = {}
    for label, pick in (("first run", "first"), ("no-op re-run", "noop")):
        at_once = statistics.median(getattr(prompt, pick))
        held = statistics.median(getattr(slow, pick))
        shown = held - at_once
        hidden = 1 - shown / added
        results[pick] = {
            "at_once_seconds": getattr(prompt, pick),
            "held_back_seconds": getattr(slow, pick),
            "latency_added_in_turn_seconds": added,
            "latency_shown_seconds": shown,
            "hidden_share": hidden,
        }
        rows.append(
            Row(
                f"landing, {label}: answers at once / held back (median of {args.rounds})",
                f"{at_once:.2f} s / {held:.2f} s",
            )
        )
        rows.append(
            Row(
                f"landing, {label}: latency shown of {added:.2f} s added in turn",
                f"{shown:.2f} s ({100 * hidden:.0f}% hidden)",
            )
        )
    print_table(console, f"Source latency during landing ({args.latency:g} s an answer)", rows)
    summary = {
        "machine": facts,
        "per_day": args.per_day,
        "days": args.days,
        "latency_seconds": args.latency,
        "rounds": args.rounds,
        "requests": slow.requests,
        "results": results,
        "table": [row.as_json() for row in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=str))
    console.print(f"wrote {args.out}")
    return summary


if __name__ == "__main__":
    main()
