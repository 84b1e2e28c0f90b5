"""UI-style backfills through the real Dagster daemon: the project's BackfillPolicy against one
run per partition, side by side on the same assets and the same data.

    .venv/bin/python -m bench.daemon_backfill [--sizes 365,1096] [--per-day 50]
        [--policies project,per-partition] [--per-partition-max N] [--timeout-minutes 120]
        [--logs DIR] [--out PATH]

For each policy and size, a `dagster dev` (webserver and daemon) starts on a throwaway
DAGSTER_HOME whose `dagster.yaml` is the shipped `dagster.yaml.example` (PostgreSQL storage,
queued run coordinator with 4 concurrent runs, pools of one, run monitoring), a throwaway
warehouse and storage database, and the code location `bench.daemon_location` (the project's
landing and normalizing assets and their checks, nothing else). The backfill of the last
`size` days up to 2024-12-31 is launched with the webserver's `launchPartitionBackfill`
mutation, as the UI's *Launch backfill* does, and timed from the launch until the backfill's
last run has finished (its end time in the run storage). The data are synthetic studies
(`bioloupe-data synth`, `--per-day` a day), served by one replay server process without a rate
limit.

Targets: at least 10× less wall time with the project's policy at 365 partitions and 25× at
1,096; the 1,096-partition backfill with the project's policy done in under 3 minutes.

Needs a PostgreSQL server to create throwaway databases on (`--admin-url`). Prints a table and
writes bench/results/daemon_backfill.json. One run per partition takes long (about 5 s a
partition here, runs started one after another by the queue): the full default is about two
hours; `--per-partition-max 365` measures 1,096 partitions with the project's policy alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from rich.console import Console

from bench._common import (
    ADMIN_URL,
    END,
    RESULTS,
    Row,
    add_cache_dir_argument,
    environment,
    machine_facts,
    print_table,
    replay_server,
    synthetic_folder,
    throwaway_database,
)
from bench._dagster_dev import (
    BACKFILL_STATUS,
    LAUNCH_BACKFILL,
    TERMINAL_BACKFILL_STATUSES,
    clean_environment,
    dagster_dev,
    graphql,
    wait_for,
)
from bench.daemon_location import POLICY_VARIABLE
from bioloupe_data.warehouse.database import as_sqlalchemy_psycopg2_url

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("project", "per-partition")
ASSETS = (["raw", "clinicaltrials_gov"], ["core", "trials"])
RATIO_TARGETS = {365: 10.0, 1096: 25.0}
WALL_TARGET_SIZE, WALL_TARGET_SECONDS = 1096, 180.0


@dataclass(slots=True)
class Measured:
    policy: str
    partitions: int
    status: str
    wall_seconds: float
    runs: int
    failed_runs: int
    studies: int
    expected_studies: int
    mean_run_seconds: float
    mean_wait_seconds: float


def _code_location_loaded(url: str) -> bool:
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
    try:
        nodes = graphql(url, query)["repositoriesOrError"].get("nodes")
    except (OSError, RuntimeError):
        return False
    return bool(nodes)


def measure(
    policy: str,
    days: list[date],
    per_day: int,
    server_url: str,
    admin_url: str,
    scratch: Path,
    logs: Path,
    timeout: float,
    console: Console,
) -> Measured:
    console.print(f"{policy}, {len(days)} partitions: dagster dev, launchPartitionBackfill …")
    with ExitStack() as stack:
        warehouse = stack.enter_context(throwaway_database(admin_url))
        storage = stack.enter_context(throwaway_database(admin_url))
        home = Path(tempfile.mkdtemp(prefix="dagster-home-", dir=scratch))
        shutil.copy(ROOT / "dagster.yaml.example", home / "dagster.yaml")
        env = clean_environment()
        env.update(
            DAGSTER_HOME=str(home),
            BIOLOUPE_DATABASE_URL=warehouse,
            BIOLOUPE_DAGSTER_STORAGE_URL=as_sqlalchemy_psycopg2_url(storage),
            BIOLOUPE_START_DATE=days[0].isoformat(),
            CTGOV_BASE_URL=server_url,
            CTGOV_SCOPE="all",
            DAGSTER_EVENT_BATCH_SIZE="1000",  # as the README asks of deployments
            **{POLICY_VARIABLE: policy},
        )
        log = logs / f"dagster-dev-{policy}-{len(days)}.log"
        dagster = str(Path(sys.executable).with_name("dagster"))
        command = [dagster, "dev", "-m", "bench.daemon_location", "-d", str(ROOT)]
        url = stack.enter_context(dagster_dev(command, env, log, cwd=ROOT))
        wait_for("the code location", lambda: _code_location_loaded(url), 300, log)
        launched_at = time.time()
        launched = graphql(
            url,
            LAUNCH_BACKFILL,
            {
                "params": {
                    "partitionNames": [day.isoformat() for day in days],
                    "assetSelection": [{"path": path} for path in ASSETS],
                }
            },
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {launched}")
        backfill_id = launched["backfillId"]

        def finished() -> str | None:
            answer = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            return answer["status"] if answer["status"] in TERMINAL_BACKFILL_STATUSES else None

        status = wait_for(f"backfill {backfill_id}", finished, timeout, log)
        runs = _backfill_runs(home, env["BIOLOUPE_DAGSTER_STORAGE_URL"], backfill_id)
        last_end = max((run.end_time or 0.0 for run in runs), default=time.time())
        result = Measured(
            policy=policy,
            partitions=len(days),
            status=status,
            wall_seconds=last_end - launched_at,
            runs=len(runs),
            failed_runs=sum(run.status != dg.DagsterRunStatus.SUCCESS for run in runs),
            studies=_studies(warehouse),
            expected_studies=len(days) * per_day,
            mean_run_seconds=_mean(run.seconds for run in runs),
            mean_wait_seconds=_mean(run.waited for run in runs),
        )
    console.print(
        f"  {result.status} in {result.wall_seconds:,.0f} s, {result.runs} runs, "
        f"{result.studies:,} of {result.expected_studies:,} studies; a run took "
        f"{result.mean_run_seconds:.1f} s and waited {result.mean_wait_seconds:.1f} s in the queue"
    )
    return result


@dataclass(frozen=True, slots=True)
class _Run:
    status: dg.DagsterRunStatus
    created: float
    start_time: float | None
    end_time: float | None

    @property
    def seconds(self) -> float:
        return (self.end_time or 0.0) - (self.start_time or 0.0)

    @property
    def waited(self) -> float:
        return (self.start_time or self.created) - self.created


def _backfill_runs(home: Path, storage_url: str, backfill_id: str) -> list[_Run]:
    with (
        environment(DAGSTER_HOME=str(home), BIOLOUPE_DAGSTER_STORAGE_URL=storage_url),
        dg.DagsterInstance.get() as instance,
    ):
        records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        return [
            _Run(r.dagster_run.status, r.create_timestamp.timestamp(), r.start_time, r.end_time)
            for r in records
        ]


def _mean(values: Iterable[float]) -> float:
    listed = list(values)
    return sum(listed) / len(listed) if listed else 0.0


def _studies(warehouse_url: str) -> int:
    with psycopg.connect(warehouse_url) as conn:
        row = conn.execute("SELECT count(*) FROM core.trials").fetchone()
    return int(row[0]) if row else 0


def table_rows(results: Sequence[Measured]) -> list[Row]:
    by = {(r.policy, r.partitions): r for r in results}
    rows: list[Row] = []
    for r in results:
        complete = r.status == "COMPLETED_SUCCESS" and r.studies == r.expected_studies
        rows.append(
            Row(
                f"{r.partitions:,} partitions, {r.policy}",
                f"{r.wall_seconds:,.0f} s, {r.runs:,} runs ({r.failed_runs} failed), "
                f"{r.status}, {r.studies:,}/{r.expected_studies:,} studies",
                "complete",
                complete,
            )
        )
    for size in sorted({r.partitions for r in results}):
        project, default = by.get(("project", size)), by.get(("per-partition", size))
        if project and default and project.wall_seconds > 0:
            ratio = default.wall_seconds / project.wall_seconds
            target = RATIO_TARGETS.get(size)
            rows.append(
                Row(
                    f"{size:,} partitions: one run per partition over the project's policy",
                    f"{ratio:.1f}× ({default.wall_seconds:,.0f} s / {project.wall_seconds:,.0f} s)",
                    f"≥ {target:g}×" if target else "",
                    ratio >= target if target else None,
                )
            )
    project = by.get(("project", WALL_TARGET_SIZE))
    if project:
        rows.append(
            Row(
                f"{WALL_TARGET_SIZE:,} partitions of the real assets, project's policy",
                f"{project.wall_seconds:,.0f} s",
                f"< {WALL_TARGET_SECONDS:.0f} s",
                project.wall_seconds < WALL_TARGET_SECONDS
                and project.status == "COMPLETED_SUCCESS",
            )
        )
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="365,1096", help="partitions per backfill")
    parser.add_argument("--per-day", type=int, default=50, help="studies a day (default 50)")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument(
        "--per-partition-max",
        type=int,
        default=None,
        help="run one run per partition only up to this many partitions (it takes seconds a "
        "partition); larger sizes are measured with the project's policy alone",
    )
    parser.add_argument("--timeout-minutes", type=float, default=120.0)
    add_cache_dir_argument(parser)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--logs", type=Path, default=None, help="keep `dagster dev` logs here")
    parser.add_argument("--out", type=Path, default=RESULTS / "daemon_backfill.json")
    args = parser.parse_args(argv)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.policy_list = [p for p in args.policies.split(",") if p.strip()]
    if unknown := set(args.policy_list) - set(POLICIES):
        parser.error(f"unknown policies {sorted(unknown)}; known: {', '.join(POLICIES)}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    console = Console(width=150)
    facts = machine_facts(args.admin_url)
    longest = max(args.size_list)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    synthetic = synthetic_folder(args.cache_dir, longest, args.per_day)
    results: list[Measured] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-daemon-")))
        server_url, _ = stack.enter_context(
            replay_server(synthetic.folder, scratch / "replay-server.log")
        )
        for size in args.size_list:
            days = [END - timedelta(days=size - 1 - i) for i in range(size)]
            for policy in args.policy_list:
                if policy == "per-partition" and size > (args.per_partition_max or size):
                    console.print(f"per-partition, {size} partitions: over --per-partition-max")
                    continue
                results.append(
                    measure(
                        policy,
                        days,
                        args.per_day,
                        server_url,
                        args.admin_url,
                        scratch,
                        args.logs or scratch,
                        args.timeout_minutes * 60,
                        console,
                    )
                )
                args.out.with_suffix(".partial.json").write_text(
                    json.dumps([asdict(r) for r in results], indent=2)
                )
    rows = table_rows(results)
    print_table(
        console,
        f"UI-style backfills through the daemon ({args.per_day} studies a day; "
        f"{facts['cores']} cores, PostgreSQL {facts['postgresql_version']}, "
        "4 concurrent runs)",
        rows,
    )
    result = {
        "machine": facts,
        "parameters": {
            "sizes": args.size_list,
            "per_day": args.per_day,
            "policies": args.policy_list,
            "per_partition_max": args.per_partition_max,
            "dagster_yaml": "dagster.yaml.example",
            "assets": ["/".join(path) for path in ASSETS],
            "end": END.isoformat(),
        },
        "results": [asdict(r) for r in results],
        "table": [row.as_json() for row in rows],
    }
    args.out.write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)
    console.print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
