"""The LLM step of trial features: who is asked, what is shown, and how answers join the rules'
values (pure functions; the asset against a local server is in test_enrichment)."""

from __future__ import annotations

from dataclasses import replace

from test_trial_features import real_features, real_trial, real_trials

from bioloupe_data.enrichment.llm import schema_violations
from bioloupe_data.enrichment.trial_features import RULES_VERSION
from bioloupe_data.enrichment.trial_features_llm import (
    MAX_CRITERIA_CHARS,
    TRIAL_FEATURES_PROMPT,
    llm_payload,
    merge_answer,
    needs_llm,
)
from bioloupe_data.replay.openai_server import value_for_schema

FULL_ANSWER = {
    "tumor_areas": ["breast", "not an area"],
    "biomarkers": ["HER2-positive", "made-up marker"],
    "line_of_therapy": "second-line",
    "combination_partners": ["Trastuzumab", "  pertuzumab ", "trastuzumab"],
}


def test_only_cancer_trials_with_an_open_area_or_line_are_asked() -> None:
    asked = {t.nct_id for t in real_trials() if needs_llm(t, real_features()[t.nct_id])}
    for trial in real_trials():
        features = real_features()[trial.nct_id]
        if features.tumor_areas and features.line_of_therapy:
            assert trial.nct_id not in asked
    # "Cancer" alone gives no tumor area by rules: that trial is asked.
    assert "NCT04571398" in asked
    assert 0 < len(asked) < len(real_trials())


def test_the_answer_fills_only_empty_fields_and_names_its_source_per_value() -> None:
    rules = real_features()["NCT04571398"]
    assert rules.unresolved and rules.extracted_by == "rules"
    merged = merge_answer(rules, FULL_ANSWER, "m1", TRIAL_FEATURES_PROMPT.version)
    assert merged.tumor_areas == ("breast",)  # values outside the vocabulary are dropped
    assert not merged.unresolved
    assert merged.extracted_by == "llm:m1"
    assert merged.rules_version == f"{RULES_VERSION}+{TRIAL_FEATURES_PROMPT.version}"
    sources = dict(merged.value_sources)
    assert sources["tumor_areas"] == "llm:m1"
    for name, source in dict(rules.value_sources).items():
        assert sources[name] == source == "rules"
        assert getattr(merged, name) == getattr(rules, name)  # a rule's value is never replaced


def test_a_rules_value_is_kept_when_the_llm_disagrees() -> None:
    rules = real_features()["NCT05536349"]  # hematologic, first-line, three partners
    merged = merge_answer(rules, FULL_ANSWER, "m1", "v")
    assert merged.tumor_areas == rules.tumor_areas
    assert merged.line_of_therapy == rules.line_of_therapy
    assert merged.combination_partners == rules.combination_partners
    assert merged.biomarkers == ("HER2-positive",)
    assert dict(merged.value_sources)["biomarkers"] == "llm:m1"
    assert dict(merged.value_sources)["line_of_therapy"] == "rules"


def test_an_empty_or_unusable_answer_leaves_the_rules_row_unchanged() -> None:
    rules = real_features()["NCT04571398"]
    empty = {"tumor_areas": [], "biomarkers": [], "line_of_therapy": None}
    assert merge_answer(rules, empty, "m1", "v") == rules
    assert merge_answer(rules, {"tumor_areas": "breast", "line_of_therapy": "7th"}, "m", "v") == (
        rules
    )
    # one partner is no combination
    assert merge_answer(rules, {"combination_partners": ["x"]}, "m1", "v") == rules


def test_partners_are_normalized_and_deduplicated() -> None:
    rules = replace(real_features()["NCT04571398"], combination_partners=())
    merged = merge_answer(rules, FULL_ANSWER, "m1", "v")
    assert merged.combination_partners == ("pertuzumab", "trastuzumab")


def test_the_payload_is_bounded_and_has_no_exclusion_criteria() -> None:
    trial = real_trial("NCT05536349")
    long = replace(trial, eligibility="Inclusion Criteria:\n" + "x" * 50_000 + "\nExclusion")
    payload = llm_payload(long)
    assert len(payload["inclusion_criteria"]) == MAX_CRITERIA_CHARS
    payload = llm_payload(trial)
    assert "exclusion" not in payload["inclusion_criteria"].casefold()
    assert payload["brief_title"] == trial.brief_title
    assert payload["interventions"]


def test_the_schema_admits_its_own_example_and_a_null_line() -> None:
    schema = TRIAL_FEATURES_PROMPT.schema
    example = value_for_schema(schema)
    assert schema_violations(example, schema) == []
    assert schema_violations(FULL_ANSWER, schema)  # values outside the enums
    assert (
        schema_violations(
            {
                "tumor_areas": [],
                "biomarkers": [],
                "line_of_therapy": None,
                "combination_partners": [],
            },
            schema,
        )
        == []
    )
