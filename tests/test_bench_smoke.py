"""`python -m bench --smoke`: each benchmark's whole path on a tiny input, so that none rots.
The throughput and upsert benchmarks have smoke tests of their own (test_bench_throughput.py,
test_bench_upsert.py); the daemon benchmark runs in `make e2e`, for it starts `dagster dev`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _smoke(names: str, admin_url: str, out_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", names, "--out-dir", str(out_dir)],
        cwd=ROOT,
        env={**os.environ, "BIOLOUPE_BENCH_ADMIN_URL": admin_url},
        check=True,
        timeout=600,
    )


def test_sensor_landscape_backfill_geocode_and_latency_benchmarks_write_their_results(
    admin_url: str, tmp_path: Path
) -> None:
    _smoke("sensor,landscape,backfill,geocode,latency", admin_url, tmp_path)

    sensor = json.loads((tmp_path / "sensor.json").read_text())
    assert sensor["results"]["new drugs registered"]["new_keys"] == 20
    assert sensor["results"]["nothing new (idle tick, cursor)"]["new_keys"] == 0
    assert [row["target"] for row in sensor["table"]] == ["≤ 5 s", "≤ 0.5 s"]

    landscape = json.loads((tmp_path / "landscape.json").read_text())
    assert landscape["days"] == 3
    for setup, result in landscape["results"].items():
        assert result["rerun"] == 0
        assert result["runs"] >= 1 or setup.startswith("SQL only")

    backfill = json.loads((tmp_path / "backfill.json").read_text())
    assert backfill["studies"] == 9
    for result in backfill["results"].values():
        assert result["rerun"] == 0 and not result.get("failed")

    geocode = json.loads((tmp_path / "geocode.json").read_text())
    assert geocode["sites_with_point"] > 0 and geocode["placed"] > 0

    latency = json.loads((tmp_path / "latency.json").read_text())
    assert latency["requests"] == 1  # 10 studies: one page
    for result in latency["results"].values():
        assert len(result["at_once_seconds"]) == len(result["held_back_seconds"]) == 1


def test_pubmed_benchmark_backfills_a_range_and_its_no_op_rerun(
    admin_url: str, tmp_path: Path
) -> None:
    _smoke("pubmed", admin_url, tmp_path)

    pubmed = json.loads((tmp_path / "pubmed.json").read_text())
    first, again = pubmed["runs"]
    assert 0 < first["studies"] == again["studies"] <= 40  # 2 days of 20, as the query matches
    assert first["requests"] > 0 and again["requests"] > 0  # the re-run fetched again
    assert not any(table.startswith(("raw.", "core.")) for table in pubmed["rewritten"])
    rows = {row["measurement"]: row for row in pubmed["table"]}
    assert rows["no-op re-run of 2 days: time"]["target"] == "≤ 30%"
    assert rows["no-op re-run of 2 days: data rows rewritten (every schema but ops)"]["met"] is True


@pytest.mark.e2e
def test_daemon_backfill_benchmark_compares_both_policies(admin_url: str, tmp_path: Path) -> None:
    _smoke("daemon_backfill", admin_url, tmp_path)

    result = json.loads((tmp_path / "daemon_backfill.json").read_text())
    by_policy = {run["policy"]: run for run in result["results"]}
    assert by_policy["project"]["runs"] == 1
    assert by_policy["per-partition"]["runs"] == 3
    for run in by_policy.values():
        assert run["status"] == "COMPLETED_SUCCESS"
        assert run["studies"] == run["expected_studies"] == 6
    assert any("over the project's policy" in row["measurement"] for row in result["table"])
