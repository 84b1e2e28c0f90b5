"""Trial features (tumor area, biomarkers, line of therapy, combination partners) for the
trials of a day, by rules and then, where they leave gaps, an LLM; one transaction per day,
rows rewritten only when they changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bioloupe_data.enrichment.llm import LlmStatus, StructuredExtractor
from bioloupe_data.enrichment.trial_features import (
    TRIAL_FEATURE_COLUMNS,
    TrialFeatures,
    TrialText,
    extract_features,
    to_row,
)
from bioloupe_data.enrichment.trial_features_llm import llm_payload, merge_answer, needs_llm
from bioloupe_data.warehouse.upsert import Table, UpsertCounts, upsert_rows

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


TRIAL_FEATURES = Table(
    "enriched", "trial_features", (*TRIAL_FEATURE_COLUMNS, "partition_date"), ("nct_id",)
)
_SOURCES = TRIAL_FEATURE_COLUMNS.index("value_sources")


@dataclass(slots=True)
class FeaturesDay:
    day: date
    trials: int = 0
    unresolved: int = 0
    by_llm: int = 0
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
    extractor: StructuredExtractor | None = None,
    on_day: Callable[[FeaturesDay], None] | None = None,
) -> list[FeaturesDay]:
    results = []
    for day in days:
        with conn.transaction():
            result = _extract_day(conn, day, extractor)
        results.append(result)
        if on_day:
            on_day(result)
    return results


def _ask(extractor: StructuredExtractor, text: TrialText, rules: TrialFeatures) -> TrialFeatures:
    outcome = extractor.extract(llm_payload(text))
    if outcome.status not in (LlmStatus.CALLED, LlmStatus.CACHED) or outcome.value is None:
        return rules
    return merge_answer(rules, outcome.value, extractor.model, extractor.prompt_version)


def _row(features: TrialFeatures, day: date) -> tuple[Any, ...]:
    row = list(to_row(features))
    row[_SOURCES] = Jsonb(row[_SOURCES])
    return (*row, day)


def _extract_day(
    conn: psycopg.Connection, day: date, extractor: StructuredExtractor | None
) -> FeaturesDay:
    result = FeaturesDay(day)
    rows: list[tuple[Any, ...]] = []
    ruled = [(text, extract_features(text)) for text in trial_texts(conn, day)]
    asked = {t.nct_id for t, f in ruled if extractor is not None and needs_llm(t, f)}
    if extractor is not None and asked:
        extractor.prefetch(llm_payload(t) for t, _ in ruled if t.nct_id in asked)
    for text, features in ruled:
        if extractor is not None and text.nct_id in asked:
            features = _ask(extractor, text, features)
            result.by_llm += features.extracted_by != "rules"
        result.unresolved += features.unresolved
        rows.append(_row(features, day))
    result.trials = len(rows)
    if not rows:
        return result
    result.counts = upsert_rows(conn, TRIAL_FEATURES, rows)
    return result
