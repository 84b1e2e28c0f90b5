"""Small analytics rollups as pandas DataFrames: sponsor pipelines (lead sponsor × drug × phase)
and drug × phase, per tumor area. The project's pandas I/O manager stores them."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import psycopg
from psycopg import sql

from bioloupe_data.pipelines.landscape import ONGOING_STATUSES, SPONSOR_KEYS, stage_sponsor_keys

# Registry phases from least to most advanced; a phase not listed ranks lowest.
PHASE_ORDER = (
    "unspecified",
    "NA",
    "EARLY_PHASE1",
    "PHASE1",
    "PHASE1/PHASE2",
    "PHASE2",
    "PHASE2/PHASE3",
    "PHASE3",
    "PHASE4",
)
SPONSOR_PIPELINE_COLUMNS = [
    "tumor_area",
    "sponsor_key",
    "drug_key",
    "phase",
    "sponsor_name",
    "sponsor_class",
    "drug_name",
    "modality",
    "trials",
    "ongoing_trials",
    "first_start_date",
    "highest_phase",
]
DRUG_PHASE_COLUMNS = [
    "tumor_area",
    "drug_key",
    "phase",
    "drug_name",
    "modality",
    "trials",
    "ongoing_trials",
    "sponsors",
    "first_start_date",
    "highest_phase",
]

_SPONSOR_PIPELINES = sql.SQL(
    """
    WITH trials AS (
        SELECT t.nct_id, a.tumor_area, coalesce(t.phase, 'unspecified') AS phase,
               t.overall_status = ANY(%(ongoing)s) AS ongoing, t.start_date
        FROM core.trials t
        JOIN enriched.trial_features tf USING (nct_id)
        CROSS JOIN LATERAL unnest(tf.tumor_areas) AS a (tumor_area)
        WHERE t.study_type = 'INTERVENTIONAL'
          AND t.overall_status IS DISTINCT FROM 'WITHDRAWN'
          AND a.tumor_area = ANY(%(areas)s)
    ),
    leads AS (
        SELECT DISTINCT ON (s.nct_id) s.nct_id, k.sponsor_key, s.name
        FROM core.trial_sponsors s JOIN {sponsor_keys} k ON k.name = s.name
        WHERE s.lead_or_collaborator = 'lead'
        ORDER BY s.nct_id, s.ordinal
    ),
    grouped AS (
        SELECT x.tumor_area, l.sponsor_key, d.drug_key, x.phase,
               coalesce(min(sp.name), min(l.name)) AS sponsor_name,
               coalesce(min(pp.sponsor_class), 'unknown') AS sponsor_class,
               min(dr.name) AS drug_name,
               coalesce(min(dp.modality), 'unknown') AS modality,
               count(*) AS trials,
               count(*) FILTER (WHERE x.ongoing) AS ongoing_trials,
               min(x.start_date) AS first_start_date
        FROM trials x
        JOIN leads l USING (nct_id)
        JOIN enriched.trial_drugs d USING (nct_id)
        JOIN enriched.drugs dr USING (drug_key)
        LEFT JOIN enriched.drug_profiles dp USING (drug_key)
        LEFT JOIN enriched.sponsors sp ON sp.sponsor_key = l.sponsor_key
        LEFT JOIN enriched.sponsor_profiles pp ON pp.sponsor_key = l.sponsor_key
        GROUP BY x.tumor_area, l.sponsor_key, d.drug_key, x.phase
    )
    SELECT *, (array_agg(phase) OVER (
                   PARTITION BY tumor_area, sponsor_key, drug_key
                   ORDER BY coalesce(array_position(%(order)s, phase), 0) DESC, phase DESC))[1]
              AS highest_phase
    FROM grouped
    ORDER BY tumor_area, sponsor_key, drug_key, phase
    """
)


def sponsor_pipelines(conn: psycopg.Connection, areas: Iterable[str]) -> pd.DataFrame:
    """Per tumor area, lead sponsor, drug and phase: the interventional (not withdrawn) trials
    the sponsor leads that test the drug."""
    stage_sponsor_keys(conn)
    cursor = conn.execute(
        _SPONSOR_PIPELINES.format(sponsor_keys=SPONSOR_KEYS),
        {
            "areas": sorted(set(areas)),
            "ongoing": list(ONGOING_STATUSES),
            "order": list(PHASE_ORDER),
        },
    )
    names = [column.name for column in cursor.description or []]
    frame = pd.DataFrame(cursor.fetchall(), columns=names)
    return frame[SPONSOR_PIPELINE_COLUMNS]


def highest_phase(phases: pd.Series) -> str:
    rank = {phase: i for i, phase in enumerate(PHASE_ORDER)}
    return max(phases, key=lambda phase: (rank.get(phase, -1), phase))


def drug_phases(pipelines: pd.DataFrame) -> pd.DataFrame:
    """Drug × phase per tumor area, summed over lead sponsors (a trial has one lead sponsor, so
    no trial counts twice)."""
    if pipelines.empty:
        return pd.DataFrame(columns=DRUG_PHASE_COLUMNS)
    starts = pipelines.assign(first_start_date=pd.to_datetime(pipelines["first_start_date"]))
    frame = starts.groupby(["tumor_area", "drug_key", "phase"], as_index=False).agg(
        drug_name=("drug_name", "first"),
        modality=("modality", "first"),
        trials=("trials", "sum"),
        ongoing_trials=("ongoing_trials", "sum"),
        sponsors=("sponsor_key", "nunique"),
        first_start_date=("first_start_date", "min"),
    )
    frame["first_start_date"] = frame["first_start_date"].dt.date
    frame["highest_phase"] = frame.groupby(["tumor_area", "drug_key"])["phase"].transform(
        highest_phase
    )
    return frame[DRUG_PHASE_COLUMNS]
