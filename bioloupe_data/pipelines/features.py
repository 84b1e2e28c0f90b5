"""Trial features (tumor area, biomarkers, line of therapy, combination partners) for the
trials of a day, by rules and then, where they leave gaps, an LLM; one transaction per day,
rows rewritten only when they changed. A trial whose text is what its row was derived from, under
the same rules (and prompt), is not derived again."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bioloupe_data.enrichment.llm import LlmStatus, StructuredExtractor
from bioloupe_data.enrichment.trial_features import (
    RULES_VERSION,
    TRIAL_FEATURE_COLUMNS,
    TrialFeatures,
    TrialText,
    extract_features,
    to_row,
)
from bioloupe_data.enrichment.trial_features_llm import llm_payload, merge_answer, needs_llm
from bioloupe_data.warehouse.upsert import Table, UpsertCounts, upsert_rows

# One row per trial of the day with the text the rules read, gathered in one statement, and
# `inputs`, the SHA-256 of that text. Trials whose stored row is of the same day and carries the
# digest of these inputs under the current rules (or rules and LLM prompt) are left out: their
# features would come out the same.
_TRIAL_TEXT = """
WITH texts AS (
  SELECT t.nct_id, t.brief_title, t.official_title, t.phase,
    coalesce((SELECT array_agg(c.name ORDER BY c.ordinal) FROM core.trial_conditions c
              WHERE c.nct_id = t.nct_id), '{}') AS conditions,
    coalesce((SELECT array_agg(k.name ORDER BY k.ordinal) FROM core.trial_keywords k
              WHERE k.nct_id = t.nct_id), '{}') AS keywords,
    coalesce((SELECT array_agg(b.mesh_term ORDER BY b.ordinal)
              FROM core.trial_browse_conditions b WHERE b.nct_id = t.nct_id), '{}') AS mesh,
    (SELECT string_agg(e.criteria, E'\\n' ORDER BY e.ordinal) FROM core.trial_eligibilities e
      WHERE e.nct_id = t.nct_id) AS criteria,
    coalesce((SELECT json_agg(json_build_array(a.title, a.group_type, a.description)
                              ORDER BY a.ordinal)
              FROM core.trial_arms a WHERE a.nct_id = t.nct_id), '[]') AS arms,
    coalesce((SELECT json_agg(json_build_array(i.intervention_type, i.name, i.arm_group_labels)
                              ORDER BY i.ordinal)
              FROM core.trial_interventions i WHERE i.nct_id = t.nct_id), '[]') AS drugs
  FROM core.trials t WHERE t.partition_date = %(day)s
), digested AS (
  SELECT x.*, sha256(convert_to(json_build_array(x.brief_title, x.official_title, x.phase,
    x.conditions, x.keywords, x.mesh, x.criteria, x.arms, x.drugs)::text, 'UTF8')) AS inputs
  FROM texts x
)
SELECT d.nct_id, d.brief_title, d.official_title, d.phase, d.conditions, d.keywords, d.mesh,
  d.criteria, d.arms, d.drugs, d.inputs
FROM digested d LEFT JOIN enriched.trial_features f ON f.nct_id = d.nct_id
WHERE NOT coalesce(f.partition_date = %(day)s AND f.input_digest IN
    (sha256(%(rules)s::bytea || d.inputs), sha256(%(rules_and_llm)s::bytea || d.inputs)), false)
