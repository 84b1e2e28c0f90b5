"""The project's upsert engine against the usual ways of upserting from Python, on the same
trials-shaped rows, into an empty table, a full table with nothing changed, and a full table
with about 10% of its rows changed.

    .venv/bin/python -m bench.upsert [--rows 100000] [--loop-rows N] [--seed 7] [--out PATH]

Contenders, each in a throwaway database of its own (created and dropped on
`BIOLOUPE_BENCH_ADMIN_URL`, default postgresql://postgres@127.0.0.1:5432/postgres):

1. loop: one `INSERT … ON CONFLICT DO UPDATE` per row, one round trip each, one commit.
2. executemany: psycopg's `cursor.executemany` of the same statement (pipeline mode).
3. pandas: `DataFrame.to_sql` (its default `method=None`) into a staging table through a
   SQLAlchemy engine on psycopg, then one `INSERT … SELECT … ON CONFLICT` merge.
4. dlt: the postgres destination, `write_disposition="merge"` with a primary key (its default
   `delete-insert` strategy and `insert_values` file format).
5. engine: `bioloupe_data.warehouse.upsert` (`create_staging`, `copy_rows`, `merge_versioned`
   with the arguments normalization uses for `core.trials`).

Contenders 1–3 use the engine's guard (version order, then `IS DISTINCT FROM`), so like the
engine they leave unchanged rows unwritten; dlt cannot. The target is `core.trials` copied with
`LIKE … INCLUDING ALL` (its types, constraints and indexes), written through a subset of its
columns. Each contender's input is built in its own form (tuples, a DataFrame, dicts) before the
clock starts; the clock covers the load and the commit. After every load the table's contents
are checksummed (identical across contenders or the run fails) and PostgreSQL's own tuple
counters are read once the writers' sessions have ended (an ending backend flushes its
statistics). The table is vacuumed and analyzed between scenarios, off the clock, and the
server takes a checkpoint before each load, so that no load pays for the checkpoint the
previous contender's writes called for (dlt's rewrite of every row is about half a gigabyte of
WAL, and the order of contenders is fixed).

Prints a table and writes bench/results/upsert.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table as RichTable

from bench._common import ADMIN_URL, RESULTS, throwaway_database, wait_for_other_sessions
from bioloupe_data.pipelines.normalize import CHANGE_COLUMNS
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.migrate import migrate
from bioloupe_data.warehouse.upsert import (
    VERSION_COLUMNS,
    Table,
    copy_rows,
    create_staging,
    merge_versioned,
)

# A subset of core.trials' columns (types as in migration 002), bookkeeping included.
COLUMN_TYPES: dict[str, str] = {
    "nct_id": "text",
    "brief_title": "text",
    "official_title": "text",
    "acronym": "text",
    "overall_status": "text",
    "phase": "text",
    "study_type": "text",
    "enrollment": "integer",
    "start_date": "date",
    "start_date_precision": "text",
    "primary_completion_date": "date",
    "completion_date": "date",
    "study_first_posted_date": "date",
    "last_update_posted_date": "date",
    "source": "text",
    "source_class": "text",
    "brief_summary": "text",
    "has_results": "boolean",
    "source_updated_at": "timestamptz",
    "version_key": "text",
    "content_hash": "text",
    "derivation_hash": "text",
    "partition_date": "date",
    "normalized_at": "timestamptz",
}
COLUMNS = tuple(COLUMN_TYPES)
TARGET = Table("bench", "trials", COLUMNS, ("nct_id",))
# What normalization compares for core.trials (bioloupe_data.pipelines.normalize).
CHANGE = (*CHANGE_COLUMNS, "partition_date")
SCENARIOS = ("empty", "unchanged", "changed")
SCENARIO_LABELS = {
    "empty": "(a) empty table",
    "unchanged": "(b) full, unchanged",
    "changed": "(c) full, ~10% changed",
}
CHANGED_SHARE = 0.10
ENGINE = "engine"
# (contender, minimum ratio of its time to the engine's, strictly faster)
TARGETS = (("loop", 8.0, False), ("pandas", 15.0, False), ("executemany", 1.0, False))
TARGETS_STRICT = (("dlt", 1.0, True),)

Row = tuple[Any, ...]

# ----------------------------------------------------------------------------- rows

STATUSES = (
    "RECRUITING",
    "COMPLETED",
    "ACTIVE_NOT_RECRUITING",
    "NOT_YET_RECRUITING",
    "TERMINATED",
    "WITHDRAWN",
    "UNKNOWN",
)
PHASES = ("PHASE1", "PHASE2", "PHASE3", "PHASE1/PHASE2", "PHASE2/PHASE3", "EARLY_PHASE1", None)
CLASSES = ("INDUSTRY", "OTHER", "NIH", "NETWORK", "OTHER_GOV")
_VOCABULARY = (
    "patients with advanced or metastatic non-small cell lung cancer carcinoma tumor lymphoma "
    "leukemia myeloma melanoma sarcoma pembrolizumab nivolumab durvalumab atezolizumab "
    "trastuzumab deruxtecan osimertinib olaparib chemotherapy radiotherapy randomized "
    "open-label double-blind placebo-controlled dose escalation expansion cohort efficacy "
    "safety tolerability pharmacokinetics progression-free overall survival response rate "
    "HER2-positive EGFR-mutant KRAS G12C BRCA1/2 PD-L1 ≥1% µg/m² Müller Gómez São-Paulo "
    "first-line second-line maintenance adjuvant neoadjuvant refractory relapsed"
)
WORDS = tuple(_VOCABULARY.split())
# Text that COPY, VALUES literals and parameters must all carry unchanged.
AWKWARD = ("it's", '"quoted"', "back\\slash", "tab\there", "new\nline", "100%", "{json: [1]}")
EPOCH = date(2000, 1, 1)


def _text(rng: random.Random, low: int, high: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(low, high))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words) + 1), rng.choice(AWKWARD))
    return " ".join(words)


def _maybe_date(rng: random.Random, start: date, null_share: float) -> date | None:
    return None if rng.random() < null_share else start + timedelta(days=rng.randint(0, 2000))


def _hash(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _with_version(content: tuple[Any, ...], updated: datetime, posted: date) -> Row:
    """A row of COLUMNS from its content columns and the day and time the registry updated it."""
    content_hash = _hash("content", content)
    derivation_hash = _hash("derivation", content)
    version_key = (posted + timedelta(days=1)).isoformat()
    normalized_at = datetime.combine(posted + timedelta(days=1), dtime(7), UTC)
    return (*content, updated, version_key, content_hash, derivation_hash, posted, normalized_at)


def _trial(rng: random.Random, index: int) -> Row:
    first_posted = EPOCH + timedelta(days=rng.randint(0, 8000))
    start = _maybe_date(rng, first_posted - timedelta(days=60), 0.05)
    updated_day = first_posted + timedelta(days=rng.randint(0, 1500))
    content = (
        f"NCT{10_000_000 + index * 7:08d}",
        _text(rng, 6, 18),
        _text(rng, 12, 40),
        None if rng.random() < 0.7 else rng.choice(WORDS).upper()[:12],
        rng.choice(STATUSES),
        rng.choice(PHASES),
        "INTERVENTIONAL" if rng.random() < 0.8 else "OBSERVATIONAL",
        None if rng.random() < 0.05 else rng.randint(1, 5000),
        start,
        None if start is None else rng.choice(("day", "month")),
        _maybe_date(rng, first_posted, 0.1),
        _maybe_date(rng, first_posted + timedelta(days=300), 0.1),
        first_posted,
        updated_day,
        _text(rng, 2, 6),
        rng.choice(CLASSES),
        _text(rng, 30, 300),
        rng.random() < 0.25,
    )
    updated = datetime.combine(updated_day, dtime(12), UTC) + timedelta(
        seconds=rng.randint(0, 40_000)
    )
    return _with_version(content, updated, updated_day)


def _amended(rng: random.Random, row: Row) -> Row:
    """A newer version of a trial: new status, enrollment and title, updated a few days later."""
    content = list(row[: len(COLUMNS) - 6])
    content[1] = f"{content[1]} (amended)"
    content[4] = rng.choice([s for s in STATUSES if s != content[4]])
    content[7] = (content[7] or 0) + rng.randint(1, 200)
    posted = row[COLUMNS.index("last_update_posted_date")] + timedelta(days=rng.randint(1, 90))
    content[COLUMNS.index("last_update_posted_date")] = posted
    updated = datetime.combine(posted, dtime(12), UTC)
    return _with_version(tuple(content), updated, posted)


@dataclass(frozen=True, slots=True)
class Dataset:
    base: list[Row]
    changed: list[Row]
    changed_count: int

    def scenario(self, name: str) -> list[Row]:
        return self.changed if name == "changed" else self.base


def make_rows(count: int, seed: int) -> Dataset:
    """`count` trials in a shuffled (not key) order, and the same trials with ~10% amended."""
    rng = random.Random(seed)
    base = [_trial(rng, i) for i in range(count)]
    rng.shuffle(base)
    picked = set(rng.sample(range(count), round(count * CHANGED_SHARE)))
    changed = [_amended(rng, row) if i in picked else row for i, row in enumerate(base)]
    return Dataset(base, changed, len(picked))


# ----------------------------------------------------------------------------- SQL


def _idents(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _prefixed(prefix: str, names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)


def guarded_upsert(source: sql.Composable) -> sql.Composed:
    """`INSERT … {source} ON CONFLICT DO UPDATE … WHERE` with the guard `merge_versioned` uses
    for core.trials (same or newer version and a change, or an earlier snapshot of the same
    content)."""
    non_key = [c for c in COLUMNS if c not in TARGET.key]
    return sql.SQL(
        """INSERT INTO {target} AS t ({cols}) {source}
        ON CONFLICT ({key}) DO UPDATE SET {assignments}
        WHERE (({new_version}) >= ({old_version})
               AND ({old_change}) IS DISTINCT FROM ({new_change}))
           OR (EXCLUDED.source_updated_at = t.source_updated_at
               AND EXCLUDED.content_hash = t.content_hash
               AND EXCLUDED.version_key < t.version_key)"""
    ).format(
        target=TARGET.ident,
        cols=_idents(COLUMNS),
        source=source,
        key=_idents(TARGET.key),
        assignments=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in non_key
        ),
        new_version=_prefixed("excluded", VERSION_COLUMNS),
        old_version=_prefixed("t", VERSION_COLUMNS),
        old_change=_prefixed("t", CHANGE),
        new_change=_prefixed("excluded", CHANGE),
    )


VALUES_UPSERT = guarded_upsert(
    sql.SQL("VALUES ({})").format(sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)))
)
PANDAS_STAGING = "trials_staging"


# ----------------------------------------------------------------------------- databases


def create_target(url: str) -> None:
    """The project's migrations, then bench.trials shaped exactly like core.trials."""
    with connect(url) as conn:
        migrate(conn)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(TARGET.schema)))
        # Autovacuum would wake up at random moments; every scenario starts vacuumed instead.
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE core.trials INCLUDING ALL) WITH (autovacuum_enabled = off)"
            ).format(TARGET.ident)
        )


