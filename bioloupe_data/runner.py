"""Run a date range through Dagster in this process, chunked per the assets' BackfillPolicy,
on the instance the UI reads (`DagsterInstance.get()`)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from bioloupe_data.assets.enrichment import SITE_GEOCODES_KEY, TRIAL_FEATURES_KEY
from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY, PUBMED_LANDING_KEY
from bioloupe_data.assets.normalize import PUBLICATIONS_KEY, TRIALS_KEY
from bioloupe_data.partitions import RANGE_END_TAG, RANGE_START_TAG

SOURCE_ASSETS: dict[str, list[dg.AssetKey]] = {
    "clinicaltrials_gov": [
        CLINICALTRIALS_LANDING_KEY,
        TRIALS_KEY,
        SITE_GEOCODES_KEY,
        TRIAL_FEATURES_KEY,
    ],
    "pubmed": [PUBMED_LANDING_KEY, PUBLICATIONS_KEY],
}
COUNT_KEYS = ("inserted", "updated", "unchanged")
LAUNCHED_BY_TAG = "bioloupe/launched_by"
HOST_TAG = "bioloupe/host"
PID_TAG = "bioloupe/pid"
_UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


class BackfillError(RuntimeError):
    pass


@dataclass
class AssetTotals:
    partitions: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    documents: int = 0


@dataclass
class BackfillReport:
    runs: list[str] = field(default_factory=list)
    assets: dict[str, AssetTotals] = field(default_factory=dict)
    failed: str | None = None

    @property
    def changed(self) -> int:
        return sum(t.counts["inserted"] + t.counts["updated"] for t in self.assets.values())


def selected_assets(source: str | None, select: str | None) -> list[dg.AssetKey]:
    if select:
        return [dg.AssetKey.from_user_string(s.strip()) for s in select.split(",") if s.strip()]
    if source:
        if source not in SOURCE_ASSETS:
            raise BackfillError(f"unknown source {source!r}; known: {', '.join(SOURCE_ASSETS)}")
        return SOURCE_ASSETS[source]
    return [key for keys in SOURCE_ASSETS.values() for key in keys]


def _chunks(keys: Sequence[str], size: int) -> list[Sequence[str]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def plan(
    defs: dg.Definitions, asset_keys: Sequence[dg.AssetKey], start: date, end: date
) -> tuple[dg.PartitionsDefinition, list[Sequence[str]]]:
    graph = defs.resolve_asset_graph()
    partitions_defs = set()
    sizes = []
    for key in asset_keys:
        if not graph.has(key):
            raise BackfillError(f"no asset {key.to_user_string()}")
        node = graph.get(key)
        if node.partitions_def is None:
            raise BackfillError(f"{key.to_user_string()} is not partitioned")
        partitions_defs.add(node.partitions_def)
        policy = node.backfill_policy
        sizes.append(policy.max_partitions_per_run if policy else 1)
    if len(partitions_defs) != 1:
        raise BackfillError("the selected assets do not share one partitions definition")
    partitions_def = partitions_defs.pop()
    all_keys = partitions_def.get_partition_keys()
    if not all_keys:
        raise BackfillError("no partitions exist yet")
    first, last = all_keys[0], all_keys[-1]
    if start.isoformat() < first or end.isoformat() > last:
        raise BackfillError(f"range {start}..{end} is outside the partitions {first}..{last}")
    if start > end:
        raise BackfillError("--from is after --to")
    keys = partitions_def.get_partition_keys_in_range(
        dg.PartitionKeyRange(start.isoformat(), end.isoformat())
    )
    size = min(s for s in sizes if s) if any(sizes) else len(keys)
    return partitions_def, _chunks(keys, size or len(keys))


# Drawing the bars more often shows nothing new and takes the interpreter from the run each time.
REFRESHES_PER_SECOND = 2


class _RunProgress:
    """Moves the progress bars as the run's days are recorded: the instance calls it with each
    event of the run once stored, in the thread that wrote it (the run executes in this
    process), so nothing is read back from the event log."""

    def __init__(
        self,
        progress: Progress,
        tasks: dict[dg.AssetKey, TaskID],
        days_before: dict[dg.AssetKey, int],
        documents_before: dict[dg.AssetKey, int],
    ) -> None:
        self.progress, self.tasks = progress, tasks
        self.days_before, self.documents_before = days_before, documents_before
        self.done: dict[dg.AssetKey, set[str]] = {key: set() for key in tasks}
        self.documents: dict[dg.AssetKey, int] = dict.fromkeys(tasks, 0)

    def __call__(self, entry: dg.EventLogEntry) -> None:
        materialization = entry.asset_materialization
        if materialization is None or materialization.asset_key not in self.tasks:
            return
        key = materialization.asset_key
        # Only a day's own counts: the run's own at its end (`partitions_in_run`) repeats each day.
        if not materialization.partition or "partitions_in_run" in materialization.metadata:
            return
        self.done[key].add(materialization.partition)
        docs = materialization.metadata.get("received") or materialization.metadata.get("documents")
        self.documents[key] += int(docs.value) if docs is not None else 0  # type: ignore[arg-type]
        self.progress.update(
            self.tasks[key],
            completed=self.days_before[key] + len(self.done[key]),
            docs=self.documents_before[key] + self.documents[key],
        )


class DocumentRateColumn(ProgressColumn):
    """Documents a second from the backfill's start until the asset's last day (or now)."""

    def render(self, task: Task) -> Text:
        # A finished bar's elapsed time goes on growing until every bar has finished.
        elapsed = (task.finished_time if task.finished else task.elapsed) or 0.0
        documents = int(task.fields.get("docs", 0))
        rate = documents / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f} docs/s", style="progress.data.speed")


def progress_columns() -> tuple[ProgressColumn, ...]:
    """An asset's bar: its days done of the range, its documents, their rate and the time."""
    return (
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days · {task.fields[docs]} docs"),
        DocumentRateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def _counts(metadata: Mapping[str, dg.MetadataValue]) -> dict[str, int]:
    values = {key: metadata[key].value for key in COUNT_KEYS if key in metadata}
    return {key: int(value) for key, value in values.items() if isinstance(value, int)}


def run_totals(result: dg.ExecuteInProcessResult) -> dict[str, AssetTotals]:
    """Per asset, what the run did: the sum of the days it logged as they committed, or, for an
    asset that logs no days of its own, the run's own materialization (unpartitioned, or
    carrying `partitions_in_run`, which every partition of the range repeats)."""
    days: dict[str, dict[str, dict[str, int]]] = {}
    runs: dict[str, AssetTotals] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        name = materialization.asset_key.to_user_string()
        metadata = materialization.metadata
        if materialization.partition and "partitions_in_run" not in metadata:
            days.setdefault(name, {})[materialization.partition] = _counts(metadata)
            continue
        run = metadata.get("partitions_in_run")
        runs[name] = AssetTotals(
            partitions=int(run.value) if run is not None else 0,  # type: ignore[arg-type]
            counts={**dict.fromkeys(COUNT_KEYS, 0), **_counts(metadata)},
        )
    for name, by_day in days.items():
        totals = runs[name] = AssetTotals(partitions=len(by_day))
        for counts in by_day.values():
            for key, value in counts.items():
                totals.counts[key] += value
    return runs


def add_run(report: BackfillReport, result: dg.ExecuteInProcessResult) -> None:
    """Add a finished run's per-asset totals to the report."""
    report.runs.append(result.run_id)
    for name, run in run_totals(result).items():
        totals = report.assets.setdefault(name, AssetTotals())
        totals.partitions += run.partitions
        for key in COUNT_KEYS:
            totals.counts[key] += run.counts[key]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's
        return True
    return True


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Mark failed the unfinished runs this command started on this host whose process is gone
    (killed, or the machine restarted): run monitoring for runs executed in the command's own
    process, which no daemon watches. Their committed days stay materialized; a backfill of the
    failed and missing days resumes them. Returns the runs marked."""
    host = socket.gethostname()
    marked = []
    for run in instance.get_runs(
        dg.RunsFilter(statuses=_UNFINISHED, tags={LAUNCHED_BY_TAG: "cli", HOST_TAG: host})
    ):
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        instance.report_run_failed(
            run, f"process {pid} on {host} that ran this backfill is gone (killed or crashed)"
        )
        marked.append(run)
    return marked


def run_backfill(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    asset_keys: Sequence[dg.AssetKey],
    start: date,
    end: date,
    *,
    console: Console | None = None,
) -> BackfillReport:
    console = console or Console(stderr=True)
    for run in fail_abandoned_runs(instance):
        console.print(f"marked run {run.run_id} failed: the process that ran it is gone")
    _, chunks = plan(defs, asset_keys, start, end)
    job = defs.resolve_implicit_global_asset_job_def()
    report = BackfillReport(assets={k.to_user_string(): AssetTotals() for k in asset_keys})
    total_days = sum(len(c) for c in chunks)
    with Progress(
        *progress_columns(),
        console=console,
        transient=False,
        refresh_per_second=REFRESHES_PER_SECOND,
    ) as progress:
        tasks = {
            key: progress.add_task(key.to_user_string(), total=total_days, docs=0)
            for key in asset_keys
        }
        days_before = dict.fromkeys(asset_keys, 0)
        documents_before = dict.fromkeys(asset_keys, 0)
        for chunk in chunks:
            run_id = str(uuid.uuid4())
            run_progress = _RunProgress(progress, tasks, dict(days_before), dict(documents_before))
            instance.add_event_listener(run_id, run_progress)
            result = job.execute_in_process(
                instance=instance,
                asset_selection=list(asset_keys),
                run_id=run_id,
                tags={
                    RANGE_START_TAG: chunk[0],
                    RANGE_END_TAG: chunk[-1],
                    LAUNCHED_BY_TAG: "cli",
                    HOST_TAG: socket.gethostname(),
                    PID_TAG: str(os.getpid()),
                },
                raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            add_run(report, result)
            for key in asset_keys:
                days_before[key] += len(chunk) if result.success else len(run_progress.done[key])
                documents_before[key] += run_progress.documents[key]
                report.assets[key.to_user_string()].documents += run_progress.documents[key]
            if not result.success:
                report.failed = _failure_message(result, chunk)
                break
    return report


def _failure_message(result: dg.ExecuteInProcessResult, chunk: Sequence[str]) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            message = event.step_failure_data.error.message.strip()
            return f"run {result.run_id} ({chunk[0]}..{chunk[-1]}): {message}"
    return f"run {result.run_id} ({chunk[0]}..{chunk[-1]}) failed"
