"""The code location: every asset, job, schedule and resource, assembled in one place."""

from __future__ import annotations

import dagster as dg
from dagster_openai import OpenAIResource

from bioloupe_data.assets import analytics, enrichment
from bioloupe_data.assets.ingestion import (
    CLINICALTRIALS_LANDING,
    PUBMED_LANDING,
    build_landing_asset,
)
from bioloupe_data.assets.normalize import (
    PUBLICATIONS_NORMALIZATION,
    TRIALS_NORMALIZATION,
    build_normalization_asset,
)
from bioloupe_data.assets.sources import CLINICALTRIALS_API, PUBMED_API
from bioloupe_data.checks import (
    build_freshness_checks,
    build_integrity_checks,
    build_landing_checks,
    integrity_check_keys,
)
from bioloupe_data.partitions import daily_partitions, landscape_partitions
from bioloupe_data.pipelines.normalize import PROCESS_MIN_DOCUMENTS
from bioloupe_data.resources import (
    ClinicalTrialsResource,
    LlmSettings,
    PostgresPandasIOManager,
    PubmedResource,
    WarehouseResource,
)
from bioloupe_data.schedules import (
    CLINICALTRIALS_SCHEDULE_HOUR,
    PUBMED_SCHEDULE_HOUR,
    clinicaltrials_job,
    clinicaltrials_schedule,
    freshness_checks_job,
    freshness_checks_schedule,
    integrity_checks_job,
    integrity_checks_schedule,
    landing_checks_job,
    landing_checks_schedule,
    pubmed_job,
    pubmed_schedule,
)
from bioloupe_data.sensors import (
    CatchUpTarget,
    analytics_automation_sensor,
    build_catch_up_sensor,
    drug_registration_sensor,
    entity_automation_sensor,
    sponsor_registration_sensor,
)
from bioloupe_data.settings import Environment, SettingError, Settings, env, positive_int


def _from_env(name: str, default: str = "") -> str | dg.EnvVar:
    """An `EnvVar` when the variable is set (so secrets stay out of the config), else the
    default: an empty variable counts as unset."""
    return dg.EnvVar(name) if env(name) else default


PROCESS_MIN_DOCUMENTS_VAR = "BIOLOUPE_PROCESS_MIN_DOCUMENTS"

# Per environment (`BIOLOUPE_ENV`), what the resources may do and spend: the one place where
# local, staging and production differ.
LLM_CALLS_PER_RUN = {Environment.LOCAL: 500, Environment.STAGING: 100, Environment.PROD: 500}


def build_resources(
    environment: Environment = Environment.LOCAL,
) -> dict[str, dg.ConfigurableResource]:
    """The resources of `environment`. Local may start the embedded PostgreSQL; staging and
    production must name their warehouse (`BIOLOUPE_DATABASE_URL`), and their definitions do
    not load without it. Secrets come from the environment through `dg.EnvVar` everywhere."""
    if not environment.allows_embedded_database and not env("BIOLOUPE_DATABASE_URL"):
        raise SettingError(
            f"BIOLOUPE_ENV={environment.value} needs BIOLOUPE_DATABASE_URL: only local "
            "development starts an embedded PostgreSQL"
        )
    warehouse = WarehouseResource(
        database_url=_from_env("BIOLOUPE_DATABASE_URL"),
        allow_embedded=environment.allows_embedded_database,
        process_min_documents=positive_int(PROCESS_MIN_DOCUMENTS_VAR, PROCESS_MIN_DOCUMENTS),
    )
    return {
        "warehouse": warehouse,
        analytics.PANDAS_IO_MANAGER_KEY: PostgresPandasIOManager(warehouse=warehouse),
        "clinicaltrials": ClinicalTrialsResource(
            base_url=_from_env("CTGOV_BASE_URL"), scope=_from_env("CTGOV_SCOPE")
        ),
        "pubmed": PubmedResource(
            base_url=_from_env("PUBMED_BASE_URL"),
            query=_from_env("PUBMED_QUERY"),
            api_key=_from_env("NCBI_API_KEY"),
            email=_from_env("NCBI_EMAIL"),
        ),
        # Without OPENAI_API_KEY enrichment runs rules-only and says so in its metadata; the
        # client still needs some key to be constructed, and is then never called.
        "openai": OpenAIResource(
            api_key=_from_env("OPENAI_API_KEY", "unused-without-OPENAI_API_KEY"),
            base_url=_from_env("OPENAI_BASE_URL") or None,
        ),
        "llm": LlmSettings(
            enabled=env("OPENAI_API_KEY") is not None,
            model=_from_env("OPENAI_MODEL", "gpt-4o-mini"),
            max_calls_per_run=LLM_CALLS_PER_RUN[environment],
        ),
    }


def _keys(assets: list[dg.AssetsDefinition]) -> tuple[dg.AssetKey, ...]:
    return tuple(key for asset in assets for key in asset.keys)


def build_definitions(settings: Settings) -> dg.Definitions:
    daily = daily_partitions(settings.start_date)
    trials_daily = [
        build_landing_asset(CLINICALTRIALS_LANDING, daily),
        build_normalization_asset(TRIALS_NORMALIZATION, daily),
        enrichment.build_site_geocodes(daily),
        enrichment.build_trial_features(daily),
    ]
    publications_daily = [
        build_landing_asset(PUBMED_LANDING, daily),
        build_normalization_asset(PUBLICATIONS_NORMALIZATION, daily),
    ]
    jobs = [clinicaltrials_job(without=integrity_check_keys()), pubmed_job(integrity_check_keys())]
    landing_checks = build_landing_checks(daily)
    freshness_checks = build_freshness_checks()
    integrity_checks = build_integrity_checks()
    check_jobs = [
        landing_checks_job(landing_checks),
        freshness_checks_job(freshness_checks),
        integrity_checks_job(integrity_checks),
    ]
    catch_up = build_catch_up_sensor(
        [
            CatchUpTarget(jobs[0], _keys(trials_daily), CLINICALTRIALS_SCHEDULE_HOUR),
            CatchUpTarget(jobs[1], _keys(publications_daily), PUBMED_SCHEDULE_HOUR),
        ],
        daily,
        settings.catch_up,
    )
    return dg.Definitions(
        assets=[
            CLINICALTRIALS_API,
            PUBMED_API,
            *trials_daily,
            *publications_daily,
            enrichment.drugs,
            enrichment.sponsors,
            enrichment.drug_profiles,
            enrichment.sponsor_profiles,
            analytics.build_landscape(landscape_partitions(settings.landscape_start_date)),
            analytics.sponsor_pipelines,
            analytics.drug_phases,
        ],
        sensors=[
            drug_registration_sensor,
            sponsor_registration_sensor,
            entity_automation_sensor,
            analytics_automation_sensor,
            catch_up,
        ],
        asset_checks=[*landing_checks, *freshness_checks, integrity_checks],
        jobs=[*jobs, *check_jobs],
        schedules=[
            clinicaltrials_schedule(jobs[0]),
            pubmed_schedule(jobs[1]),
            landing_checks_schedule(check_jobs[0], daily),
            freshness_checks_schedule(check_jobs[1]),
            integrity_checks_schedule(check_jobs[2]),
        ],
        resources=build_resources(settings.environment),
        # Every run executes its steps in the run's own process. The steps of these jobs wait on
        # each other (landing, checks, normalizing, enrichment), so separate step processes would
        # buy no parallelism, only a Python start-up, the project's imports and new warehouse
        # connections per step (about 2 s each here); the days inside a step already run side
        # by side (`WarehouseResource.parallel_days`).
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