@dataclass(frozen=True, slots=True)
class Writes:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    hot_updated: int = 0

    def __sub__(self, other: Writes) -> Writes:
        return Writes(
            self.inserted - other.inserted,
            self.updated - other.updated,
            self.deleted - other.deleted,
            self.hot_updated - other.hot_updated,
        )

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted

    def short(self) -> str:
        return f"{self.inserted:,}/{self.updated:,}/{self.deleted:,}"


def table_writes(url: str) -> Writes:
    with connect(url) as conn:
        wait_for_other_sessions(conn)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            """SELECT n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd FROM pg_stat_user_tables
               WHERE schemaname = %s AND relname = %s""",
            (TARGET.schema, TARGET.name),
        ).fetchone()
    return Writes(*row) if row else Writes()


def checksum(url: str) -> str:
    """Row count and an md5 over the benchmark's columns in key order (columns a tool adds of its
    own, such as dlt's, are left out)."""
    with connect(url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(md5(ROW({cols})::text), '' "
                "ORDER BY {key}), '')) FROM {target}"
            ).format(cols=_idents(COLUMNS), key=_idents(TARGET.key), target=TARGET.ident)
        ).fetchone()
    assert row is not None
    return f"{row[0]}:{row[1]}"


def checkpoint(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def vacuum(url: str) -> None:
    with connect(url) as conn:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(TARGET.ident))


