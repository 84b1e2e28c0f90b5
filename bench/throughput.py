"""ClinicalTrials.gov range backfills end to end: studies per second and peak memory of
`bioloupe-data backfill` over a short and a long range, a no-op re-run, and how the rate holds
as the range grows.

    .venv/bin/python -m bench.throughput [--per-day 300] [--short-days 30] [--long-days 365]
        [--scaling 10000,30000,100000] [--select KEYS] [--no-whole-source] [--cache-dir DIR]
        [--out PATH]

Setup. Synthetic studies (`bioloupe-data synth`, the real records' size distribution) for the last
`--long-days` days up to 2024-12-31, `--per-day` a day, are written once into a folder under
`--cache-dir` keyed by the parameters and reused by later runs (generation is timed when it
happens). One replay server process serves that folder to every measurement; it has no rate
limit, and the HTTP client limits none for a local host. Every backfill is the command line
itself, `bioloupe-data backfill --from A --to B --source clinicaltrials_gov` (or `--select`),
as a subprocess with its own throwaway warehouse database and a throwaway Dagster storage
database (`DAGSTER_HOME` with a PostgreSQL `dagster.yaml`), so the time includes start-up and
the memory is the process tree's: resident set size sampled every 0.2 s with psutil, and the
kernel's own peak (`wait4`). The time spent in each step comes from the run's STEP_START and
STEP_SUCCESS events in the Dagster storage.

Measurements:

1. The short (30-day) and the long (365-day) range: studies per second over the command's wall
   time, peak RSS, and for comparison the same range landed and normalized without Dagster
   (`land_range` + `normalize_days` in this process). Targets: at least 1,000 studies/s; the
   long range's peak RSS within 1.3 times the short range's.
2. The short range again on the same databases, nothing changed at the source: wall time
   against the first run, and the rows PostgreSQL counts as inserted, updated or deleted
   (`pg_stat_user_tables`, read once the command's sessions have ended: a backend flushes its
   counters when it exits). Targets: 0 rows; at most 30% of the first run's time.
3. The whole source (`--source clinicaltrials_gov`: landing, normalizing and both daily
   enrichments, site geocodes and trial features) over the short range, then again: the first
   run's rate and the no-op re-run's share of it and rows rewritten in every schema but `ops`
   (`--no-whole-source`: skipped; it is the same as 1 and 2 when `--select` is empty).
4. Scaling: the end-to-end rate at each `--scaling` size, with `--per-day` fixed and the range's
   length varied (size / per-day days up to 2024-12-31). A size within `--reuse-tolerance` (10%)
   of the short or the long range reuses that run instead of running again (`--no-reuse`: never).
   Target: every rate within 25% of their mean.

Where the time goes: each step's seconds, and the CPU seconds of the command's process tree
(`wait4`), of the PostgreSQL server (when it runs on this machine: its postmaster's processes,
every database and background process included, read once the command's sessions have ended)
and of the replay server, against what the cores could give in the command's wall time.

The machine is shared and small (its cores, CPU and load are recorded): figures are noisy.

Needs a PostgreSQL server to create throwaway databases on (`--admin-url`, default
`BIOLOUPE_BENCH_ADMIN_URL` or postgresql://postgres@127.0.0.1:5432/postgres). Prints one table
and writes bench/results/throughput.json (`--out`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import psycopg
from psycopg import sql
from rich.console import Console

from bench._common import (
    ADMIN_URL,
    END,
    RESULTS,
    SEED,
    CpuMeters,
    Row,
    Workspace,
    add_cache_dir_argument,
    command,
    cpu_spent,
    machine_facts,
    megabytes,
    pipeline_only,
    print_table,
    replay_requests,
    scratch_with_server,
    synthetic_folder,
    throwaway_database,
    wait_for_other_sessions,
    workspace,
)

RATE_TARGET = 1000.0  # studies per second
RSS_RATIO_TARGET = 1.3  # long range's peak over the short range's
NOOP_TIME_TARGET = 0.30  # re-run time over first-run time
SCALING_TOLERANCE = 0.25  # each rate within this fraction of the rates' mean
SAMPLE_SECONDS = 0.2
LANDING_STEP = "raw__clinicaltrials_gov"
NORMALIZE_STEP = "core__trials"
# Variables of the caller's environment that must not reach the command: its own warehouse or
# storage, or a paid LLM for the enrichment assets.
DROPPED_ENV = (
    "BIOLOUPE_DAGSTER_STORAGE_URL",
    "DAGSTER_EVENT_BATCH_SIZE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "PUBMED_BASE_URL",
)


# ----------------------------------------------------------------------------- data and server


# ----------------------------------------------------------------------------- the command


@dataclass(slots=True)
class CliRun:
    label: str
    start: date
    end: date
    studies: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    peak_rss_sampled_bytes: int
    peak_rss_kernel_bytes: int
    rss_samples: int
    rss_timeline: list[tuple[float, int]] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)
    run_seconds: float = 0.0
    requests: int = 0
    # What the command made the local PostgreSQL server and the replay server spend (None:
    # not measured, or their processes could not be read).
    postgres_cpu_seconds: float | None = None
    replay_cpu_seconds: float | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def rate(self) -> float:
        return self.studies / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def land_normalize_seconds(self) -> float:
        return self.steps.get(LANDING_STEP, 0.0) + self.steps.get(NORMALIZE_STEP, 0.0)

    @property
    def land_normalize_rate(self) -> float:
        seconds = self.land_normalize_seconds
        return self.studies / seconds if seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(
            start=self.start.isoformat(),
            end=self.end.isoformat(),
            days=self.days,
            studies_per_second=self.rate,
            land_normalize_seconds=self.land_normalize_seconds,
            land_normalize_studies_per_second=self.land_normalize_rate,
            outside_run_seconds=self.wall_seconds - self.run_seconds,
        )
        return data


class RssSampler:
    """Peak resident set size of a process and its descendants, sampled on a thread. Listing
    the descendants walks every process of the machine, so it is done every `REFRESH` samples
    only: the command starts none of its own."""

    REFRESH = 10
    TIMELINE_SECONDS = 5.0

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS) -> None:
        self.peak = 0
        self.samples = 0
        # (seconds since start, RSS): whether memory levels off or keeps growing with the range
        self.timeline: list[tuple[float, int]] = []
        self._started = time.perf_counter()
        self._root = psutil.Process(pid)
        self._tree = [self._root]
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.samples % self.REFRESH == 0:
                with suppress(psutil.Error):
                    self._tree = [self._root, *self._root.children(recursive=True)]
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        total = 0
        for process in self._tree:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        self.samples += 1
        self.peak = max(self.peak, total)
        elapsed = time.perf_counter() - self._started
        if not self.timeline or elapsed - self.timeline[-1][0] >= self.TIMELINE_SECONDS:
            self.timeline.append((round(elapsed, 1), total))


def backfill(
    label: str,
    space: Workspace,
    server_url: str,
    first_day: date,
    start: date,
    end: date,
    select: str | None,
    logs: Path,
    *,
    count: Callable[[str, date, date], int] | None = None,
    meters: CpuMeters | None = None,
) -> CliRun:
    """Run `bioloupe-data backfill` over start..end as a subprocess and measure it; `count`
    tells how many documents of start..end it landed (default: ClinicalTrials.gov studies);
    `meters`, what it made the PostgreSQL and replay servers spend."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(
        BIOLOUPE_DATABASE_URL=space.warehouse_url,
        DAGSTER_HOME=str(space.home),
        BIOLOUPE_HOME=str(space.home / "bioloupe"),
        CTGOV_BASE_URL=server_url,
        CTGOV_SCOPE="all",
        PUBMED_BASE_URL=server_url,
        BIOLOUPE_START_DATE=first_day.isoformat(),
        COLUMNS="120",
    )
    selection = ["--select", select] if select else ["--source", "clinicaltrials_gov"]
    args = command("backfill", "--from", str(start), "--to", str(end), *selection)
    log = logs / f"{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}.log"
    requests_before = replay_requests(server_url)
    cpu_before = meters.read() if meters else {}
    with log.open("w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=output, stderr=subprocess.STDOUT)
        with RssSampler(process.pid) as sampler:
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"{' '.join(args)} exited with {process.returncode}:\n{tail}")
    if meters:
        for url in (space.warehouse_url, space.storage_url):
            with psycopg.connect(url, autocommit=True) as conn:
                wait_for_other_sessions(conn)  # the command's backends have ended
    server_cpu = cpu_spent(cpu_before, meters.read()) if meters else {}
    steps, run_seconds = step_seconds(space.storage_url)
    kernel_peak = usage.ru_maxrss * 1024  # kilobytes on Linux
    return CliRun(
        label=label,
        start=start,
        end=end,
        studies=(count or landed_studies)(space.warehouse_url, start, end),
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=max(sampler.peak, kernel_peak),
        peak_rss_sampled_bytes=sampler.peak,
        peak_rss_kernel_bytes=kernel_peak,
        rss_samples=sampler.samples,
        rss_timeline=sampler.timeline,
        steps=steps,
        run_seconds=run_seconds,
        requests=replay_requests(server_url) - requests_before,
        postgres_cpu_seconds=server_cpu.get("postgres"),
        replay_cpu_seconds=server_cpu.get("replay_server"),
    )


