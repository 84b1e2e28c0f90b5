"""Trial features (tumor area, biomarkers, line of therapy, combination partners) for the
trials of a day, by rules; one transaction per day, rows rewritten only when they changed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import psycopg

from bioloupe_data.enrichment.llm import LlmPrompt, LlmStatus, StructuredExtractor
from bioloupe_data.enrichment.trial_features import (
    RULES_VERSION,
    TRIAL_FEATURE_COLUMNS,
    TUMOR_AREAS,
    TrialFeatures,
    TrialText,
    extract_features,
    to_row,
)
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
TRIAL_FEATURES_PROMPT = LlmPrompt(
    version="trial-tumor-area-v1",
    system=(
        "You assign oncology clinical trials to tumor areas. Given a trial's titles, conditions "
        "and MeSH terms, answer with every tumor area it studies, from the allowed list only; "
        "an empty list when it studies no specific area (e.g. any solid tumor)."
    ),
    schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["tumor_areas"],
        "properties": {
            "tumor_areas": {"type": "array", "items": {"type": "string", "enum": list(TUMOR_AREAS)}}
        },
    },
)
# Only trials about cancer are worth a question when the rules found no area.
_CANCER_WORDS = re.compile(
    r"cancer|tumou?r|carcinom|neoplas|malignan|lymphoma|leuka?emia|myeloma|melanoma|sarcoma|"
    r"oncolog|metasta",
    re.IGNORECASE,
)


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


def _about_cancer(text: TrialText) -> bool:
    fields = [text.brief_title, text.official_title, *text.conditions, *text.mesh_terms]
    return any(_CANCER_WORDS.search(value) for value in fields if value)


def _ask(extractor: StructuredExtractor, text: TrialText, rules: TrialFeatures) -> TrialFeatures:
    """The LLM's tumor areas where the rules found none; the rules' other features stay."""
    outcome = extractor.extract(
        {
            "brief_title": text.brief_title,
            "official_title": text.official_title,
            "conditions": list(text.conditions),
            "mesh_terms": list(text.mesh_terms),
        }
    )
    areas = (outcome.value or {}).get("tumor_areas") or []
    if outcome.status not in (LlmStatus.CALLED, LlmStatus.CACHED) or not areas:
        return rules
    return replace(
        rules,
        tumor_areas=tuple(sorted(set(areas) & set(TUMOR_AREAS))),
        unresolved=False,
        extracted_by=f"llm:{extractor.model}",
        rules_version=f"{RULES_VERSION}+{TRIAL_FEATURES_PROMPT.version}",
    )


def _extract_day(
    conn: psycopg.Connection, day: date, extractor: StructuredExtractor | None
) -> FeaturesDay:
    result = FeaturesDay(day)
    rows: list[tuple[Any, ...]] = []
    for text in trial_texts(conn, day):
        features = extract_features(text)
        if features.unresolved and extractor is not None and _about_cancer(text):
            features = _ask(extractor, text, features)
            result.by_llm += features.extracted_by != "rules"
        result.unresolved += features.unresolved
        rows.append((*to_row(features), day))
    result.trials = len(rows)
    if not rows:
        return result
    result.counts = upsert_rows(conn, TRIAL_FEATURES, rows)
    return result
