"""Coordinates for the sites of a day's trials: the registry's geoPoint where given, else the
offline gazetteer; one transaction per day, rows rewritten only when they changed. A site whose
address and point are what its row was geocoded from, by the same geocoder version, is not
geocoded again."""

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
        "input_digest",
    ),
    ("nct_id", "ordinal"),
)
# The day's sites with what geocoding reads and its digest under the geocoder's version
# (`%(version)s`); the points as the hex of their binary form, so that no session setting
# rounds them. A site whose stored row is of the same day and holds the digest would be placed
# the same and is left out. Every row carries the count of all the day's sites, from the same
# snapshot; with nothing to geocode that count is the only row, its other columns NULL.
_CHANGED_SITES = """
WITH sites AS (
  SELECT s.nct_id, s.ordinal, s.city, s.state, s.zip, s.country, s.latitude, s.longitude,
    sha256(%(version)s::bytea || convert_to(json_build_array(s.city, s.state, s.zip, s.country,
      encode(float8send(s.latitude), 'hex'), encode(float8send(s.longitude), 'hex'))::text,
      'UTF8')) AS digest
  FROM core.trial_sites s JOIN core.trials t USING (nct_id)
  WHERE t.partition_date = %(day)s
), changed AS (
  SELECT x.* FROM sites x LEFT JOIN enriched.site_geocodes g USING (nct_id, ordinal)
  WHERE NOT coalesce(g.partition_date = %(day)s AND g.input_digest = x.digest, false)
)
SELECT n.sites, c.nct_id, c.ordinal, c.city, c.state, c.zip, c.country, c.latitude,
  c.longitude, c.digest
FROM (SELECT count(*) AS sites FROM sites) AS n LEFT JOIN changed AS c ON true
ORDER BY c.nct_id, c.ordinal
"""


@dataclass(slots=True)
class GeocodedDay:
    """A day's sites (`sites`), of which `geocoded` were placed again: the others' inputs were
    unchanged since their row was written, and they count as unchanged. `by_source` and
    `unplaced` are among the geocoded."""

    day: date
    sites: int = 0
    geocoded: int = 0
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
    version = f"{geocoder.version}\0".encode()  # read once: it looks the gazetteer's release up
    for day in days:
        with conn.transaction():
            result = _geocode_day(conn, geocoder, version, day)
        results.append(result)
        if on_day:
            on_day(result)
    return results


def _geocode_day(
    conn: psycopg.Connection, geocoder: Geocoder, version: bytes, day: date
) -> GeocodedDay:
    found_rows = conn.execute(_CHANGED_SITES, {"day": day, "version": version}).fetchall()
    result = GeocodedDay(day, sites=found_rows[0][0] if found_rows else 0)
    rows = []
    for _, nct_id, ordinal, city, state, zip_code, country, lat, lon, digest in found_rows:
        if nct_id is None:
            continue
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
                digest,
            )
        )
    result.geocoded = len(rows)
    if rows:
        result.counts = upsert_rows(conn, SITE_GEOCODES, rows)
    result.counts.unchanged += result.sites - result.geocoded
    return result
