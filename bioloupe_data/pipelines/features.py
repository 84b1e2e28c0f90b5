"""Trial features (tumor area, biomarkers, line of therapy, combination partners) for the
trials of a day, by rules; one transaction per day, rows rewritten only when they changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg

from bioloupe_data.enrichment.trial_features import (
    TRIAL_FEATURE_COLUMNS,
    TrialText,
    extract_features,
    to_row,
)
from bioloupe_data.warehouse.upsert import UpsertCounts, upsert_rows

# One row per trial of the day with the text the rules read, gathered in one statement.
_TRIAL_TEXT = """
SELECT t.nct_id, t.brief_title, t.official_title, t.phase,
  coalesce((SELECT array_agg(c.name ORDER BY c.ordinal) FROM core.trial_conditions c
            WHERE c.nct_id = t.nct_id), '{}'),
  coalesce((SELECT array_agg(k.name ORDER BY k.ordinal) FROM core.trial_keywords k
            WHERE k.nct_id = t.nct_id), '{}'),
  coalesce((SELECT array_agg(b.mesh_term ORDER BY b.ordinal) FROM core.trial_browse_conditions b
            WHERE b.nct_id = t.nct_id), '{}'),
  (SELECT string_agg(e.criteria, E'\\n' ORDER BY e.ordinal) FROM core.trial_eligibilities e
    WHERE e.nct_id = t.nct_id),
  coalesce((SELECT json_agg(json_build_array(a.title, a.group_type, a.description)
                            ORDER BY a.ordinal)
            FROM core.trial_arms a WHERE a.nct_id = t.nct_id), '[]'),
  coalesce((SELECT json_agg(json_build_array(i.intervention_type, i.name, i.arm_group_labels)
                            ORDER BY i.ordinal)
            FROM core.trial_interventions i WHERE i.nct_id = t.nct_id), '[]')
FROM core.trials t WHERE t.partition_date = %s ORDER BY t.nct_id
"""


@dataclass(slots=True)
class FeaturesDay:
    day: date
    trials: int = 0
    unresolved: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)

    @property
    def rows(self) -> int:
        return self.trials


def trial_texts(conn: psycopg.Connection, day: date) -> list[TrialText]:
    texts = []
    for row in conn.execute(_TRIAL_TEXT, (day,)).fetchall():
        nct_id, brief, official, phase, conditions, keywords, mesh, criteria, arms, drugs = row
        texts.append(
            TrialText(
                nct_id=nct_id,
                brief_title=brief,
                official_title=official,
                conditions=conditions,
                keywords=keywords,
                mesh_terms=mesh,
                eligibility=criteria,
                arms=[tuple(arm) for arm in arms],
                interventions=[(kind, name) for kind, name, _ in drugs],
                phase=phase,
                arm_interventions=[
                    (label, name) for _, name, labels in drugs if name for label in labels or []
                ],
            )
        )
    return texts


def extract_days(
    conn: psycopg.Connection,
    days: Iterable[date],
    *,
    on_day: Callable[[FeaturesDay], None] | None = None,
) -> list[FeaturesDay]:
    results = []
    for day in days:
        with conn.transaction():
            result = _extract_day(conn, day)
        results.append(result)
        if on_day:
            on_day(result)
    return results


def _extract_day(conn: psycopg.Connection, day: date) -> FeaturesDay:
    result = FeaturesDay(day)
    rows: list[tuple[Any, ...]] = []
    for text in trial_texts(conn, day):
        features = extract_features(text)
        result.unresolved += features.unresolved
        rows.append((*to_row(features), day))
    result.trials = len(rows)
    if not rows:
        return result
    columns = (*TRIAL_FEATURE_COLUMNS, "partition_date")
    result.counts = upsert_rows(conn, "trial_features", "nct_id", columns, rows)
    return result