ORDER BY d.nct_id
"""
_DAY_TRIALS = "SELECT count(*) FROM core.trials WHERE partition_date = %s"


TRIAL_FEATURES = Table(
    "enriched",
    "trial_features",
    (*TRIAL_FEATURE_COLUMNS, "partition_date", "input_digest"),
    ("nct_id",),
)
_SOURCES = TRIAL_FEATURE_COLUMNS.index("value_sources")


@dataclass(slots=True)
class FeaturesDay:
    """A day's trials (`trials`), of which `derived` went through the rules again: the others'
    inputs were unchanged since their row was written, and they count as unchanged. `unresolved`
    and `by_llm` are among the derived."""

    day: date
    trials: int = 0
    derived: int = 0
    unresolved: int = 0
    by_llm: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)

    @property
    def rows(self) -> int:
        return self.trials


@dataclass(frozen=True, slots=True)
class _Versions:
    """What a row's features depend on besides the trial's text: the rules alone, or the rules
    and the LLM prompt that filled what they left open. Each is a prefix of the input digest."""

    rules: bytes
    rules_and_llm: bytes | None

    @classmethod
    def of(cls, extractor: StructuredExtractor | None) -> _Versions:
        rules = f"{RULES_VERSION}\0".encode()
        if extractor is None:
            return cls(rules, None)
        return cls(
            rules, f"{RULES_VERSION}+{extractor.model}+{extractor.prompt_version}\0".encode()
        )


def _changed_trial_texts(
    conn: psycopg.Connection, day: date, versions: _Versions
) -> list[tuple[TrialText, bytes]]:
    """The day's trials whose features must be derived (again), each with its inputs' digest."""
    texts = []
    rows = conn.execute(
        _TRIAL_TEXT,
        {"day": day, "rules": versions.rules, "rules_and_llm": versions.rules_and_llm},
    ).fetchall()
    for row in rows:
        nct_id, brief, official, phase, conditions, keywords, mesh, criteria, arms, drugs = row[:10]
        text = TrialText(
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
        texts.append((text, row[10]))
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


def _ask(
    extractor: StructuredExtractor, text: TrialText, rules: TrialFeatures
) -> TrialFeatures | None:
    """The rules' features with the LLM's answer merged in; None without an answer."""
    outcome = extractor.extract(llm_payload(text))
    if outcome.status not in (LlmStatus.CALLED, LlmStatus.CACHED) or outcome.value is None:
        return None
    return merge_answer(rules, outcome.value, extractor.model, extractor.prompt_version)


def _row(features: TrialFeatures, day: date, digest: bytes | None) -> tuple[Any, ...]:
    row = list(to_row(features))
    row[_SOURCES] = Jsonb(row[_SOURCES])
    return (*row, day, digest)


def _digest(version: bytes, inputs: bytes) -> bytes:
    return hashlib.sha256(version + inputs).digest()


def _extract_day(
    conn: psycopg.Connection, day: date, extractor: StructuredExtractor | None
) -> FeaturesDay:
    result = FeaturesDay(day)
    versions = _Versions.of(extractor)
    rows: list[tuple[Any, ...]] = []
    ruled = [
        (text, inputs, extract_features(text))
        for text, inputs in _changed_trial_texts(conn, day, versions)
    ]
    asked = {t.nct_id for t, _, f in ruled if extractor is not None and needs_llm(t, f)}
    if extractor is not None and asked:
        extractor.prefetch(llm_payload(t) for t, _, _ in ruled if t.nct_id in asked)
    for text, inputs, features in ruled:
        digest: bytes | None = _digest(versions.rules, inputs)
        if extractor is not None and text.nct_id in asked:
            answered = _ask(extractor, text, features)
            # Without an answer the row holds the rules' features and no digest, so the next
            # run asks again (the answer may be cached by then, or the budget renewed).
            digest = (
                _digest(versions.rules_and_llm, inputs)
                if answered and versions.rules_and_llm
                else None
            )
            features = answered or features
            result.by_llm += features.extracted_by != "rules"
        result.unresolved += features.unresolved
        rows.append(_row(features, day, digest))
    row = conn.execute(_DAY_TRIALS, (day,)).fetchone()
    result.trials = row[0] if row else 0
    result.derived = len(rows)
    if rows:
        result.counts = upsert_rows(conn, TRIAL_FEATURES, rows)
    result.counts.unchanged += result.trials - result.derived
    return result
