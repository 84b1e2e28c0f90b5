"""Coordinates for the sites of a day's trials: the registry's geoPoint where given, else the
offline gazetteer; one transaction per day, rows rewritten only when they changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

import psycopg

from bioloupe_data.enrichment.geocode import Geocoder, Site
from bioloupe_data.warehouse.upsert import Table, UpsertCounts, upsert_rows

SITE_GEOCODES = Table(
    "enriched",
    "site_geocodes",
    (
        "nct_id",
        "ordinal",
        "latitude",
        "longitude",
        "country_code",
        "region",
        "source",
        "reason",
        "partition_date",
    ),
    ("nct_id", "ordinal"),
)


@dataclass(slots=True)
class GeocodedDay:
    day: date
    sites: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    by_source: dict[str, int] = field(default_factory=dict)
    unplaced: int = 0

    @property
    def rows(self) -> int:
        return self.sites


def geocode_days(
    conn: psycopg.Connection,
    geocoder: Geocoder,
    days: Iterable[date],
    *,
    on_day: Callable[[GeocodedDay], None] | None = None,
) -> list[GeocodedDay]:
    results = []
    for day in days:
        with conn.transaction():
            result = _geocode_day(conn, geocoder, day)
        results.append(result)
        if on_day:
            on_day(result)
    return results


def _geocode_day(conn: psycopg.Connection, geocoder: Geocoder, day: date) -> GeocodedDay:
    sites = conn.execute(
        """
        SELECT s.nct_id, s.ordinal, s.city, s.state, s.zip, s.country, s.latitude, s.longitude
        FROM core.trial_sites s JOIN core.trials t USING (nct_id)
        WHERE t.partition_date = %s ORDER BY s.nct_id, s.ordinal
        """,
        (day,),
    ).fetchall()
    result = GeocodedDay(day, sites=len(sites))
    if not sites:
        return result
    rows = []
    for nct_id, ordinal, city, state, zip_code, country, lat, lon in sites:
        found = geocoder.geocode(Site(city, state, zip_code, country, lat, lon))
        source = found.source or "none"
        result.by_source[source] = result.by_source.get(source, 0) + 1
        result.unplaced += not found.found
        rows.append(
            (
                nct_id,
                ordinal,
                found.latitude,
                found.longitude,
                found.country_code,
                found.region,
                found.source,
                found.reason or (None if found.found else "not_found"),
                day,
            )
        )
    result.counts = upsert_rows(conn, SITE_GEOCODES, rows)
    return result