# ----------------------------------------------------------------------------- contenders


class Contender(Protocol):
    name: str
    description: str

    def prepare(self, rows: list[Row]) -> Any:
        """The rows in the contender's own input form (off the clock)."""

    def load(self, url: str, data: Any) -> float:
        """Upsert `data` into bench.trials and commit; return the seconds on the clock."""


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


@dataclass
class Loop:
    """One `INSERT … ON CONFLICT DO UPDATE` per row (psycopg prepares it after 5 runs), one
    commit. With `sample` rows, only that many are timed and the time is scaled."""

    sample: int | None = None
    name: str = "loop"
    description: str = "INSERT … ON CONFLICT per row, one round trip each, one commit"
    extrapolated_from: int | None = field(default=None, init=False)

    def prepare(self, rows: list[Row]) -> list[Row]:
        return rows

    def load(self, url: str, data: list[Row]) -> float:
        timed_rows = data if self.sample is None else data[: self.sample]
        with psycopg.connect(url) as conn:
            cursor = conn.cursor()

            def run() -> None:
                for row in timed_rows:
                    cursor.execute(VALUES_UPSERT, row)
                conn.commit()

            seconds = _timed(run)
            if len(timed_rows) < len(data):
                # The rest, off the clock, so every contender ends with the same table.
                cursor.executemany(VALUES_UPSERT, data[len(timed_rows) :])
                conn.commit()
        self.extrapolated_from = len(timed_rows) if len(timed_rows) < len(data) else None
        return seconds * len(data) / max(len(timed_rows), 1)


