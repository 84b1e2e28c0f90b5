"""Helpers the benchmarks share: throwaway databases, a Dagster instance on PostgreSQL storage,
a timer, the day-by-day pipeline without Dagster, the facts of the machine a result came from,
synthetic data written by `bioloupe-data synth`, the replay server in a process of its own, and
the result table."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import httpx
import psutil
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from bioloupe_data import local
from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC, land_range
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.pipelines.normalize import normalize_days
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.warehouse.database import as_sqlalchemy_psycopg2_url, connect
from bioloupe_data.warehouse.migrate import migrate

RESULTS = Path(__file__).resolve().parent / "results"
ADMIN_URL = os.environ.get(
    "BIOLOUPE_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def database_url(admin_url: str, name: str) -> str:
    """`admin_url` pointing at database `name` (query parameters kept)."""
    base, _, query = admin_url.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


@contextmanager
def throwaway_database(admin_url: str = ADMIN_URL) -> Iterator[str]:
    """A new, empty database on `admin_url`'s server, dropped on exit."""
    name = f"bioloupe_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def wait_for_other_sessions(conn: psycopg.Connection, timeout: float = 60.0) -> None:
    """Until no other client is connected to this database: a backend flushes its table
    statistics when it exits, so the counters are final only then."""
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND backend_type = 'client backend'"""
        ).fetchone()
        if not row or row[0] == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("sessions still connected: tuple counters would not be final")
        time.sleep(0.05)


def _seconds(times: Any, *, children: bool = False) -> float:
    own = times.user + times.system
    return own + (times.children_user + times.children_system if children else 0.0)


def tree_cpu_seconds(root: psutil.Process, attempts: int = 5) -> float:
    """CPU seconds of `root`: its own, its exited children's that it has waited for, and its
    live descendants'. A child that `root` waits for between reading its times and listing its
    children would be counted in neither, so the reading is taken again when `root`'s times
    changed meanwhile."""
    for _ in range(attempts):
        before = _seconds(root.cpu_times(), children=True)
        live = 0.0
        for child in root.children(recursive=True):
            with suppress(psutil.Error):
                live += _seconds(child.cpu_times())
        after = _seconds(root.cpu_times(), children=True)
        if after == before:
            break
    return after + live


def local_postgres_pid(admin_url: str) -> int | None:
    """The process id of the postmaster of the PostgreSQL server at `admin_url` when it runs on
    this machine and its processes can be read (every backend is its child), else None. A
    process of this machine is that server's only if the server's own background processes are
    its children: a server in a container or behind a tunnel may report process ids that are
    other processes here."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        background = {
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = ANY(%s)",
                (["checkpointer", "background writer", "walwriter"],),
            ).fetchall()
        }
        if backend is None or not background:
            return None
        try:
            # While the connection is open: its backend process ends when it closes.
            postmaster = psutil.Process(backend[0]).parent()
        except psutil.Error:
            return None
    try:
        if postmaster is None or not background <= {c.pid for c in postmaster.children()}:
            return None
        tree_cpu_seconds(postmaster)  # its processes can be read
    except psutil.Error:
        return None
    return postmaster.pid


