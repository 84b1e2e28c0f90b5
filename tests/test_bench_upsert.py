"""`python -m bench.upsert` on a few hundred rows, so the benchmark cannot rot: every contender
loads the same rows into its own throwaway database, the contents match, the JSON is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("empty", "unchanged", "changed")


def run_bench(admin_url: str, out: Path, *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.upsert", "--admin-url", admin_url, "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(out.read_text())


def test_every_contender_ends_with_the_same_table(admin_url: str, tmp_path: Path) -> None:
    report = run_bench(admin_url, tmp_path / "upsert.json", "--rows", "300")

    assert set(report["results"]) == {"loop", "executemany", "pandas", "dlt", "engine"}
    verification = report["verification"]
    assert verification["contents_identical"], verification["problems"]
    assert verification["only_changes_written"], verification["problems"]
    assert report["changed_rows"] == 30
    for name, result in report["results"].items():
        for scenario in SCENARIOS:
            assert result[scenario]["checksum"] == verification["checksums"][scenario], name
            assert result[scenario]["checksum"].startswith("300:")
            assert result[scenario]["seconds"] > 0
    engine = report["results"]["engine"]
    assert engine["unchanged"]["writes"] == {
        "inserted": 0,
        "updated": 0,
        "deleted": 0,
        "hot_updated": 0,
    }
    assert engine["changed"]["writes"]["updated"] == 30
    # delete-insert rewrites every row it is given, changed or not
    assert report["results"]["dlt"]["unchanged"]["writes"]["deleted"] == 300
    assert {t["contender"] for t in report["targets"]} == {"loop", "pandas", "executemany", "dlt"}
    assert report["environment"]["executemany_pipelined"] is True


def test_loop_can_be_timed_on_a_sample(admin_url: str, tmp_path: Path) -> None:
    report = run_bench(
        admin_url,
        tmp_path / "upsert.json",
        "--rows",
        "200",
        "--loop-rows",
        "50",
        "--contenders",
        "loop,engine",
    )

    loop = report["results"]["loop"]
    assert all(loop[s]["extrapolated_from_rows"] == 50 for s in SCENARIOS)
    assert report["verification"]["contents_identical"], report["verification"]["problems"]
    assert report["verification"]["only_changes_written"], report["verification"]["problems"]
