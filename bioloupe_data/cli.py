"""The `bioloupe-data` command."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.table import Table as RichTable

from bioloupe_data.settings import SettingError

if TYPE_CHECKING:
    from bioloupe_data.runner import BackfillReport

console = Console(stderr=True)
# Piped output has no terminal width: each progress bar and table row must still fit one line.
PIPED_WIDTH = 160


def output_width(stream: TextIO) -> int | None:
    return None if stream.isatty() else PIPED_WIDTH


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def _print_report(report: BackfillReport) -> None:
    table = RichTable(title="backfill")
    for column in ("asset", "partitions", "inserted", "updated", "unchanged", "documents"):
        table.add_column(column, justify="left" if column == "asset" else "right")
    for name, totals in report.assets.items():
        table.add_row(
            name,
            str(totals.partitions),
            *(str(totals.counts[k]) for k in ("inserted", "updated", "unchanged")),
            str(totals.documents),
        )
    Console(width=output_width(sys.stdout)).print(table)
    console.print(f"{len(report.runs)} run(s): {', '.join(report.runs)}")


def cmd_backfill(args: argparse.Namespace) -> int:
    from bioloupe_data import memory

    with ExitStack() as stack:
        with memory.start_up():
            from bioloupe_data import local
            from bioloupe_data.definitions import defs
            from bioloupe_data.runner import BackfillError, run_backfill, selected_assets

            local.prepare()
            definitions = defs()
            instance = stack.enter_context(local.dagster_instance())
        try:
            keys = selected_assets(args.source, args.select)
            report = run_backfill(
                definitions, instance, keys, args.start, args.end, console=console
            )
        except BackfillError as exc:
            console.print(f"[red]error:[/red] {exc}")
            return 2
    _print_report(report)
    if report.failed:
        console.print(f"[red]failed:[/red] {report.failed}")
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from bioloupe_data import memory

    with memory.start_up():
        import dagster as dg

        from bioloupe_data import local
        from bioloupe_data.definitions import defs
        from bioloupe_data.status import coverage, default_window
        from bioloupe_data.status_render import render_terminal, write_html, write_png

        local.prepare()
        definitions = defs()
    start, end = default_window(date.today())
    start, end = args.start or start, args.end or end
    if start > end:
        console.print(f"[red]error:[/red] --from {start} is after --to {end}")
        return 2
    asset = dg.AssetKey.from_user_string(args.asset) if args.asset else None
    if asset is not None and not definitions.resolve_asset_graph().has(asset):
        console.print(f"[red]error:[/red] no asset {args.asset}")
        return 2
    with ExitStack() as stack:
        with memory.start_up():
            instance = stack.enter_context(local.dagster_instance())
        report = coverage(definitions, instance, start, end, asset)
    render_terminal(report, Console(width=output_width(sys.stdout)))
    out = Path(args.out) if args.out else local.bioloupe_home() / "status"
    png = write_png(report, out / "status.png")
    page = write_html(report, out / "status.html", png)
    console.print(f"wrote {png} and {page}")
    return 1 if report.has_gaps else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bioloupe_data import memory

    with memory.start_up():
        from bioloupe_data.demo import run_demo

    return run_demo(days=args.days, per_day=args.per_day, console=console)


def cmd_dev(args: argparse.Namespace) -> int:
    from bioloupe_data import local

    environment = local.prepare()
    console.print(f"warehouse: {environment.warehouse_url}")
    console.print(f"DAGSTER_HOME: {environment.dagster_home}")
    command = ["dagster", "dev", "-m", "bioloupe_data.definitions", *args.dagster_args]
    executable = Path(sys.executable).with_name("dagster")
    os.execv(str(executable), [str(executable), *command[1:]])
    return 0  # not reached


def cmd_replay_server(args: argparse.Namespace) -> int:
    from bioloupe_data.replay.faults import FaultSpecError, parse_faults
    from bioloupe_data.replay.server import run_forever

    if args.faults:
        try:
            parse_faults(args.faults)
        except FaultSpecError as exc:
            print(f"--faults: {exc}", file=sys.stderr)
            return 2
    run_forever(Path(args.data), args.host, args.port, args.faults or None, args.report_every)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from bioloupe_data.replay.synth import write_synthetic

    columns = (
        TextColumn("synthetic studies"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days · {task.fields[megabytes]:,.0f} MB"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("days", total=args.days, megabytes=0.0)
        written = [0]

        def on_day(_day: date, size: int) -> None:
            written[0] += size
            progress.update(task, advance=1, megabytes=written[0] / 1e6)

        summary = write_synthetic(
            Path(args.out),
            args.days,
            args.per_day,
            seed=args.seed,
            end=args.end,
            pubmed_per_day=args.pubmed_per_day,
            nct_fraction=args.nct_fraction,
            on_day=on_day,
        )
    console.print(
        f"wrote {summary.studies} studies in {summary.files} files "
        f"({summary.bytes / 1e6:.1f} MB) for {summary.first_day}..{summary.last_day} to {args.out}"
    )
    if summary.articles:
        console.print(
            f"wrote {summary.articles} PubMed articles ({summary.citing_articles} citing a "
            f"synthetic trial) in {summary.pubmed_files} files "
            f"({summary.pubmed_bytes / 1e6:.1f} MB)"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bioloupe-data", description="Oncology drug-development warehouse on Dagster."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    backfill = commands.add_parser("backfill", help="run a date range through Dagster here")
    backfill.add_argument("--from", dest="start", type=_date, required=True)
    backfill.add_argument("--to", dest="end", type=_date, required=True)
    backfill.add_argument("--source", choices=["clinicaltrials_gov", "pubmed"], default=None)
    backfill.add_argument(
        "--select", default=None, help="comma-separated asset keys, e.g. raw/clinicaltrials_gov"
    )
    backfill.set_defaults(func=cmd_backfill)

    status = commands.add_parser(
        "status",
        help="partition coverage per asset (exits 1 when the window has gaps)",
        description="Which partitions of each partitioned asset are materialized, failed, in "
        "progress or missing, as a calendar heatmap here and in status.png / status.html; "
        "exits 1 when a day of the window is missing or failed.",
    )
    status.add_argument("--asset", default=None, help="one asset key, e.g. raw/clinicaltrials_gov")
    status.add_argument("--from", dest="start", type=_date, default=None, help="default: 30 days")
    status.add_argument("--to", dest="end", type=_date, default=None, help="default: yesterday")
    status.add_argument("--out", default=None, help="report folder (default: .bioloupe/status)")
    status.set_defaults(func=cmd_status)

    demo = commands.add_parser("demo", help="embedded Postgres, synthetic data, a backfill")
    demo.add_argument("--days", type=int, default=30)
    demo.add_argument("--per-day", type=int, default=40)
    demo.set_defaults(func=cmd_demo)

    dev = commands.add_parser(
        "dev", help="`dagster dev` on the embedded Postgres (other options go to dagster dev)"
    )
    dev.set_defaults(func=cmd_dev)

    replay = commands.add_parser("replay-server", help="serve recorded API data offline")
    replay.add_argument("--data", required=True)
    replay.add_argument("--host", default="127.0.0.1")
    replay.add_argument("--port", type=int, default=8765)
    replay.add_argument(
        "--faults",
        default=None,
        help="inject faults into data requests, e.g. '429=2:0.1,reset:#3,slow=5:0.05,seed=1' "
        "(kinds 429, 500, 502, 503, reset, slow, truncate, expired_token; WHEN a probability, "
        "#N, #N-M or *)",
    )
    replay.add_argument(
        "--report-every",
        type=float,
        default=30.0,
        help="seconds between lines reporting the requests served (0: none)",
    )
    replay.set_defaults(func=cmd_replay_server)

    synth = commands.add_parser("synth", help="write synthetic studies and PubMed articles")
    synth.add_argument("--days", type=int, required=True)
    synth.add_argument("--per-day", type=int, required=True)
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--end", type=_date, default=None, help="last day, YYYY-MM-DD (default: yesterday, UTC)"
    )
    synth.add_argument(
        "--pubmed-per-day",
        type=int,
        default=None,
        help="PubMed articles revised per day (default: --per-day; 0 for none)",
    )
    synth.add_argument(
        "--nct-fraction",
        type=float,
        default=0.2,
        help="share of articles reporting a synthetic trial (default 0.2)",
    )
    synth.set_defaults(func=cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    # The project relies on BackfillPolicy knowingly; the beta notice is noise on a terminal.
    warnings.filterwarnings("ignore", message=r".*is currently in beta")
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "dev":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.dagster_args = unknown  # `dev -p 3001` passes `-p 3001` to dagster dev
    if width := output_width(sys.stderr):
        console.width = width
    try:
        return args.func(args)
    except SettingError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