def replay_server_pid(url: str) -> int | None:
    """The process id of this process's child listening on `url`'s port (a replay server it
    started), else None."""
    port = urlsplit(url).port
    for child in psutil.Process().children():
        with suppress(psutil.Error):
            for connection in child.net_connections("tcp"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                    return child.pid
    return None


@dataclass(slots=True)
class CpuMeters:
    """The CPU time of the processes a measured command talks to: the local PostgreSQL server
    and the replay server. The server's is all of its processes': every database's sessions
    and its background work (autovacuum, checkpoints) as well as the command's, so other work
    on the server at the time counts too. A process that cannot be read is left out (None)."""

    postgres_pid: int | None
    replay_pid: int | None

    @classmethod
    def find(cls, admin_url: str, replay_url: str) -> CpuMeters:
        return cls(local_postgres_pid(admin_url), replay_server_pid(replay_url))

    def read(self) -> dict[str, float | None]:
        readings: dict[str, float | None] = {}
        for name, pid in (("postgres", self.postgres_pid), ("replay_server", self.replay_pid)):
            try:
                readings[name] = tree_cpu_seconds(psutil.Process(pid)) if pid is not None else None
            except psutil.Error:
                readings[name] = None
        return readings


def cpu_spent(
    before: dict[str, float | None], after: dict[str, float | None]
) -> dict[str, float | None]:
    spent: dict[str, float | None] = {}
    for name, then in before.items():
        now = after.get(name)
        spent[name] = None if then is None or now is None else now - then
    return spent


def dagster_yaml(storage_url: str) -> str:
    """A `dagster.yaml` whose run, event and schedule storage is `storage_url`."""
    return (
        "storage:\n  postgres:\n"
        f'    postgres_url: "{as_sqlalchemy_psycopg2_url(storage_url)}"\n'
        "telemetry:\n  enabled: false\n"
    )


@contextmanager
def environment(**variables: str) -> Iterator[None]:
    """`variables` set in this process's environment for the block, then restored."""
    previous = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def postgres_instance(
    storage_url: str, event_batch_size: str, *, as_the_command: bool = False
) -> Iterator[dg.DagsterInstance]:
    """An instance on `storage_url`: as the daemon's run workers open theirs (a connection per
    event written), or with `as_the_command`, as `bioloupe-data backfill` does (one kept)."""
    with tempfile.TemporaryDirectory() as home:
        Path(home, "dagster.yaml").write_text(dagster_yaml(storage_url))
        with (
            environment(DAGSTER_HOME=home, DAGSTER_EVENT_BATCH_SIZE=event_batch_size),
            local.dagster_instance() if as_the_command else dg.DagsterInstance.get() as instance,
        ):
            yield instance


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def pipeline_only(
    url: str,
    base_url: str,
    start: date,
    end: date,
    *,
    rerun: bool = True,
    parallel_days: int = 2,
    normalize: bool = True,
) -> dict[str, Any]:
    """Land and normalize start..end from the API at `base_url` (every study) into the warehouse
    at `url` without Dagster, `parallel_days` days side by side as the assets do; with `rerun`,
    a second time over the same range. Without `normalize`, landing only."""
    client = ClinicalTrialsClient.create(base_url, "all")
    with ExitStack() as stack:
        conns = [stack.enter_context(connect(url)) for _ in range(parallel_days)]
        lookup = stack.enter_context(connect(url))
        migrate(conns[0])

        def run() -> int:
            landed = land_range(conns, client, start, end, run_id="bench", lookup=lookup)
            if not normalize:
                return sum(d.counts.inserted + d.counts.updated for d in landed)
            normalized = normalize_days(
                conns, TRIALS_SPEC, days_between(start, end), run_id="bench", worker_url=url
            )
            return sum(d.counts.inserted + d.counts.updated for d in landed) + sum(
                d.counts["trials"].inserted + d.counts["trials"].updated for d in normalized
            )

        seconds, written = timed(run)
        result: dict[str, Any] = {"seconds": seconds, "written": written}
        if rerun:
            again, rewritten = timed(run)
            result.update(rerun_seconds=again, rerun=rewritten)
    client.close()
    return result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(admin_url: str = ADMIN_URL) -> dict[str, Any]:
    """Cores, CPU model, memory, load and the PostgreSQL server's version."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version'), version()").fetchone()
    facts: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "postgresql_version": row[0] if row else None,
        "postgresql": row[1] if row else None,
        "python": platform.python_version(),
        "dagster": dg.__version__,
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }
    facts["physical_cores"] = psutil.cpu_count(logical=False)
    facts["memory_bytes"] = psutil.virtual_memory().total
    return facts


# ------------------------------------------------------------------- data, server, workspace


END = date(2024, 12, 31)  # the last synthetic day: fixed, so folders can be reused
SYNTHETIC_CACHE = Path(tempfile.gettempdir()) / "bioloupe-bench-throughput"
SEED = 5


@dataclass(frozen=True, slots=True)
class Synthetic:
    folder: Path
    days: int
    per_day: int
    studies: int
    bytes: int
    first_day: date
    generation_seconds: float
    cached: bool


def add_cache_dir_argument(parser: argparse.ArgumentParser) -> None:
    """`--cache-dir`: where the benchmarks that share synthetic folders keep them."""
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=SYNTHETIC_CACHE,
        help="where synthetic folders are kept between runs",
    )


def synthetic_folder(
    root: Path, days: int, per_day: int, seed: int = SEED, *, pubmed: bool = False
) -> Synthetic:
    """Synthetic studies for `days` days up to END, `per_day` a day, written once under `root`
    by `bioloupe-data synth` and reused by later runs (a marker file written last tells a
    complete folder from an interrupted one). With `pubmed`, `per_day` PubMed articles a day
    instead (and one study a day, which the synthesizer always writes)."""
    source = "pubmed" if pubmed else "ctgov"
    folder = root / f"{source}-{days}d-{per_day}pd-seed{seed}-{END}"
    marker = folder / "synth.json"
    if marker.exists():
        made = json.loads(marker.read_text())
        return Synthetic(
            folder,
            days,
            per_day,
            made["studies"],
            made["bytes"],
            date.fromisoformat(made["first_day"]),
            made["generation_seconds"],
            cached=True,
        )
    shutil.rmtree(folder, ignore_errors=True)
    studies_a_day, articles_a_day = (1, per_day) if pubmed else (per_day, 0)
    args = ["synth", "--days", str(days), "--per-day", str(studies_a_day), "--seed", str(seed)]
    args += ["--end", END.isoformat(), "--pubmed-per-day", str(articles_a_day)]
    args += ["--out", str(folder)]
    seconds, _ = timed(
        lambda: subprocess.run(command(*args), check=True, capture_output=True, text=True)
    )
    files = [p for p in folder.rglob("*") if p.is_file() and p != marker]
    studies = days * per_day
    marker.write_text(
        json.dumps(
            {
                "studies": studies,
                "bytes": sum(p.stat().st_size for p in files),
                "first_day": (END - timedelta(days=days - 1)).isoformat(),
                "generation_seconds": seconds,
            }
        )
    )
    return dataclasses.replace(
        synthetic_folder(root, days, per_day, seed, pubmed=pubmed), cached=False
    )


def command(*args: str) -> list[str]:
    """The `bioloupe-data` command line of this environment."""
    script = Path(sys.executable).with_name("bioloupe-data")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "bioloupe_data.cli", *args]


@contextmanager
def replay_server(
    folder: Path, log: Path, faults: str | None = None
) -> Iterator[tuple[str, float]]:
    """`bioloupe-data replay-server` on a free port, in a process of its own so that neither the
    measured command nor this one shares its memory or interpreter; `faults` is its `--faults`
    spec. Yields (url, load seconds)."""
    started = time.perf_counter()
    extra = ["--faults", faults] if faults else []
    with log.open("w") as err:
        process = subprocess.Popen(
            command("replay-server", "--data", str(folder), "--port", "0", *extra),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r" at (http://\S+) ", line)
        if not found:
            raise RuntimeError(f"replay server did not start: {line!r}; see {log}")
        url = found.group(1)
        loaded = time.perf_counter() - started
        httpx.get(f"{url}/__replay/stats", timeout=30).raise_for_status()
        yield url, loaded
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scratch_with_server(
    stack: ExitStack, folder: Path, prefix: str
) -> tuple[Path, Path, str, float]:
    """A scratch folder holding a `logs` folder, and the replay server on `folder` logging into
    it, both ended with `stack`. Returns (scratch, logs, server url, server load seconds)."""
    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    logs = scratch / "logs"
    logs.mkdir()
    url, loaded = stack.enter_context(replay_server(folder, logs / "replay-server.log"))
    return scratch, logs, url, loaded


def replay_requests(url: str) -> int:
    return int(httpx.get(f"{url}/__replay/stats", timeout=30).json()["requests"])


@dataclass(slots=True)
class Workspace:
    """A warehouse and a Dagster instance of their own: two throwaway databases and a
    DAGSTER_HOME."""

    warehouse_url: str
    storage_url: str
    home: Path


@contextmanager
def workspace(admin_url: str, scratch: Path) -> Iterator[Workspace]:
    with throwaway_database(admin_url) as warehouse, throwaway_database(admin_url) as storage:
        home = Path(tempfile.mkdtemp(prefix="dagster-home-", dir=scratch))
        (home / "dagster.yaml").write_text(dagster_yaml(storage))
        try:
            yield Workspace(warehouse, storage, home)
        finally:
            shutil.rmtree(home, ignore_errors=True)


# ----------------------------------------------------------------------------- report


@dataclass(slots=True)
class Row:
    measurement: str
    value: str
    target: str = ""
    met: bool | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "measurement": self.measurement,
            "value": self.value,
            "target": self.target,
            "met": self.met,
        }


def megabytes(value: float) -> str:
    return f"{value / 2**20:,.0f} MB"


def print_table(console: Console, title: str, rows: Sequence[Row]) -> None:
    table = Table(title=title, show_lines=False)
    for column in ("measurement", "value", "target", "met"):
        table.add_column(column, justify="left", overflow="fold")
    for row in rows:
        verdict = "" if row.met is None else ("met" if row.met else "missed")
        table.add_row(row.measurement, row.value, row.target, verdict)
    console.print(table)
