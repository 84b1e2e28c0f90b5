"""The throughput benchmark's whole path on a tiny range, so that it cannot rot: its command
line, synthetic folder, replay server, `bioloupe-data backfill` subprocesses, tuple counters and
the JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import bench._common
from bench._common import local_postgres_pid

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_bench_writes_every_measurement(admin_url: str, tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.throughput",
            "--per-day",
            "5",
            "--short-days",
            "2",
            # As long as the short range: its run is reused (a subprocess less).
            "--long-days",
            "2",
            "--scaling",
            "10",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--admin-url",
            admin_url,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        timeout=300,
    )

    result = json.loads(out.read_text())
    server_is_local = local_postgres_pid(admin_url) is not None
    assert {"cores", "cpu_model", "postgresql_version"} <= set(result["machine"])
    assert result["synthetic"]["studies"] == 10
    for name in ("short", "long"):
        run = result["runs"][name]
        assert run["studies"] == 10
        assert run["studies_per_second"] > 0
        assert run["peak_rss_bytes"] > 0
        assert {"raw__clinicaltrials_gov", "core__trials"} <= set(run["steps"])
        # What the servers spent: PostgreSQL's exactly where it runs on this machine (and its
        # processes can be read), the replay server's few milliseconds maybe 0 in the
        # kernel's clock ticks.
        assert (run["postgres_cpu_seconds"] is not None) == server_is_local
        assert run["postgres_cpu_seconds"] is None or run["postgres_cpu_seconds"] > 0
        assert run["replay_cpu_seconds"] is None or run["replay_cpu_seconds"] >= 0
        assert result["pipeline_only"][name]["seconds"] > 0
    noop = result["noop_rerun"]
    assert noop["studies"] == 10 and noop["wall_seconds"] > 0
    # Nothing changed at the source: raw and core rows stay put (the per-day fetch record in
    # ops.partition_fetches is rewritten by design).
    assert not [t for t in noop["rows_rewritten_by_table"] if not t.startswith("ops.")]
    assert noop["data_rows_rewritten"] == 0
    # The whole source, enrichment included: its re-run rewrites nothing either.
    whole = result["whole_source"]
    assert whole["first"]["studies"] == whole["noop_rerun"]["studies"] == 10
    assert {"enriched__site_geocodes", "enriched__trial_features"} <= set(whole["first"]["steps"])
    assert not [t for t in whole["rows_rewritten_by_table"] if not t.startswith("ops.")]
    assert [p["size"] for p in result["scaling"]] == [10]
    assert result["scaling"][0]["studies_per_second"] > 0
    measurements = [row["measurement"] for row in result["table"]]
    for expected in (
        "2 days: end to end",
        "2 days: peak RSS",
        "peak RSS, 2 days over 2 days",
        "no-op re-run of 2 days: time",
        "no-op re-run of 2 days: data rows rewritten (every schema but ops)",
        "2 days, whole source: end to end",
        "no-op re-run of 2 days, whole source: time",
        "scaling: largest deviation from the mean rate",
    ):
        assert expected in measurements
    short, noop = result["runs"]["short"], result["noop_rerun"]
    for expected, run in (
        ("2 days: CPU by process", short),
        ("no-op re-run of 2 days: CPU by process", noop),
    ):
        assert (expected in measurements) == (run["postgres_cpu_seconds"] is not None)
    assert all(row["met"] in (True, False) for row in result["table"] if row["target"])


def test_the_local_server_is_found_by_a_process_slow_to_look_its_session_up(
    admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server is found through the process of the session that asked: a session's process
    ends once it is closed, so the lookup must not wait for the close (on a loaded machine it
    came too late now and then, and the server's CPU went missing from the results)."""
    found = local_postgres_pid(admin_url)

    class SlowProcess(psutil.Process):
        def __init__(self, pid: int | None = None) -> None:
            time.sleep(0.1)  # descheduled for a moment
            super().__init__(pid)

    monkeypatch.setattr(bench._common.psutil, "Process", SlowProcess)
    assert local_postgres_pid(admin_url) == found
