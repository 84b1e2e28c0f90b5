"""`bioloupe-data status`: partition coverage read from the Dagster instance, drawn in the
terminal, as a PNG and as HTML, with an exit code a cron job can guard on."""

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
from PIL import Image

from bench._dagster_dev import clean_environment
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.synth import write_synthetic
from bioloupe_data.status import State, coverage
from bioloupe_data.status_render import write_html, write_png

CLI = str(Path(sys.executable).with_name("bioloupe-data"))
DAILY = dg.DailyPartitionsDefinition(start_date="2024-03-01")
AREAS = dg.StaticPartitionsDefinition(["lung", "breast"])
GRID = dg.MultiPartitionsDefinition({"date": DAILY, "tumor_area": AREAS})
ENTITIES = dg.DynamicPartitionsDefinition(name="entities")


@dg.asset(key=["raw", "days"], partitions_def=DAILY)
def days(context: dg.AssetExecutionContext) -> None:
    if context.partition_key == "2024-03-05":
        raise RuntimeError("a failed day")


@dg.asset(key=["analytics", "grid"], partitions_def=GRID)
def grid() -> None: ...


@dg.asset(key=["enriched", "entities"], partitions_def=ENTITIES)
def entities() -> None: ...


def test_coverage_tells_materialized_failed_and_missing_apart(tmp_path: Path) -> None:
    definitions = dg.Definitions(assets=[days, grid, entities])
    instance = dg.DagsterInstance.ephemeral()

    def run(asset: dg.AssetsDefinition, partition: str) -> bool:
        result = dg.materialize(
            [asset], instance=instance, partition_key=partition, raise_on_error=False
        )
        return result.success

    assert all(run(days, day) for day in ("2024-03-02", "2024-03-03", "2024-03-04"))
    assert not run(days, "2024-03-05")
    assert run(grid, dg.MultiPartitionKey({"date": "2024-03-03", "tumor_area": "lung"}))
    instance.add_dynamic_partitions("entities", ["a", "b", "c"])
    assert run(entities, "a")

    report = coverage(definitions, instance, date(2024, 2, 27), date(2024, 3, 6))

    (daily,) = report.daily
    assert daily.days[0] == date(2024, 3, 1)  # nothing before the first partition
    assert daily.states[date(2024, 3, 3)] is State.MATERIALIZED
    assert daily.states[date(2024, 3, 5)] is State.FAILED
    assert daily.gaps == [date(2024, 3, 1), date(2024, 3, 5), date(2024, 3, 6)]
    (cells,) = report.grids
    assert cells.rows == ["lung", "breast"]
    assert cells.states[(date(2024, 3, 3), "lung")] is State.MATERIALIZED
    assert cells.states[(date(2024, 3, 3), "breast")] is State.MISSING
    (keyed,) = report.keyed
    assert (keyed.total, keyed.newest, keyed.counts[State.MATERIALIZED]) == (3, "c", 1)
    assert report.has_gaps

    png = write_png(report, tmp_path / "status.png")
    page = write_html(report, tmp_path / "status.html", png)
    with Image.open(png) as image:
        assert image.width > 100 and image.height > 100
        # The failed day is drawn in the failure colour somewhere.
        assert (207, 34, 46) in {pixel for pixel in image.getdata()}
    text = page.read_text()
    assert "raw/days" in text and "analytics/grid" in text
    assert "title='2024-03-05: failed'" in text
    assert "2024-03-03 · breast: missing" in text


def test_the_command_exits_one_on_gaps_and_zero_on_a_complete_window(
    tmp_path: Path, database_url: str, dagster_home: Path
) -> None:
    end = date(2024, 3, 20)
    folder = tmp_path / "served"
    write_synthetic(folder, 5, 3, seed=2, end=end, pubmed_per_day=0)
    out = tmp_path / "report"
    with ReplayServer(folder) as server:
        env = {
            **clean_environment(),
            "BIOLOUPE_DATABASE_URL": database_url,
            "DAGSTER_HOME": str(dagster_home),
            "CTGOV_BASE_URL": server.url,
            "CTGOV_SCOPE": "all",
            "BIOLOUPE_START_DATE": "2024-03-01",
        }
        first = end - timedelta(days=4)
        select = ["--select", "raw/clinicaltrials_gov,core/trials"]
        subprocess.run(
            [CLI, "backfill", "--from", str(first), "--to", str(end), *select],
            env=env,
            check=True,
            capture_output=True,
        )

        def status(*args: str) -> subprocess.CompletedProcess[str]:
            command = [CLI, "status", "--asset", "core/trials", "--out", str(out), *args]
            return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

        complete = status("--from", str(first), "--to", str(end))
        gaps = status("--from", str(first - timedelta(days=3)), "--to", str(end))
        unknown = subprocess.run(
            [CLI, "status", "--asset", "core/nothing"], env=env, capture_output=True, text=True
        )

    assert complete.returncode == 0, complete.stderr
    assert "core/trials" in complete.stdout and "no gaps" in complete.stdout
    assert gaps.returncode == 1
    assert "gaps: 2024-03-13, 2024-03-14, 2024-03-15" in gaps.stdout
    assert (out / "status.png").stat().st_size > 0
    assert "core/trials" in (out / "status.html").read_text()
    assert unknown.returncode == 2 and "no asset core/nothing" in unknown.stderr