@dataclass
class ExecuteMany:
    name: str = "executemany"
    description: str = "psycopg cursor.executemany of the same statement (pipeline mode)"

    def prepare(self, rows: list[Row]) -> list[Row]:
        return rows

    def load(self, url: str, data: list[Row]) -> float:
        with psycopg.connect(url) as conn:
            cursor = conn.cursor()

            def run() -> None:
                cursor.executemany(VALUES_UPSERT, data)
                conn.commit()

            return _timed(run)


@dataclass
class Pandas:
    name: str = "pandas"
    description: str = (
        "DataFrame.to_sql(method=None) into a staging table (SQLAlchemy + psycopg), "
        "one INSERT … SELECT … ON CONFLICT"
    )

    def prepare(self, rows: list[Row]) -> Any:
        import pandas as pd

        return pd.DataFrame.from_records(rows, columns=list(COLUMNS))

    def load(self, url: str, data: Any) -> float:
        import sqlalchemy as sa

        types: dict[str, Any] = {
            "text": sa.Text(),
            "integer": sa.Integer(),
            "date": sa.Date(),
            "boolean": sa.Boolean(),
            "timestamptz": sa.DateTime(timezone=True),
        }
        merge = guarded_upsert(
            sql.SQL("SELECT {} FROM {}").format(
                _idents(COLUMNS), sql.Identifier(TARGET.schema, PANDAS_STAGING)
            )
        ).as_string(None)
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect():
                pass  # the pool's connection is opened off the clock

            def run() -> None:
                with engine.begin() as conn:
                    data.to_sql(
                        PANDAS_STAGING,
                        conn,
                        schema=TARGET.schema,
                        if_exists="replace",
                        index=False,
                        dtype={c: types[t] for c, t in COLUMN_TYPES.items()},
                    )
                    conn.exec_driver_sql(merge)

            return _timed(run)
        finally:
            engine.dispose()


