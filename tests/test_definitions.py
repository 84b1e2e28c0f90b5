"""The code location as the UI and the daemon load it."""

import dagster as dg
import pytest

from bioloupe_data.definitions import defs
from bioloupe_data.resources import WarehouseResource

EXPECTED_ASSETS = {
    "clinicaltrials_gov/api",
    "raw/clinicaltrials_gov",
    "core/trials",
    "pubmed/api",
    "raw/pubmed",
    "core/publications",
    "enriched/drugs",
    "enriched/sponsors",
    "enriched/drug_profiles",
    "enriched/sponsor_profiles",
    "enriched/site_geocodes",
    "enriched/trial_features",
    "analytics/landscape",
    "analytics/sponsor_pipelines",
    "analytics/drug_phases",
}


@pytest.fixture
def definitions(monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    for name in ("BIOLOUPE_DATABASE_URL", "OPENAI_API_KEY", "NCBI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BIOLOUPE_START_DATE", "2020-01-01")
    return defs()


def test_every_job_sensor_and_schedule_resolves(definitions: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(definitions)
    jobs = {job.name for job in definitions.resolve_all_job_defs()}
    assert {"clinicaltrials_gov_daily", "pubmed_daily"} <= jobs
    assert {s.name for s in definitions.sensors or []} == {
        "drugs_registration_sensor",
        "sponsors_registration_sensor",
        "entity_automation_sensor",
        "analytics_automation_sensor",
        "daily_catch_up_sensor",
    }
    schedules = {
        name: definitions.resolve_schedule_def(name).cron_schedule
        for name in ("clinicaltrials_gov_daily_schedule", "pubmed_daily_schedule")
    }
    assert schedules == {
        "clinicaltrials_gov_daily_schedule": "0 7 * * *",
        "pubmed_daily_schedule": "0 8 * * *",
    }


def test_assets_follow_the_conventions(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == EXPECTED_ASSETS
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        spec = next(s for s in node.assets_def.specs if s.key == key)
        assert len(key.path) == 2 and key.path[1] == key.path[1].lower()
        assert spec.description, key
        assert spec.owners, key
        assert spec.kinds, key
        if node.is_materializable:
            assert node.group_name == key.path[0], key
        if node.partitions_def is not None and node.is_materializable:
            assert node.backfill_policy is not None, key


def test_daily_jobs_hold_one_source_each(definitions: dg.Definitions) -> None:
    trials = definitions.resolve_job_def("clinicaltrials_gov_daily")
    pubmed = definitions.resolve_job_def("pubmed_daily")
    assert {k.to_user_string() for k in trials.asset_layer.selected_asset_keys} == {
        "raw/clinicaltrials_gov",
        "core/trials",
        "enriched/site_geocodes",
        "enriched/trial_features",
    }
    assert {k.to_user_string() for k in pubmed.asset_layer.selected_asset_keys} == {
        "raw/pubmed",
        "core/publications",
    }


def test_schedules_and_the_catch_up_run_by_default(definitions: dg.Definitions) -> None:
    for name in ("clinicaltrials_gov_daily_schedule", "pubmed_daily_schedule"):
        schedule = definitions.resolve_schedule_def(name)
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    catch_up = definitions.resolve_sensor_def("daily_catch_up_sensor")
    assert catch_up.default_status == dg.DefaultSensorStatus.RUNNING
    assert catch_up.minimum_interval_seconds == 300
    assert {job.name for job in catch_up.jobs} == {"clinicaltrials_gov_daily", "pubmed_daily"}


@pytest.mark.parametrize("value", ["0", "-3", "thirty"])
def test_a_bad_catch_up_setting_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BIOLOUPE_CATCH_UP_DAYS", value)
    with pytest.raises(ValueError, match="BIOLOUPE_CATCH_UP_DAYS must be a positive whole number"):
        defs()


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_process_threshold_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BIOLOUPE_PROCESS_MIN_DOCUMENTS", value)
    with pytest.raises(
        ValueError, match="BIOLOUPE_PROCESS_MIN_DOCUMENTS must be a positive whole number"
    ):
        defs()


def test_the_process_threshold_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert defs().resources["warehouse"].process_min_documents == 3000
    monkeypatch.setenv("BIOLOUPE_PROCESS_MIN_DOCUMENTS", "250")
    assert defs().resources["warehouse"].process_min_documents == 250


def test_catch_up_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIOLOUPE_CATCH_UP_INTERVAL_SECONDS", "45")
    sensor = defs().resolve_sensor_def("daily_catch_up_sensor")
    assert sensor.minimum_interval_seconds == 45
    assert "last 30 days" in (sensor.description or "")


def test_drugs_and_sponsors_follow_a_new_day_of_trials_while_other_days_are_missing(
    definitions: dg.Definitions,
) -> None:
    """A daily history always has days not materialized (today's before its schedule, a failed
    day, years before a backfill): they must not hold the entity tables back."""
    instance = dg.DagsterInstance.ephemeral()
    entities = {dg.AssetKey(["enriched", "drugs"]), dg.AssetKey(["enriched", "sponsors"])}
    selection = dg.AssetSelection.assets(*entities)
    result = dg.evaluate_automation_conditions(definitions, instance, asset_selection=selection)
    assert result.total_requested == 0  # no trials yet

    trials = dg.AssetKey(["core", "trials"])
    instance.report_runless_asset_event(dg.AssetMaterialization(trials, partition="2024-05-01"))
    result = dg.evaluate_automation_conditions(
        definitions, instance, asset_selection=selection, cursor=result.cursor
    )
    assert {key for key in entities if result.get_num_requested(key)} == entities

    for key in entities:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    result = dg.evaluate_automation_conditions(
        definitions, instance, asset_selection=selection, cursor=result.cursor
    )
    assert result.total_requested == 0  # handled, and nothing new upstream


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_staging_and_production_never_fall_back_to_the_embedded_database(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("BIOLOUPE_ENV", environment)
    monkeypatch.delenv("BIOLOUPE_DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="needs BIOLOUPE_DATABASE_URL"):
        defs()

    monkeypatch.setenv("BIOLOUPE_DATABASE_URL", "postgresql://warehouse.internal/bioloupe")
    warehouse = defs().resources["warehouse"]
    assert warehouse.allow_embedded is False
    # Even a URL that resolves to nothing at run time fails instead of starting a server.
    with pytest.raises(dg.DagsterInvariantViolationError, match="never start an embedded"):
        WarehouseResource(database_url="", allow_embedded=False).url()


def test_local_is_the_default_and_an_unknown_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BIOLOUPE_ENV", raising=False)
    monkeypatch.delenv("BIOLOUPE_DATABASE_URL", raising=False)
    assert defs().resources["warehouse"].allow_embedded is True
    monkeypatch.setenv("BIOLOUPE_ENV", "production")
    with pytest.raises(ValueError, match="BIOLOUPE_ENV must be one of local, staging, prod"):
        defs()