STARTS = (dg.DagsterEventType.STEP_START.value, dg.DagsterEventType.RUN_START.value)
ENDS = tuple(
    kind.value
    for kind in (
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.RUN_SUCCESS,
        dg.DagsterEventType.RUN_FAILURE,
    )
)


def step_seconds(storage_url: str) -> tuple[dict[str, float], float]:
    """Seconds per step of the newest run in this Dagster storage, longest first, and the run's
    own seconds (its start to its end event), from the run's event log."""
    with psycopg.connect(storage_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT run_id FROM runs ORDER BY create_timestamp DESC, id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return {}, 0.0
        events = conn.execute(
            """
            SELECT coalesce(step_key, ''), dagster_event_type, min(timestamp), max(timestamp)
            FROM event_logs WHERE run_id = %s AND dagster_event_type = ANY(%s)
            GROUP BY 1, 2
            """,
            (row[0], [*STARTS, *ENDS]),
        ).fetchall()
    starts = {step: first for step, kind, first, _ in events if kind in STARTS}
    ends = {step: last for step, kind, _, last in events if kind in ENDS}
    seconds = {
        step: (ends[step] - started).total_seconds()
        for step, started in starts.items()
        if step in ends
    }
    run = seconds.pop("", 0.0)
    return dict(sorted(seconds.items(), key=lambda item: -item[1])), run


def landed_studies(url: str, start: date, end: date) -> int:
    """Studies of start..end in core.trials, after checking that raw.documents holds as many."""
    return landed_documents(url, start, end, "clinicaltrials_gov", "trials")


def landed_documents(url: str, start: date, end: date, source: str, core_table: str) -> int:
    """Rows of start..end in `core.<core_table>`, after checking that raw.documents holds as
    many documents of `source`."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL(
                """
                SELECT (SELECT count(*) FROM raw.documents WHERE source = %(source)s
                          AND partition_date BETWEEN %(start)s AND %(end)s),
                       (SELECT count(*) FROM {core}
                          WHERE partition_date BETWEEN %(start)s AND %(end)s)
                """
            ).format(core=sql.Identifier("core", core_table)),
            {"source": source, "start": start, "end": end},
        ).fetchone()
    documents, derived = row if row else (0, 0)
    if documents != derived:
        raise RuntimeError(f"{documents} documents landed but {derived} rows in core.{core_table}")
    return int(derived)


# ----------------------------------------------------------------------------- tuple counters


def write_counters(url: str) -> dict[str, tuple[int, int, int]]:
    """Rows inserted, updated and deleted per table of the warehouse, as PostgreSQL counts
    them."""
    with psycopg.connect(url, autocommit=True) as conn:
        wait_for_other_sessions(conn)
        # From PostgreSQL 15 statistics live in shared memory: an exited backend's are there
        # already; flush this session's own (it wrote nothing) and drop any cached snapshot.
        if conn.info.server_version >= 150000:
            conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            """SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del
               FROM pg_stat_user_tables WHERE schemaname NOT LIKE 'pg\\_temp\\_%'
               ORDER BY 1"""
        ).fetchall()
    return {name: (int(i), int(u), int(d)) for name, i, u, d in rows}


def counter_delta(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]
) -> dict[str, dict[str, int]]:
    """Per table with any change: inserted, updated, deleted between two readings."""
    delta: dict[str, dict[str, int]] = {}
    for table, now in after.items():
        then = before.get(table, (0, 0, 0))
        ins, upd, dels = (a - b for a, b in zip(now, then, strict=True))
        if ins or upd or dels:
            delta[table] = {"inserted": ins, "updated": upd, "deleted": dels}
    return delta


# ----------------------------------------------------------------------------- report


def where_time_went(run: CliRun) -> str:
    short = {
        LANDING_STEP: "land",
        NORMALIZE_STEP: "normalize",
        "enriched__site_geocodes": "geocode",
        "enriched__trial_features": "features",
    }
    seconds_by_part: dict[str, float] = {}
    for step, seconds in run.steps.items():
        part = "checks" if "check" in step else short.get(step, step)
        seconds_by_part[part] = seconds_by_part.get(part, 0.0) + seconds
    parts = [f"{part} {seconds:.0f}" for part, seconds in seconds_by_part.items()]
    parts.append(f"outside the run {run.wall_seconds - run.run_seconds:.0f}")
    return " · ".join(parts) + " (s)"


def cpu_by_process(run: CliRun) -> str:
    """The CPU seconds of the command, the PostgreSQL server and the replay server, against
    what the cores this process may use could give in the command's wall time (the servers' are
    read just before the command starts and once its sessions have ended)."""
    parts = {
        "command": run.cpu_seconds,
        "PostgreSQL": run.postgres_cpu_seconds,
        "replay server": run.replay_cpu_seconds,
    }
    spent = {name: seconds for name, seconds in parts.items() if seconds is not None}
    unread = [name for name, seconds in parts.items() if seconds is None]
    total = sum(spent.values())
    cores = len(os.sched_getaffinity(0))
    available = cores * run.wall_seconds
    share = f" ({100 * total / available:.0f}%)" if available else ""
    return (
        " · ".join(f"{name} {seconds:.1f}" for name, seconds in spent.items())
        + f" = {total:.1f} s of {available:.1f} s on {cores} cores{share}"
        + (f"; not read: {', '.join(unread)}" if unread else "")
    )


def run_rows(name: str, run: CliRun, pipeline: dict[str, Any] | None) -> list[Row]:
    rows = [
        Row(
            f"{name}: end to end",
            f"{run.rate:,.0f} studies/s ({run.studies:,} in {run.wall_seconds:.1f} s, "
            f"CPU {run.cpu_seconds:.0f} s)",
            f"≥ {RATE_TARGET:,.0f} studies/s",
            run.rate >= RATE_TARGET,
        ),
        Row(
            f"{name}: landing + normalizing steps",
            f"{run.land_normalize_rate:,.0f} studies/s ({run.land_normalize_seconds:.1f} s)",
        ),
        Row(f"{name}: time by step", where_time_went(run)),
    ]
    if run.postgres_cpu_seconds is not None:
        rows.append(Row(f"{name}: CPU by process", cpu_by_process(run)))
    if pipeline:
        rate = run.studies / pipeline["seconds"] if pipeline["seconds"] else 0.0
        rows.append(
            Row(
                f"{name}: pipeline only (no Dagster)",
                f"{rate:,.0f} studies/s ({pipeline['seconds']:.1f} s)",
            )
        )
    rows.append(Row(f"{name}: peak RSS", megabytes(run.peak_rss_bytes)))
    if len(run.rss_timeline) >= 4:
        rows.append(Row(f"{name}: RSS over the run", rss_course(run.rss_timeline)))
    return rows


def rss_course(timeline: Sequence[tuple[float, int]]) -> str:
    """The highest RSS up to each quarter of the run: flat, or still growing at the end."""
    end = timeline[-1][0]
    quarters = []
    for quarter in (1, 2, 3, 4):
        upto = [rss for seconds, rss in timeline if seconds <= end * quarter / 4]
        quarters.append(f"{quarter}/4: {megabytes(max(upto, default=0))}")
    return " · ".join(quarters)


def rss_row(short: CliRun, long: CliRun) -> Row:
    ratio = long.peak_rss_bytes / short.peak_rss_bytes if short.peak_rss_bytes else 0.0
    return Row(
        f"peak RSS, {long.label} over {short.label}",
        f"{ratio:.2f}× ({megabytes(long.peak_rss_bytes)} / {megabytes(short.peak_rss_bytes)})",
        f"≤ {RSS_RATIO_TARGET}×",
        ratio <= RSS_RATIO_TARGET,
    )


def noop_rows(
    first: CliRun,
    again: CliRun,
    rewritten: dict[str, dict[str, int]],
    pipeline: dict[str, Any] | None,
) -> list[Row]:
    name = f"no-op re-run of {first.label}"
    share = again.wall_seconds / first.wall_seconds if first.wall_seconds else 0.0
    data = {n: sum(t.values()) for n, t in rewritten.items() if not n.startswith("ops.")}
    ledger = {n: sum(t.values()) for n, t in rewritten.items() if n.startswith("ops.")}
    listed = ", ".join(f"{n} {rows:,}" for n, rows in data.items()) or "none"
    rows = [
        Row(
            f"{name}: time",
            f"{100 * share:.0f}% ({again.wall_seconds:.1f} s vs {first.wall_seconds:.1f} s)",
            f"≤ {100 * NOOP_TIME_TARGET:.0f}%",
            share <= NOOP_TIME_TARGET,
        ),
        Row(f"{name}: time by step", where_time_went(again)),
    ]
    if again.postgres_cpu_seconds is not None:
        rows.append(Row(f"{name}: CPU by process", cpu_by_process(again)))
    rows += [
        Row(
            f"{name}: data rows rewritten (every schema but ops)",
            f"{sum(data.values()):,} ({listed})",
            "0",
            sum(data.values()) == 0,
        ),
        # The fetch ledger records every fetch (its run and time, one row per day), by design.
        Row(
            f"{name}: fetch ledger rows written (ops)",
            ", ".join(f"{n} {rows:,}" for n, rows in ledger.items()) or "none",
        ),
    ]
    if pipeline and "rerun_seconds" in pipeline:
        rows.append(
            Row(
                f"{name}: pipeline only",
                f"{100 * pipeline['rerun_seconds'] / pipeline['seconds']:.0f}% "
                f"({pipeline['rerun_seconds']:.1f} s vs {pipeline['seconds']:.1f} s)",
            )
        )
    return rows


def whole_source_rows(
    first: CliRun, again: CliRun, rewritten: dict[str, dict[str, int]]
) -> list[Row]:
    """The whole source's first run (its rate is not the landing and normalizing target's)
    and its no-op re-run."""
    rows = [
        Row(
            f"{first.label}: end to end",
            f"{first.rate:,.0f} studies/s ({first.studies:,} in {first.wall_seconds:.1f} s, "
            f"CPU {first.cpu_seconds:.0f} s)",
        ),
        Row(f"{first.label}: time by step", where_time_went(first)),
    ]
    return rows + noop_rows(first, again, rewritten, None)


def scaling_rows(points: Sequence[dict[str, Any]]) -> list[Row]:
    rates = [p["studies_per_second"] for p in points]
    mean = statistics.fmean(rates) if rates else 0.0
    rows = [
        Row(
            f"scaling: {p['size']:,} studies ({p['days']} d × {p['per_day']})",
            f"{p['studies_per_second']:,.0f} studies/s ({p['wall_seconds']:.1f} s"
            f"{', reused ' + p['reused'] if p['reused'] else ''}); steps "
            f"{p['land_normalize_studies_per_second']:,.0f}/s",
        )
        for p in points
    ]
    spread = max((abs(r / mean - 1) for r in rates), default=0.0) if mean else 0.0
    rows.append(
        Row(
            "scaling: largest deviation from the mean rate",
            f"{100 * spread:.0f}% (mean {mean:,.0f} studies/s)",
            f"≤ {100 * SCALING_TOLERANCE:.0f}%",
            spread <= SCALING_TOLERANCE,
        )
    )
    return rows


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=int, default=300, help="studies a day (default 300)")
    parser.add_argument("--short-days", type=int, default=30)
    parser.add_argument("--long-days", type=int, default=365)
    parser.add_argument(
        "--scaling",
        default="10000,30000,100000",
        help="comma-separated sizes in studies (per-day fixed, days varied)",
    )
    parser.add_argument("--reuse-tolerance", type=float, default=0.10)
    parser.add_argument("--no-reuse", action="store_true", help="run every scaling size")
    parser.add_argument(
        "--select",
        default="raw/clinicaltrials_gov,core/trials",
        help="asset keys for `backfill --select` (default: landing and normalizing; "
        "empty: `--source clinicaltrials_gov`, with enrichment)",
    )
    parser.add_argument("--no-pipeline", action="store_true", help="skip the runs without Dagster")
    parser.add_argument(
        "--no-whole-source",
        action="store_true",
        help="skip the short range of the whole source (with enrichment) and its no-op re-run",
    )
    add_cache_dir_argument(parser)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.scaling.split(",") if s.strip()]
    if min(args.per_day, args.short_days, args.long_days, *args.sizes) < 1:
        parser.error("sizes, days and --per-day must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    console = Console(width=150)
    per_day = args.per_day
    lengths = {"short": args.short_days, "long": args.long_days}
    scaling_days = {size: max(1, round(size / per_day)) for size in args.sizes}
    days = max(*lengths.values(), *scaling_days.values())
    facts = machine_facts(args.admin_url)

    def range_of(length: int) -> tuple[date, date]:
        return END - timedelta(days=length - 1), END

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"synthetic studies: {days} days × {per_day} in {args.cache_dir} …")
    synthetic = synthetic_folder(args.cache_dir, days, per_day)
    runs: dict[str, CliRun] = {}
    pipelines: dict[str, dict[str, Any]] = {}
    measured: list[dict[str, Any]] = []
    partial = args.out.with_name(f"{args.out.stem}.partial.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        scratch, logs, server_url, server_load = scratch_with_server(
            stack, synthetic.folder, "bench-tp-"
        )
        meters = CpuMeters.find(args.admin_url, server_url)

        def measure(
            label: str, length: int, space: Workspace, select: str | None = args.select
        ) -> CliRun:
            start, end = range_of(length)
            console.print(f"{label}: bioloupe-data backfill --from {start} --to {end} …")
            run = backfill(
                label,
                space,
                server_url,
                synthetic.first_day,
                start,
                end,
                select,
                logs,
                meters=meters,
            )
            console.print(
                f"  {run.studies:,} studies in {run.wall_seconds:.1f} s "
                f"({run.rate:,.0f}/s, peak RSS {megabytes(run.peak_rss_bytes)})"
            )
            measured.append(run.as_json())
            checkpoint()
            return run

        def checkpoint() -> None:
            """A long benchmark that is stopped keeps what it measured so far."""
            partial.write_text(json.dumps({"runs": measured, "pipeline_only": pipelines}))

        # 1 and 2: the short range, then again on the same databases; then the long range (the
        # short run itself when both are as long).
        with workspace(args.admin_url, scratch) as space:
            runs["short"] = measure(f"{args.short_days} days", args.short_days, space)
            before = write_counters(space.warehouse_url)
            rerun = measure(f"{args.short_days} days, no-op re-run", args.short_days, space)
            rewritten = counter_delta(before, write_counters(space.warehouse_url))
        if args.long_days == args.short_days:
            runs["long"] = runs["short"]
        else:
            with workspace(args.admin_url, scratch) as space:
                runs["long"] = measure(f"{args.long_days} days", args.long_days, space)
        if not args.no_pipeline:
            for name, length in lengths.items():
                if name == "long" and runs["long"] is runs["short"]:
                    pipelines["long"] = pipelines["short"]
                    continue
                console.print(f"{length} days: pipeline only (no Dagster) …")
                start, end = range_of(length)
                with throwaway_database(args.admin_url) as url:
                    pipelines[name] = pipeline_only(
                        url, server_url, start, end, rerun=name == "short"
                    )
                console.print(f"  {pipelines[name]['seconds']:.1f} s")
                checkpoint()

        # 3: the whole source, enrichment included, over the short range and again.
        whole: tuple[CliRun, CliRun, dict[str, dict[str, int]]] | None = None
        if args.select and not args.no_whole_source:
            with workspace(args.admin_url, scratch) as space:
                label = f"{args.short_days} days, whole source"
                whole_first = measure(label, args.short_days, space, select=None)
                before = write_counters(space.warehouse_url)
                whole_again = measure(f"{label}, no-op re-run", args.short_days, space, None)
                whole = (
                    whole_first,
                    whole_again,
                    counter_delta(before, write_counters(space.warehouse_url)),
                )

        # 4: scaling, per-day fixed, the range's length varied.
        points: list[dict[str, Any]] = []
        for size, length in scaling_days.items():
            candidates = [
                (abs(run.studies - size) / size, name)
                for name, run in runs.items()
                if not args.no_reuse
            ]
            distance, nearest = min(candidates, default=(1.0, ""))
            if distance <= args.reuse_tolerance:
                run, reused = runs[nearest], runs[nearest].label
            else:
                with workspace(args.admin_url, scratch) as space:
                    run, reused = measure(f"scaling {size:,}", length, space), ""
            points.append(
                {
                    "size": size,
                    "days": run.days,
                    "per_day": per_day,
                    "studies": run.studies,
                    "reused": reused,
                    "wall_seconds": run.wall_seconds,
                    "studies_per_second": run.rate,
                    "land_normalize_studies_per_second": run.land_normalize_rate,
                    "peak_rss_bytes": run.peak_rss_bytes,
                }
            )

    rows = [
        Row(
            "synthetic studies" + (" (cached)" if synthetic.cached else ""),
            f"{synthetic.studies:,} ({synthetic.bytes / 1e6:,.0f} MB) generated in "
            f"{synthetic.generation_seconds:.0f} s "
            f"({synthetic.studies / max(synthetic.generation_seconds, 1e-9):,.0f}/s)",
        ),
        Row("replay server start-up (no rate limit)", f"{server_load:.1f} s"),
    ]
    for name in ("short", "long") if runs["long"] is not runs["short"] else ("short",):
        rows += run_rows(runs[name].label, runs[name], pipelines.get(name))
    rows.append(rss_row(runs["short"], runs["long"]))
    rows += noop_rows(runs["short"], rerun, rewritten, pipelines.get("short"))
    if whole:
        rows += whole_source_rows(*whole)
    rows += scaling_rows(points)
    print_table(
        console,
        f"ClinicalTrials.gov backfill throughput ({per_day} studies a day; "
        f"{facts['cores']} cores, {facts['cpu_model']}, PostgreSQL {facts['postgresql_version']})",
        rows,
    )
    console.print(
        "The machine's cores are shared with other work: figures are noisy "
        f"(load average at start {', '.join(f'{x:.1f}' for x in facts['load_average_at_start'])})."
    )
    first = runs["short"]
    result = {
        "machine": facts,
        "parameters": {
            "per_day": per_day,
            "short_days": args.short_days,
            "long_days": args.long_days,
            "scaling_sizes": args.sizes,
            "scaling_varies": "days (per-day fixed)",
            "reuse_tolerance": None if args.no_reuse else args.reuse_tolerance,
            "command": "bioloupe-data backfill "
            + (f"--select {args.select}" if args.select else "--source clinicaltrials_gov"),
            "end": END.isoformat(),
            "seed": SEED,
        },
        "synthetic": {
            **dataclasses.asdict(synthetic),
            "folder": str(synthetic.folder),
            "first_day": synthetic.first_day.isoformat(),
        },
        "replay_server_load_seconds": server_load,
        "runs": {name: run.as_json() for name, run in runs.items()},
        "pipeline_only": pipelines,
        "noop_rerun": {
            **rerun.as_json(),
            "first_run_seconds": first.wall_seconds,
            "time_share": rerun.wall_seconds / first.wall_seconds,
            "data_rows_rewritten": sum(
                sum(t.values()) for n, t in rewritten.items() if not n.startswith("ops.")
            ),
            "rows_rewritten_by_table": rewritten,
        },
        "whole_source": (
            {
                "first": whole[0].as_json(),
                "noop_rerun": whole[1].as_json(),
                "time_share": whole[1].wall_seconds / whole[0].wall_seconds,
                "rows_rewritten_by_table": whole[2],
            }
            if whole
            else None
        ),
        "scaling": points,
        "table": [row.as_json() for row in rows],
    }
    args.out.write_text(json.dumps(result, indent=2, default=str))
    partial.unlink(missing_ok=True)
    console.print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