@dataclass
class Dlt:
    name: str = "dlt"
    description: str = (
        'dlt postgres destination, write_disposition="merge", primary_key="nct_id" '
        "(delete-insert, insert_values)"
    )
    folder: tempfile.TemporaryDirectory[str] = field(
        default_factory=lambda: tempfile.TemporaryDirectory(prefix="bench-dlt-")
    )

    def prepare(self, rows: list[Row]) -> list[dict[str, Any]]:
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows]

    def load(self, url: str, data: list[dict[str, Any]]) -> float:
        os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
        # dlt warns that it adds its NOT NULL columns to the existing (empty) table.
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "ERROR")
        import dlt

        dlt_types = {
            "text": "text",
            "integer": "bigint",
            "date": "date",
            "boolean": "bool",
            "timestamptz": "timestamp",
        }
        columns: Any = {
            c: {"data_type": dlt_types[t], "nullable": c != "nct_id"}
            for c, t in COLUMN_TYPES.items()
        }
        from dlt.destinations.impl.postgres.configuration import PostgresCredentials

        credentials = PostgresCredentials()
        credentials.parse_native_representation(url)
        if not credentials.password:
            # dlt insists on a password; libpq sends it only if the server asks for one.
            credentials.password = os.environ.get("PGPASSWORD") or "unused"
        pipeline = dlt.pipeline(
            pipeline_name="bench_upsert_" + str(credentials.database),
            destination=dlt.destinations.postgres(credentials=credentials),
            dataset_name=TARGET.schema,
            pipelines_dir=self.folder.name,
        )
        resource = dlt.resource(
            data,
            name=TARGET.name,
            write_disposition="merge",
            primary_key="nct_id",
            columns=columns,
        )

        def run() -> None:
            pipeline.run(resource).raise_on_failed_jobs()

        return _timed(run)


@dataclass
class Engine:
    name: str = ENGINE
    description: str = (
        "warehouse.upsert: create_staging + copy_rows (COPY) + merge_versioned "
        "(DISTINCT ON, one INSERT … ON CONFLICT)"
    )

    def prepare(self, rows: list[Row]) -> list[Row]:
        return rows

    def load(self, url: str, data: list[Row]) -> float:
        with connect(url) as conn:

            def run() -> None:
                with conn.transaction():
                    staging = create_staging(conn, TARGET)
                    copy_rows(conn, staging, TARGET.columns, data)
                    merge_versioned(
                        conn,
                        TARGET,
                        staging,
                        change_columns=CHANGE,
                        allow_same_version=True,
                        earliest_snapshot_of_same_content=True,
                    )

            return _timed(run)


NOTES = (
    "Inputs are built in each tool's own form (tuples, a DataFrame, dicts) off the clock; the "
    "clock covers the load and the commit.",
    "pandas: to_sql's default method=None, which SQLAlchemy runs as one cursor.executemany of "
    "single-row INSERTs (insertmanyvalues is off for psycopg 3 without RETURNING), pipelined by "
    "psycopg; if_exists='replace' with the target's types; then one guarded merge.",
    "dlt: write_disposition='merge' with primary_key, i.e. its default delete-insert strategy "
    "and insert_values files; it rewrites (deletes and inserts) every row it is given.",
    "loop, executemany and pandas use the engine's guard, so like it they write only changes.",
)
CONTENDER_NAMES = ("loop", "executemany", "pandas", "dlt", ENGINE)


def build_contenders(names: Sequence[str], loop_rows: int | None) -> list[Contender]:
    factories: dict[str, Callable[[], Contender]] = {
        "loop": lambda: Loop(sample=loop_rows),
        "executemany": ExecuteMany,
        "pandas": Pandas,
        "dlt": Dlt,
        ENGINE: Engine,
    }
    return [factories[n]() for n in names]


# ----------------------------------------------------------------------------- the run


