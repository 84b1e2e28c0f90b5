"""`python -m bench` (`make bench`): every benchmark, one after another, each printing its table
and writing `bench/results/NAME.json`.

    .venv/bin/python -m bench [--only NAME,...] [--smoke --out-dir DIR]

`--smoke` runs each on a tiny input (seconds, not hours) and writes into `--out-dir`: the path
the test suite takes so that no benchmark rots. The full run takes about 80 minutes on 2
cores, half of it `daemon_backfill`'s one run per partition at 365 partitions (1,096 of them,
`--per-partition-max` lifted, would add about 100 minutes).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import (
    backfill,
    daemon_backfill,
    geocode,
    landscape,
    latency,
    pubmed,
    sensor,
    throughput,
    upsert,
)

Main = Callable[[list[str] | None], object]
BENCHMARKS: dict[str, Main] = {
    "throughput": throughput.main,
    "latency": latency.main,
    "pubmed": pubmed.main,
    "upsert": upsert.main,
    "sensor": sensor.main,
    "landscape": landscape.main,
    "backfill": backfill.main,
    "geocode": geocode.main,
    "daemon_backfill": daemon_backfill.main,
}
FULL: dict[str, list[str]] = {"daemon_backfill": ["--per-partition-max", "365"]}
SMOKE: dict[str, list[str]] = {
    "throughput": [
        *("--per-day", "5", "--short-days", "2", "--long-days", "2", "--scaling", "10"),
    ],
    "latency": ["--per-day", "5", "--days", "2", "--latency", "0.05", "--rounds", "1"],
    "pubmed": ["--per-day", "20", "--days", "2"],
    "upsert": ["--rows", "300"],
    "sensor": ["--known", "200", "--new", "20"],
    "landscape": ["--range-days", "3", "--days", "3", "--per-day", "4"],
    "backfill": ["--days", "3", "--per-day", "3"],
    "geocode": [],
    "daemon_backfill": ["--sizes", "3", "--per-day", "2"],
}


def arguments(name: str, smoke: bool, out_dir: Path | None) -> list[str]:
    chosen = list((SMOKE if smoke else FULL).get(name, []))
    if out_dir is not None:
        chosen += ["--out", str(out_dir / f"{name}.json")]
    if (
        smoke
        and name in ("throughput", "latency", "pubmed", "daemon_backfill")
        and out_dir is not None
    ):
        chosen += ["--cache-dir", str(out_dir / "cache")]
    return chosen


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, to check the path")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: bench/results")
    args = parser.parse_args(argv)
    names = [name for name in args.only.split(",") if name.strip()]
    if unknown := set(names) - set(BENCHMARKS):
        parser.error(f"unknown benchmarks {sorted(unknown)}; known: {', '.join(BENCHMARKS)}")
    out_dir = args.out_dir
    if args.smoke and out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
    for name in names:
        BENCHMARKS[name](arguments(name, args.smoke, out_dir))


if __name__ == "__main__":
    main()
