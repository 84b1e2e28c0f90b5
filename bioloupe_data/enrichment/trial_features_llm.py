"""The LLM step of trial features: which trials it is asked about, what it is shown, and how
its answer joins the rules' values. Pure functions, no dagster import.

The rules go first (`trial_features.extract_features`). A trial about cancer is put to the LLM
when the rules leave its tumor area or its line of therapy unknown; the answer fills only the
fields the rules left empty, each filled value recorded as 'llm:<model>' in `value_sources`
(the rules' values keep 'rules'). Answers outside the vocabularies are dropped, so an LLM can
never add a tumor area, biomarker or line of therapy the rules could not have produced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bioloupe_data.enrichment.llm import LlmPrompt
from bioloupe_data.enrichment.trial_features import (
    BIOMARKERS,
    LINES_OF_THERAPY,
    RULES_VERSION,
    TUMOR_AREAS,
    TrialFeatures,
    TrialText,
    inclusion_criteria,
    sources_of,
)

# Enough of the criteria to read the population; a cap on what one question costs.
MAX_CRITERIA_CHARS = 3000
MAX_ARM_CHARS = 400
MAX_PARTNERS = 12
MAX_PARTNER_CHARS = 120

TRIAL_FEATURES_PROMPT = LlmPrompt(
    version="trial-features-v2",
    system=(
        "You read oncology clinical trial records. From the titles, conditions, MeSH terms, "
        "arms, interventions and inclusion criteria, answer with: every tumor area the trial "
        "studies (an empty list when it studies no specific area, e.g. any solid tumor); the "
        "biomarkers patients are selected for (not drug targets, not markers that exclude "
        "patients); the line of therapy of the population (null when not stated or mixed); "
        "and the drugs given together in an experimental arm (empty when no arm combines "
        "drugs). Use the allowed values only."
    ),
    schema={
        "type": "object",
        "additionalProperties": False,
        "required": ["tumor_areas", "biomarkers", "line_of_therapy", "combination_partners"],
        "properties": {
            "tumor_areas": {
                "type": "array",
                "items": {"type": "string", "enum": list(TUMOR_AREAS)},
            },
            "biomarkers": {"type": "array", "items": {"type": "string", "enum": list(BIOMARKERS)}},
            "line_of_therapy": {
                "type": ["string", "null"],
                "enum": [*LINES_OF_THERAPY, None],
            },
            "combination_partners": {"type": "array", "items": {"type": "string"}},
        },
    },
)

_CANCER_WORDS = re.compile(
    r"cancer|tumou?r|carcinom|neoplas|malignan|lymphoma|leuka?emia|myeloma|melanoma|sarcoma|"
    r"oncolog|metasta",
    re.IGNORECASE,
)


def about_cancer(trial: TrialText) -> bool:
    fields = [trial.brief_title, trial.official_title, *trial.conditions, *trial.mesh_terms]
    return any(_CANCER_WORDS.search(value) for value in fields if value)


def needs_llm(trial: TrialText, rules: TrialFeatures) -> bool:
    """Only trials about cancer whose tumor area or line of therapy the rules left open."""
    return (rules.unresolved or rules.line_of_therapy is None) and about_cancer(trial)


def llm_payload(trial: TrialText) -> dict[str, Any]:
    """What the LLM is shown (and what its cached answer is keyed by)."""
    return {
        "brief_title": trial.brief_title,
        "official_title": trial.official_title,
        "phase": trial.phase,
        "conditions": list(trial.conditions),
        "mesh_terms": list(trial.mesh_terms),
        "arms": [
            {"label": label, "type": kind, "description": (text or "")[:MAX_ARM_CHARS]}
            for label, kind, text in trial.arms
        ],
        "interventions": [name for _, name in trial.interventions if name],
        "inclusion_criteria": inclusion_criteria(trial.eligibility)[:MAX_CRITERIA_CHARS],
    }


def _in_order(values: Any, vocabulary: tuple[str, ...]) -> tuple[str, ...]:
    chosen = set(values) if isinstance(values, list) else set()
    return tuple(value for value in vocabulary if value in chosen)


def _partners(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    names = {
        " ".join(value.split()).casefold()[:MAX_PARTNER_CHARS]
        for value in values
        if isinstance(value, str) and value.strip()
    }
    return tuple(sorted(names)[:MAX_PARTNERS]) if len(names) >= 2 else ()


def merge_answer(
    rules: TrialFeatures, answer: Mapping[str, Any], model: str, prompt_version: str
) -> TrialFeatures:
    """The rules' features with the LLM's answer in the fields the rules left empty."""
    line = answer.get("line_of_therapy")
    offered: dict[str, Any] = {
        "tumor_areas": _in_order(answer.get("tumor_areas"), TUMOR_AREAS),
        "biomarkers": _in_order(answer.get("biomarkers"), BIOMARKERS),
        "line_of_therapy": line if line in LINES_OF_THERAPY else None,
        "combination_partners": _partners(answer.get("combination_partners")),
    }
    filled = {name: value for name, value in offered.items() if value and not getattr(rules, name)}
    if not filled:
        return rules
    extractor = f"llm:{model}"
    merged = replace(rules, **filled)
    return replace(
        merged,
        unresolved=not merged.tumor_areas,
        extracted_by=extractor,
        rules_version=f"{RULES_VERSION}+{prompt_version}",
        value_sources=sources_of(merged, dict(rules.value_sources), extractor),
    )