def run_all(
    contenders: Sequence[Contender], dataset: Dataset, admin_url: str, console: Console
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every scenario for every contender, scenario by scenario (so a busy moment on the machine
    does not land on one contender's whole run), each contender in its own database."""
    results: dict[str, dict[str, dict[str, Any]]] = {c.name: {} for c in contenders}
    with ExitStack() as stack:
        urls = {c.name: stack.enter_context(throwaway_database(admin_url)) for c in contenders}
        for url in urls.values():
            create_target(url)
        for scenario in SCENARIOS:
            rows = dataset.scenario(scenario)
            for contender in contenders:
                url = urls[contender.name]
                data = contender.prepare(rows)
                checkpoint(admin_url)
                before = table_writes(url)
                seconds = contender.load(url, data)
                del data
                writes = table_writes(url) - before
                results[contender.name][scenario] = {
                    "seconds": seconds,
                    "rows_per_second": len(rows) / seconds if seconds else None,
                    "extrapolated_from_rows": getattr(contender, "extrapolated_from", None),
                    "writes": {
                        "inserted": writes.inserted,
                        "updated": writes.updated,
                        "deleted": writes.deleted,
                        "hot_updated": writes.hot_updated,
                    },
                    "checksum": checksum(url),
                }
                console.log(
                    f"{contender.name:<12} {SCENARIO_LABELS[scenario]:<24} {seconds:8.2f} s  "
                    f"inserted/updated/deleted {writes.short()}"
                )
            for url in urls.values():
                vacuum(url)
    return results


def _expected_writes(scenario: str, dataset: Dataset) -> tuple[int, int]:
    """(inserted, updated) for a contender that writes only what changed."""
    return {
        "empty": (len(dataset.base), 0),
        "unchanged": (0, 0),
        "changed": (0, dataset.changed_count),
    }[scenario]


def verify(results: dict[str, dict[str, dict[str, Any]]], dataset: Dataset) -> dict[str, Any]:
    """Identical contents across contenders after every scenario; no needless writes by the
    contenders whose statement can avoid them (all but dlt)."""
    mismatches: list[str] = []
    needless: list[str] = []
    checksums: dict[str, str] = {}
    for scenario in SCENARIOS:
        seen = {name: r[scenario]["checksum"] for name, r in results.items()}
        distinct = set(seen.values())
        checksums[scenario] = distinct.pop() if len(distinct) == 1 else "mismatch"
        if checksums[scenario] == "mismatch":
            mismatches.append(f"{scenario}: contents differ across contenders: {seen}")
        expected = (*_expected_writes(scenario, dataset), 0)
        for name, r in results.items():
            w = r[scenario]["writes"]
            if name != "dlt" and (w["inserted"], w["updated"], w["deleted"]) != expected:
                needless.append(f"{name} {scenario}: wrote {w}, expected {expected}")
    return {
        "contents_identical": not mismatches,
        "checksums": checksums,
        "only_changes_written": not needless,
        "problems": mismatches + needless,
    }


def targets(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    engine = results.get(ENGINE)
    if engine is None:
        return out
    for name, minimum, strict in (*TARGETS, *TARGETS_STRICT):
        if name not in results:
            continue
        ratios = {s: results[name][s]["seconds"] / engine[s]["seconds"] for s in SCENARIOS}
        total = sum(results[name][s]["seconds"] for s in SCENARIOS) / sum(
            engine[s]["seconds"] for s in SCENARIOS
        )
        per = {s: (r > minimum if strict else r >= minimum) for s, r in ratios.items()}
        out.append(
            {
                "target": f"engine {'>' if strict else '≥'} {minimum:g}× {name}",
                "contender": name,
                "ratios": ratios,
                "overall_ratio": total,
                "met_per_scenario": per,
                "met": all(per.values()),
            }
        )
    return out


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "psycopg": psycopg.__version__,
        "libpq": psycopg.pq.version(),
        "executemany_pipelined": psycopg.Pipeline.is_supported(),
    }
    for module in ("pandas", "sqlalchemy", "dlt"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:  # pragma: no cover - dlt is a dev dependency
            info[module] = None
    return info


def print_tables(
    console: Console,
    rows: int,
    results: dict[str, dict[str, dict[str, Any]]],
    descriptions: dict[str, str],
    goals: list[dict[str, Any]],
) -> None:
    engine = results.get(ENGINE)
    speed = RichTable(title=f"upsert of {rows:,} trials rows: rows/s (engine's speed ÷ theirs)")
    speed.add_column("contender")
    for scenario in SCENARIOS:
        speed.add_column(SCENARIO_LABELS[scenario], justify="right")
    for name, result in results.items():
        cells = []
        for scenario in SCENARIOS:
            r = result[scenario]
            cell = f"{r['rows_per_second']:,.0f}"
            if engine and name != ENGINE:
                cell += f" ({r['seconds'] / engine[scenario]['seconds']:.1f}×)"
            if r["extrapolated_from_rows"]:
                cell += f" extrapolated from {r['extrapolated_from_rows']:,}"
            cells.append(cell)
        speed.add_row(name, *cells)
    console.print(speed)

    writes = RichTable(title="tuples written (pg_stat_user_tables: inserted/updated/deleted)")
    writes.add_column("contender")
    for scenario in SCENARIOS:
        writes.add_column(SCENARIO_LABELS[scenario], justify="right")
    writes.add_column("how")
    for name, result in results.items():
        cells = [Writes(**result[s]["writes"]).short() for s in SCENARIOS]
        writes.add_row(name, *cells, descriptions[name])
    console.print(writes)

    if goals:
        verdicts = RichTable(title="targets (ratio = their time ÷ the engine's)")
        for column in ("target", *(SCENARIO_LABELS[s] for s in SCENARIOS), "all three", "met"):
            verdicts.add_column(column, justify="left" if column == "target" else "right")
        for goal in goals:
            verdicts.add_row(
                goal["target"],
                *(f"{goal['ratios'][s]:.1f}×" for s in SCENARIOS),
                f"{goal['overall_ratio']:.1f}×",
                "met" if goal["met"] else "MISSED",
            )
        console.print(verdicts)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--loop-rows",
        type=int,
        default=None,
        help="time the per-row loop on this many rows and scale (reported as extrapolated)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDER_NAMES),
        help=f"comma-separated subset of {', '.join(CONTENDER_NAMES)}",
    )
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--out", type=Path, default=RESULTS / "upsert.json")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = set(names) - set(CONTENDER_NAMES)
    if unknown:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")

    console = Console(width=150)
    compression = _same_compression_for_all(args.admin_url)
    load_before = os.getloadavg()
    dataset = make_rows(args.rows, args.seed)
    contenders = build_contenders(names, args.loop_rows)
    results = run_all(contenders, dataset, args.admin_url, console)

    descriptions = {c.name: c.description for c in contenders}
    goals = targets(results)
    print_tables(console, args.rows, results, descriptions, goals)
    checks = verify(results, dataset)
    with psycopg.connect(args.admin_url) as conn:
        server = conn.execute("SHOW server_version").fetchone()
    report = {
        "rows": args.rows,
        "changed_rows": dataset.changed_count,
        "seed": args.seed,
        "columns": COLUMN_TYPES,
        "server_version": server[0] if server else None,
        "toast_compression": compression,
        "environment": environment(),
        "contenders": descriptions,
        "notes": NOTES,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "results": results,
        "targets": goals,
        "verification": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"wrote {args.out}")
    if checks["problems"]:
        for problem in checks["problems"]:
            console.print(f"[red]{problem}[/red]")
        raise SystemExit(1)
    return report


def _same_compression_for_all(admin_url: str) -> str:
    """The project's connections compress large values with lz4 (`warehouse.database`); every
    contender's connections do the same here (libpq reads PGOPTIONS), so that none wins or
    loses by its compression."""
    try:
        with psycopg.connect(admin_url) as conn:
            conn.execute("SET default_toast_compression = lz4")
    except psycopg.errors.InvalidParameterValue:
        return "pglz"
    os.environ["PGOPTIONS"] = (
        os.environ.get("PGOPTIONS", "") + " -c default_toast_compression=lz4"
    ).strip()
    return "lz4"


if __name__ == "__main__":
    main()
