"""The landscape of tumor areas over days (`analytics.landscape`), computed set-based in SQL.

For a range of days and a set of tumor areas one statement computes every (day, area,
dimension, category) row. A per-day join of days to trials (and their drugs, sponsors and
sites) would grow with trial-days × sites; instead each counted thing contributes an interval
of days, +1 where it starts and -1 the day after it ends, and a running sum over
`generate_series` of the range's days gives the count on every day. Distinct drugs and sponsors
count once while any of their trials is active: their intervals are merged per area first.

The range's rows are then replaced in the same transaction: rows no longer computed are
deleted, new ones inserted, changed ones updated, identical ones left unwritten, so a
recomputation that changes nothing writes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg
from psycopg import sql

from bioloupe_data.enrichment.sponsors import sponsor_key
from bioloupe_data.warehouse.upsert import Table, UpsertCounts, copy_rows, create_staging

LANDSCAPE = Table(
    "analytics",
    "landscape",
    ("day", "tumor_area", "dimension", "category", "trial_count", "entity_count"),
    ("tumor_area", "day", "dimension", "category"),
)
# Statuses of trials the registry lists as still running: active until today whatever their
# anticipated completion date says.
ONGOING_STATUSES = (
    "NOT_YET_RECRUITING",
    "RECRUITING",
    "ENROLLING_BY_INVITATION",
    "ACTIVE_NOT_RECRUITING",
    "SUSPENDED",
)
# Days per statement and transaction: a multi-year range commits (and is reported) a chunk at
# a time, and one statement's working set stays bounded.
CHUNK_DAYS = 366
# Session table mapping every sponsor spelling in core.trial_sponsors to its key in
# enriched.sponsors (the key is derived in Python, `sponsors.sponsor_key`).
SPONSOR_KEYS = sql.Identifier("landscape_sponsor_keys")

_LANDSCAPE = sql.SQL(
    """
    INSERT INTO {staging} (day, tumor_area, dimension, category, trial_count, entity_count)
    WITH
    -- Interventional, not withdrawn trials of the areas whose active days overlap the range, their
    -- active days [f, t] clipped to it (LEAST ignores NULL: a trial still running ends with it).
    active AS (
        SELECT t.nct_id, a.tumor_area,
               coalesce(t.phase, 'unspecified') AS phase,
               coalesce(t.overall_status, 'unspecified') AS status,
               greatest(s.active_from, %(start)s::date) AS f,
               least(s.active_to, %(end)s::date) AS t
        FROM core.trials t
        JOIN enriched.trial_features tf USING (nct_id)
        CROSS JOIN LATERAL unnest(tf.tumor_areas) AS a (tumor_area)
        CROSS JOIN LATERAL (
            SELECT coalesce(t.start_date, t.study_first_posted_date) AS active_from,
                   CASE WHEN t.overall_status = ANY(%(ongoing)s) THEN NULL
                        ELSE coalesce(t.completion_date, t.primary_completion_date,
                                      t.last_update_posted_date)
                   END AS active_to
        ) AS s
        WHERE t.study_type = 'INTERVENTIONAL'
          AND t.overall_status IS DISTINCT FROM 'WITHDRAWN'
          AND a.tumor_area = ANY(%(areas)s)
          AND s.active_from <= %(end)s::date
          AND (s.active_to IS NULL OR s.active_to >= greatest(s.active_from, %(start)s::date))
    ),
    drug_links AS (
        SELECT DISTINCT x.tumor_area, x.nct_id, x.f, x.t, d.drug_key,
               coalesce(p.modality, 'unknown') AS category
        FROM active x
        JOIN enriched.trial_drugs d USING (nct_id)
        LEFT JOIN enriched.drug_profiles p USING (drug_key)
    ),
    sponsor_links AS (
        SELECT DISTINCT x.tumor_area, x.nct_id, x.f, x.t, k.sponsor_key,
               coalesce(p.sponsor_class, 'unknown') AS category
        FROM active x
        JOIN core.trial_sponsors s USING (nct_id)
        JOIN {sponsor_keys} k ON k.name = s.name
        LEFT JOIN enriched.sponsor_profiles p USING (sponsor_key)
    ),
    entity_spans AS (
        SELECT tumor_area, 'modality' AS dimension, category, drug_key AS entity, f, t
        FROM drug_links
        UNION ALL
        SELECT tumor_area, 'sponsor_class', category, sponsor_key, f, t FROM sponsor_links
    ),
    entity_islands AS (  -- a new island starts where no earlier span reaches the day before
        SELECT *, sum(starts) OVER (PARTITION BY tumor_area, dimension, category, entity
                                    ORDER BY f, t ROWS UNBOUNDED PRECEDING) AS island
        FROM (
            SELECT *, CASE WHEN f <= max(t) OVER (
                               PARTITION BY tumor_area, dimension, category, entity
                               ORDER BY f, t ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
                           ) + 1 THEN 0 ELSE 1 END AS starts
            FROM entity_spans
        ) AS marked
    ),
    intervals AS (  -- (trials, entities) each interval adds on each of its days
        SELECT tumor_area, 'total' AS dimension, 'all' AS category, f, t,
               1 AS trials, 1 AS entities
        FROM active
        UNION ALL SELECT tumor_area, 'phase', phase, f, t, 1, 1 FROM active
        UNION ALL SELECT tumor_area, 'status', status, f, t, 1, 1 FROM active
        UNION ALL
        SELECT tumor_area, 'modality', category, f, t, 1, 0
        FROM (SELECT DISTINCT tumor_area, category, nct_id, f, t FROM drug_links) AS x
        UNION ALL
        SELECT tumor_area, 'sponsor_class', category, f, t, 1, 0
        FROM (SELECT DISTINCT tumor_area, category, nct_id, f, t FROM sponsor_links) AS x
        UNION ALL
        SELECT tumor_area, dimension, category, min(f), max(t), 0, 1
        FROM entity_islands
        GROUP BY tumor_area, dimension, category, entity, island
        UNION ALL
        SELECT x.tumor_area, 'region', coalesce(g.region, 'unknown'), x.f, x.t, 1, count(*)
        FROM active x
        JOIN core.trial_sites s USING (nct_id)
        LEFT JOIN enriched.site_geocodes g USING (nct_id, ordinal)
        GROUP BY x.tumor_area, x.nct_id, coalesce(g.region, 'unknown'), x.f, x.t
    ),
    changes AS (
        SELECT tumor_area, dimension, category, day, sum(trials) AS trials,
               sum(entities) AS entities
        FROM (
            SELECT tumor_area, dimension, category, f AS day, trials, entities FROM intervals
            UNION ALL
            SELECT tumor_area, dimension, category, t + 1, -trials, -entities
            FROM intervals WHERE t < %(end)s::date
        ) AS steps
        GROUP BY tumor_area, dimension, category, day
    ),
    series AS (
        SELECT k.tumor_area, k.dimension, k.category, d.day::date AS day,
               sum(coalesce(c.trials, 0)) OVER w AS trial_count,
               sum(coalesce(c.entities, 0)) OVER w AS entity_count
        FROM (SELECT DISTINCT tumor_area, dimension, category FROM changes) AS k
        CROSS JOIN generate_series(%(start)s::date, %(end)s::date, interval '1 day') AS d (day)
        LEFT JOIN changes c ON c.tumor_area = k.tumor_area AND c.dimension = k.dimension
                           AND c.category = k.category AND c.day = d.day::date
        WINDOW w AS (PARTITION BY k.tumor_area, k.dimension, k.category ORDER BY d.day
                     ROWS UNBOUNDED PRECEDING)
    )
    SELECT day, tumor_area, dimension, category, trial_count, entity_count
    FROM series WHERE trial_count > 0
    """
)

# EXCEPT (hashed or sorted) rather than NOT EXISTS: freshly written rows have no statistics
# yet, and a nested-loop anti join over a year of an area would compare every pair.
_DELETE_STALE = sql.SQL(
    """
    DELETE FROM {target} AS l
    USING (
        SELECT tumor_area, day, dimension, category FROM {target}
        WHERE tumor_area = ANY(%(areas)s) AND day BETWEEN %(start)s AND %(end)s
        EXCEPT
        SELECT tumor_area, day, dimension, category FROM {staging}
    ) AS gone
    WHERE l.tumor_area = gone.tumor_area AND l.day = gone.day
      AND l.dimension = gone.dimension AND l.category = gone.category
    """
)

_MERGE = sql.SQL(
    """
    WITH written AS (
        INSERT INTO {target} AS l
            (day, tumor_area, dimension, category, trial_count, entity_count)
        SELECT day, tumor_area, dimension, category, trial_count, entity_count
        FROM {staging} ORDER BY tumor_area, day, dimension, category
        ON CONFLICT (tumor_area, day, dimension, category) DO UPDATE
        SET trial_count = EXCLUDED.trial_count, entity_count = EXCLUDED.entity_count,
            computed_at = now()
        WHERE (l.trial_count, l.entity_count)
              IS DISTINCT FROM (EXCLUDED.trial_count, EXCLUDED.entity_count)
        RETURNING (l.xmax = 0) AS inserted
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
           (SELECT count(*) FROM {staging})
    FROM written
    """
)


@dataclass(frozen=True, slots=True)
class LandscapeSlice:
    """Consecutive days × a set of tumor areas: what one statement computes."""

    start: date
    end: date
    areas: tuple[str, ...]

    @property
    def partitions(self) -> int:
        return ((self.end - self.start).days + 1) * len(self.areas)


@dataclass(frozen=True, slots=True)
class LandscapeChunk:
    """A committed slice: its write counts and the rows it now holds."""

    slice: LandscapeSlice
    counts: UpsertCounts
    row_count: int


def plan_slices(
    keys: Iterable[tuple[date, str]], chunk_days: int = CHUNK_DAYS
) -> list[LandscapeSlice]:
    """Group any set of (day, area) partitions into rectangles of consecutive days × areas.

    Areas with the same days share their statements; each run of consecutive days is cut into
    chunks of at most `chunk_days`. A range run (days × areas) is one rectangle.
    """
    days_by_area: dict[str, set[date]] = defaultdict(set)
    for day, area in keys:
        days_by_area[area].add(day)
    areas_by_days: dict[tuple[date, ...], list[str]] = defaultdict(list)
    for area, days in days_by_area.items():
        areas_by_days[tuple(sorted(days))].append(area)
    slices = []
    for days, areas in sorted(areas_by_days.items()):
        for start, end in _runs(days, chunk_days):
            slices.append(LandscapeSlice(start, end, tuple(sorted(areas))))
    return sorted(slices, key=lambda s: (s.start, s.areas))


def _runs(days: Sequence[date], chunk_days: int) -> Iterator[tuple[date, date]]:
    start = previous = days[0]
    for day in days[1:]:
        if day != previous + timedelta(days=1) or (day - start).days >= chunk_days:
            yield start, previous
            start = day
        previous = day
    yield start, previous


def stage_sponsor_keys(conn: psycopg.Connection) -> int:
    """Fill the session table mapping sponsor names to `enriched.sponsors` keys."""
    names = [
        name
        for (name,) in conn.execute(
            "SELECT DISTINCT name FROM core.trial_sponsors WHERE coalesce(name, '') <> ''"
        ).fetchall()
    ]
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (name text PRIMARY KEY, sponsor_key text "
                "NOT NULL)"
            ).format(SPONSOR_KEYS)
        )
        conn.execute(sql.SQL("TRUNCATE {}").format(SPONSOR_KEYS))
        copy_rows(conn, SPONSOR_KEYS, ("name", "sponsor_key"), ((n, sponsor_key(n)) for n in names))
        conn.execute(sql.SQL("ANALYZE {}").format(SPONSOR_KEYS))
    return len(names)


def refresh_slice(conn: psycopg.Connection, piece: LandscapeSlice) -> LandscapeChunk:
    """Recompute one slice and make its stored rows equal to the result, in one transaction.
    Needs `stage_sponsor_keys` earlier in the session."""
    params = {
        "start": piece.start,
        "end": piece.end,
        "areas": list(piece.areas),
        "ongoing": list(ONGOING_STATUSES),
    }
    with conn.transaction():
        staging = create_staging(conn, LANDSCAPE)
        conn.execute(_LANDSCAPE.format(staging=staging, sponsor_keys=SPONSOR_KEYS), params)
        deleted = conn.execute(
            _DELETE_STALE.format(target=LANDSCAPE.ident, staging=staging), params
        ).rowcount
        merged = conn.execute(_MERGE.format(target=LANDSCAPE.ident, staging=staging)).fetchone()
    inserted, updated, staged = merged if merged else (0, 0, 0)
    return LandscapeChunk(
        piece, UpsertCounts(inserted, updated, staged - inserted - updated, deleted), staged
    )


def refresh_landscape(
    conn: psycopg.Connection,
    keys: Iterable[tuple[date, str]],
    *,
    chunk_days: int = CHUNK_DAYS,
    on_chunk: Callable[[LandscapeChunk], None] | None = None,
) -> list[LandscapeChunk]:
    """Recompute the landscape of the given (day, area) partitions, slice by slice, each slice
    committed on its own (then reported to `on_chunk`)."""
    slices = plan_slices(keys, chunk_days)
    if not slices:
        return []
    stage_sponsor_keys(conn)
    chunks = []
    for piece in slices:
        chunk = refresh_slice(conn, piece)
        chunks.append(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    return chunks
