"""Coordinates for the sites of a day's trials: the registry's geoPoint where given, else the
offline gazetteer; one transaction per day, rows rewritten only when they changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

import psycopg

from bioloupe_data.enrichment.geocode import Geocoder, Site
from bioloupe_data.warehouse.upsert import UpsertCounts

COLUMNS = (
    "nct_id",
    "ordinal",
    "latitude",
    "longitude",
    "country_code",
    "region",
    "source",
    "reason",
    "partition_date",
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
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS stg_site_geocodes ON COMMIT DELETE ROWS AS "
        "SELECT nct_id, ordinal, latitude, longitude, country_code, region, source, reason, "
        "partition_date FROM enriched.site_geocodes WITH NO DATA"
    )
    with conn.cursor().copy(
        "COPY stg_site_geocodes (nct_id, ordinal, latitude, longitude, country_code, region, "
        "source, reason, partition_date) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)
    returned = conn.execute(
        """
        INSERT INTO enriched.site_geocodes AS g (nct_id, ordinal, latitude, longitude,
            country_code, region, source, reason, partition_date)
        SELECT * FROM stg_site_geocodes ORDER BY nct_id, ordinal
        ON CONFLICT (nct_id, ordinal) DO UPDATE SET
            latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude,
            country_code = EXCLUDED.country_code, region = EXCLUDED.region,
            source = EXCLUDED.source, reason = EXCLUDED.reason,
            partition_date = EXCLUDED.partition_date, updated_at = now()
        WHERE (g.latitude, g.longitude, g.country_code, g.region, g.source, g.reason,
               g.partition_date)
           IS DISTINCT FROM (EXCLUDED.latitude, EXCLUDED.longitude, EXCLUDED.country_code,
               EXCLUDED.region, EXCLUDED.source, EXCLUDED.reason, EXCLUDED.partition_date)
        RETURNING (g.xmax = 0)
        """
    ).fetchall()
    inserted = sum(1 for (was_insert,) in returned if was_insert)
    result.counts = UpsertCounts(inserted, len(returned) - inserted, len(rows) - len(returned))
    return result
