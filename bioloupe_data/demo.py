"""`bioloupe-data demo`: synthetic studies for recent days, served by the replay server,
backfilled through Dagster into the (embedded) warehouse, then a summary."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
from rich.console import Console
from rich.table import Table as RichTable

from bioloupe_data import local
from bioloupe_data.assets.enrichment import DRUGS_KEY, SPONSORS_KEY
from bioloupe_data.definitions import defs
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic
from bioloupe_data.runner import SOURCE_ASSETS, BackfillReport, add_run, run_backfill
from bioloupe_data.sensors import drug_registration_sensor, sponsor_registration_sensor

ENTITY_ASSETS = [DRUGS_KEY, SPONSORS_KEY]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SUMMARY_TABLES = (
    "raw.documents",
    "core.trials",
    "core.trial_sites",
    "core.trial_interventions",
    "core.trial_sponsors",
    "core.trial_conditions",
    "core.publications",
    "core.publication_authors",
    "core.publication_trials",
    "enriched.drugs",
    "enriched.drug_profiles",
    "enriched.sponsors",
    "enriched.trial_features",
    "enriched.site_geocodes",
    "ops.partition_fetches",
    "ops.dead_letters",
)


def run_demo(days: int, per_day: int, console: Console) -> int:
    environment = local.prepare()
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    start = yesterday - timedelta(days=days - 1)
    data_dir = local.bioloupe_home() / "demo-data"
    summary = write_synthetic(data_dir, days, per_day, seed=7, end=yesterday)
    console.print(f"synthetic data: {summary.studies} studies for {start}..{yesterday}")
    os.environ["CTGOV_SCOPE"] = "all"
    os.environ["PUBMED_QUERY"] = "all[sb]"
    with ReplayServer(data_dir) as server:
        os.environ["CTGOV_BASE_URL"] = server.url
        os.environ["PUBMED_BASE_URL"] = server.url
        with local.dagster_instance() as instance:
            report = run_backfill(
                defs(),
                instance,
                [key for keys in SOURCE_ASSETS.values() for key in keys],
                start,
                yesterday,
                console=console,
            )
            enriched = enrich(defs(), instance, console)
        console.print(f"replay server answered {server.request_count} requests")
    report.assets.update(enriched.assets)
    report.failed = report.failed or enriched.failed
    _print_summary(environment.warehouse_url, report, Console())
    if report.failed:
        console.print(f"[red]failed:[/red] {report.failed}")
        return 1
    console.print(
        "\nOpen the Dagster UI on this warehouse with [bold]bioloupe-data dev[/bold] "
        "(http://127.0.0.1:3000)."
    )
    return 0


def _print_summary(warehouse_url: str, report: BackfillReport, console: Console) -> None:
    changes = RichTable(title="what this run changed")
    for column in ("asset", "partitions", "inserted", "updated", "unchanged"):
        changes.add_column(column)
    for name, totals in report.assets.items():
        changes.add_row(
            name,
            str(totals.partitions),
            *(str(totals.counts[k]) for k in ("inserted", "updated", "unchanged")),
        )
    console.print(changes)
    rows = RichTable(title="warehouse rows")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    with psycopg.connect(warehouse_url) as conn:
        for table in SUMMARY_TABLES:
            schema, name = table.split(".")
            count = conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM {}").format(
                    psycopg.sql.Identifier(schema, name)
                )
            ).fetchone()
            rows.add_row(table, str(count[0] if count else 0))
    console.print(rows)
    if report.changed == 0:
        console.print("[green]nothing changed[/green]: every document was already up to date.")


def enrich(defs: dg.Definitions, instance: dg.DagsterInstance, console: Console) -> BackfillReport:
    """What the daemon would do next: refresh the entities, let the registration sensors add
    new ones as partitions, and run the profile runs they request (rules-only without
    OPENAI_API_KEY)."""
    job = defs.resolve_implicit_global_asset_job_def()
    report = BackfillReport()

    def run(selection: list[dg.AssetKey], tags: dict[str, str] | None = None) -> None:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=selection,
            tags=tags,
            raise_on_error=False,
            run_config=QUIET,
        )
        add_run(report, result)
        if not result.success:
            report.failed = f"run {result.run_id} failed"

    run(ENTITY_ASSETS)
    for sensor in (drug_registration_sensor, sponsor_registration_sensor):
        context = dg.build_sensor_context(
            instance=instance, resources={"warehouse": defs.resources["warehouse"]}
        )
        tick = sensor(context)
        if isinstance(tick, dg.SkipReason):
            continue
        for request in tick.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        for request in tick.run_requests or []:
            run(list(request.asset_selection or []), dict(request.tags))
    console.print(f"enrichment: {len(report.runs)} run(s)")
    return report
