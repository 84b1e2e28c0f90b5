"""Trial features (tumor area, biomarkers, line of therapy, combination partners) for the
trials of a day, by rules and then, where they leave gaps, an LLM; one transaction per day,
rows rewritten only when they changed. A trial whose text is what its row was derived from, under
the same rules (and prompt), is not derived again."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
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
from bioloupe_data.pipelines.workers import WorkerProcesses
from bioloupe_data.warehouse.upsert import Table, UpsertCounts, upsert_rows

# Trials of a day to derive from which the rules run in worker processes: the rules take about
# 4 ms a trial and hold the GIL; starting the processes costs a third of a second to a second,
# once a run.
RULES_PROCESS_MIN_TRIALS = 200

# The day's trials with the text the rules read, gathered in one statement, and two digests of
# that text: under the rules alone (`%(rules)s`, a trial not asked to the LLM) and under the
# rules and the LLM's answer (`%(rules_and_llm)s`). A trial whose stored row is of the same day
# and holds either digest would come out the same and is left out. Every row carries the count
# of all the day's trials, from the same snapshot; with nothing to derive that count is the only
# row, its other columns NULL.
_CHANGED_TRIALS = """
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
  SELECT x.*, sha256(%(rules)s::bytea || inputs) AS by_rules,
    sha256(%(rules_and_llm)s::bytea || inputs) AS by_rules_and_llm
  FROM texts x, sha256(convert_to(json_build_array(x.brief_title, x.official_title, x.phase,
    x.conditions, x.keywords, x.mesh, x.criteria, x.arms, x.drugs)::text, 'UTF8')) AS inputs
), changed AS (
  SELECT d.* FROM digested d LEFT JOIN enriched.trial_features f ON f.nct_id = d.nct_id
  WHERE NOT coalesce(f.partition_date = %(day)s
                     AND f.input_digest IN (d.by_rules, d.by_rules_and_llm), false)
)
SELECT n.trials, c.nct_id, c.brief_title, c.official_title, c.phase, c.conditions, c.keywords,
  c.mesh, c.criteria, c.arms, c.drugs, c.by_rules, c.by_rules_and_llm
FROM (SELECT count(*) AS trials FROM digested) AS n LEFT JOIN changed AS c ON true
ORDER BY c.nct_id
"""


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
class _ChangedTrial:
    text: TrialText
    # The row's digest when the rules decide it alone, and when the LLM answered for it (None
    # without an LLM step).
    by_rules: bytes
    by_rules_and_llm: bytes | None


def _versions(extractor: StructuredExtractor | None) -> dict[str, bytes | None]:
    """What a row's features depend on besides the trial's text, as the prefixes of its digest.
    Which trials are asked depends on the prompt, so a trial the rules decide alone is tied to
    the prompt's version too (or to there being no LLM step); one the LLM answered, to its model
    and prompt."""
    if extractor is None:
        return {"rules": f"{RULES_VERSION}+no-llm\0".encode(), "rules_and_llm": None}
    prompt = extractor.prompt_version
    return {
        "rules": f"{RULES_VERSION}+{prompt}\0".encode(),
        "rules_and_llm": f"{RULES_VERSION}+{prompt}+{extractor.model}\0".encode(),
    }


def _changed_trials(
    conn: psycopg.Connection, day: date, versions: dict[str, bytes | None]
) -> tuple[int, list[_ChangedTrial]]:
    """The day's count of trials, and those whose features must be derived (again)."""
    rows = conn.execute(_CHANGED_TRIALS, {"day": day, **versions}).fetchall()
    changed = []
    for row in rows:
        (_, nct_id, brief, official, phase, conditions, keywords, mesh, criteria, arms, drugs,
         by_rules, by_rules_and_llm) = row  # fmt: skip
        if nct_id is None:
            continue
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
        changed.append(_ChangedTrial(text, by_rules, by_rules_and_llm))
    return (rows[0][0] if rows else 0), changed


def extract_days(
    conn: psycopg.Connection,
    days: Iterable[date],
    *,
    extractor: StructuredExtractor | None = None,
    on_day: Callable[[FeaturesDay], None] | None = None,
    processes: int = 1,
) -> list[FeaturesDay]:
    """Derive the features of each day's trials that changed, one transaction a day. With
    `processes` > 1, a day with at least `RULES_PROCESS_MIN_TRIALS` trials to derive runs the
    rules in that many worker processes (started by the first such day, kept for the rest)."""
    results = []
    versions = _versions(extractor)
    with ExitStack() as stack:
        # The pool spawns its processes on its first task: a run of small days starts none.
        workers = stack.enter_context(WorkerProcesses(processes)) if processes > 1 else None
        for day in days:
            with conn.transaction():
                result = _extract_day(conn, day, extractor, versions, workers)
            results.append(result)
            if on_day:
                on_day(result)
    return results


def _apply_rules(texts: list[TrialText], workers: WorkerProcesses | None) -> list[TrialFeatures]:
    if workers is None or len(texts) < RULES_PROCESS_MIN_TRIALS:
        return [extract_features(text) for text in texts]
    return workers.map(extract_features, texts)


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


def _extract_day(
    conn: psycopg.Connection,
    day: date,
    extractor: StructuredExtractor | None,
    versions: dict[str, bytes | None],
    workers: WorkerProcesses | None,
) -> FeaturesDay:
    result = FeaturesDay(day)
    result.trials, changed = _changed_trials(conn, day, versions)
    texts = [trial.text for trial in changed]
    ruled = list(zip(changed, _apply_rules(texts, workers), strict=True))
    asked = {t.text.nct_id for t, f in ruled if extractor is not None and needs_llm(t.text, f)}
    if extractor is not None and asked:
        extractor.prefetch(llm_payload(t.text) for t, _ in ruled if t.text.nct_id in asked)
    rows: list[tuple[Any, ...]] = []
    for trial, features in ruled:
        digest: bytes | None = trial.by_rules
        if extractor is not None and trial.text.nct_id in asked:
            answered = _ask(extractor, trial.text, features)
            # Without an answer the row holds the rules' features and no digest, so the next
            # run asks again (the answer may be cached by then, or the budget renewed).
            digest = trial.by_rules_and_llm if answered else None
            features = answered or features
            result.by_llm += features.extracted_by != "rules"
        result.unresolved += features.unresolved
        rows.append(_row(features, day, digest))
    result.derived = len(rows)
    if rows:
        result.counts = upsert_rows(conn, TRIAL_FEATURES, rows)
    result.counts.unchanged += result.trials - result.derived
    return result
