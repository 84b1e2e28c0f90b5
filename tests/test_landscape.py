"""The landscape per day and tumor area, and the pandas rollups, on the real trials: what an
analyst reads in `analytics`, how a multi-year backfill of every area is planned, and what
automation keeps current."""

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import (
    build_run_requests_with_backfill_policies,
)
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster_openai import OpenAIResource
from psycopg import sql
from test_enrichment import _load_trials

from bioloupe_data.assets import analytics, enrichment
from bioloupe_data.assets.normalize import (
    TRIALS_KEY,
    TRIALS_NORMALIZATION,
    build_normalization_asset,
)
from bioloupe_data.enrichment.geocode import shared_geocoder
from bioloupe_data.enrichment.trial_features import TUMOR_AREAS
from bioloupe_data.partitions import (
    daily_partitions,
    landscape_partitions,
    tumor_area_partitions,
)
from bioloupe_data.pipelines.features import extract_days
from bioloupe_data.pipelines.geocoding import geocode_days
from bioloupe_data.pipelines.landscape import (
    ONGOING_STATUSES,
    plan_slices,
    refresh_landscape,
    stage_sponsor_keys,
)
from bioloupe_data.resources import LlmSettings, PostgresPandasIOManager, WarehouseResource
from bioloupe_data.warehouse.database import connect

from conftest import CTGOV_DATA, create_database, drop_database, url_for
from warehouse_helpers import link_files

START = "2006-01-01"
LANDSCAPE_PARTITIONS = landscape_partitions(START)
LANDSCAPE = analytics.build_landscape(LANDSCAPE_PARTITIONS)
ROLLUPS = [analytics.sponsor_pipelines, analytics.drug_phases]
# A third of the real records (every area the rules find among them is represented): the
# landscape's arithmetic does not need them all, and loading is the slow part.
STUDIES = sorted(CTGOV_DATA.glob("NCT*.json"))[::3]


def _enrich(url: str) -> None:
    """Drugs, sponsors and their profiles through Dagster; trial features and site geocodes
    (daily assets over 19 years of days) through the pipelines those assets run."""
    resources = {
        "warehouse": WarehouseResource(database_url=url),
        "openai": OpenAIResource(api_key="unused"),
        "llm": LlmSettings(enabled=False),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [enrichment.drugs, enrichment.sponsors], instance=instance, resources=resources
        ).success
        with connect(url) as conn:
            entities = {
                "drugs": [r[0] for r in conn.execute("SELECT drug_key FROM enriched.drugs")],
                "sponsors": [
                    r[0] for r in conn.execute("SELECT sponsor_key FROM enriched.sponsors")
                ],
            }
        for name, asset in (
            ("drugs", enrichment.drug_profiles),
            ("sponsors", enrichment.sponsor_profiles),
        ):
            keys = sorted(entities[name])
            instance.add_dynamic_partitions(name, keys)
            assert dg.materialize(
                [asset], instance=instance, resources=resources, tags=_range(keys[0], keys[-1])
            ).success
    with connect(url) as conn:
        days = [r[0] for r in conn.execute("SELECT DISTINCT partition_date FROM core.trials")]
        extract_days(conn, days)
        geocode_days(conn, shared_geocoder(), days)


@pytest.fixture(scope="module")
def prepared(admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding the real trials, enriched; each test works on a copy of it."""
    name = create_database(admin_url)
    url = url_for(admin_url, name)
    try:
        _load_trials(url, link_files(STUDIES, tmp_path_factory.mktemp("served")))
        _enrich(url)
        yield name
    finally:
        drop_database(admin_url, name)


@pytest.fixture
def warehouse(admin_url: str, prepared: str) -> Iterator[str]:
    name = f"{prepared}_{time.monotonic_ns() % 10**9}"
    for attempt in range(20):  # a just-closed session may still hold the template briefly
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(prepared)
                    )
                )
            break
        except psycopg.errors.ObjectInUse:
            if attempt == 19:
                raise
            time.sleep(0.25)
    try:
        yield url_for(admin_url, name)
    finally:
        drop_database(admin_url, name)


@pytest.fixture(autouse=True)
def event_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the CLI and deployments run: a range run records its partitions in batches."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")


def _range(start: str, end: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": start,
        "dagster/asset_partition_range_end": end,
    }


def _key(day: date, area: str) -> str:
    return dg.MultiPartitionKey({"date": day.isoformat(), "tumor_area": area})


def _landscape(
    instance: dg.DagsterInstance, url: str, start: date, end: date, first: str, last: str
) -> dict[str, Any]:
    """One run over days start..end × areas first..last (in `tumor_area` order), as a backfill
    launches it; the run's metadata."""
    result = dg.materialize(
        [LANDSCAPE],
        instance=instance,
        resources={"warehouse": WarehouseResource(database_url=url)},
        tags=_range(_key(start, first), _key(end, last)),
    )
    assert result.success
    event = result.asset_materializations_for_node("analytics__landscape")[-1]
    return {name: value.value for name, value in event.metadata.items()}


def _rows(url: str, where: str = "TRUE") -> dict[tuple[Any, ...], tuple[int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT day, tumor_area, dimension, category, trial_count, entity_count "
                "FROM analytics.landscape WHERE {}"
            ).format(sql.SQL(where))
        ).fetchall()
    return {tuple(r[:4]): (r[4], r[5]) for r in rows}


# The landscape's definition, day by day: every day joined to every trial active on it.
_DAY_BY_DAY = """
WITH days AS (SELECT d::date AS day FROM generate_series(%(start)s::date, %(end)s::date,
                                                        interval '1 day') AS d),
act AS (
  SELECT d.day, a.area, t.nct_id, coalesce(t.phase, 'unspecified') AS phase, t.overall_status
  FROM days d CROSS JOIN core.trials t JOIN enriched.trial_features f USING (nct_id)
  CROSS JOIN LATERAL unnest(f.tumor_areas) AS a (area)
  WHERE t.study_type = 'INTERVENTIONAL' AND t.overall_status <> 'WITHDRAWN'
    AND coalesce(t.start_date, t.study_first_posted_date) <= d.day
    AND (t.overall_status = ANY(%(ongoing)s) OR coalesce(t.completion_date,
         t.primary_completion_date, t.last_update_posted_date) >= d.day))
SELECT day, area, 'total', 'all', count(*), count(*) FROM act GROUP BY 1, 2
UNION ALL SELECT day, area, 'phase', phase, count(*), count(*) FROM act GROUP BY 1, 2, 4
UNION ALL SELECT day, area, 'status', overall_status, count(*), count(*) FROM act
  GROUP BY 1, 2, 4
UNION ALL SELECT a.day, a.area, 'modality', coalesce(p.modality, 'unknown'),
  count(DISTINCT a.nct_id), count(DISTINCT d.drug_key)
  FROM act a JOIN enriched.trial_drugs d USING (nct_id)
  LEFT JOIN enriched.drug_profiles p USING (drug_key) GROUP BY 1, 2, 4
UNION ALL SELECT a.day, a.area, 'sponsor_class', coalesce(p.sponsor_class, 'unknown'),
  count(DISTINCT a.nct_id), count(DISTINCT k.sponsor_key)
  FROM act a JOIN core.trial_sponsors s USING (nct_id)
  JOIN landscape_sponsor_keys k ON k.name = s.name
  LEFT JOIN enriched.sponsor_profiles p USING (sponsor_key) GROUP BY 1, 2, 4
UNION ALL SELECT a.day, a.area, 'region', coalesce(g.region, 'unknown'),
  count(DISTINCT a.nct_id), count(*)
  FROM act a JOIN core.trial_sites s USING (nct_id)
  LEFT JOIN enriched.site_geocodes g USING (nct_id, ordinal) GROUP BY 1, 2, 4
"""


def _day_by_day(url: str, start: date, end: date) -> dict[tuple[Any, ...], tuple[int, int]]:
    with connect(url) as conn:
        stage_sponsor_keys(conn)
        rows = conn.execute(
            _DAY_BY_DAY, {"start": start, "end": end, "ongoing": list(ONGOING_STATUSES)}
        ).fetchall()
    return {tuple(r[:4]): (r[4], r[5]) for r in rows}


def test_every_count_of_three_years_of_every_area_matches_a_day_by_day_recount(
    warehouse: str,
) -> None:
    start, end = date(2019, 1, 1), date(2021, 12, 31)
    keys = [(start + timedelta(days=i), area) for i in range(1096) for area in TUMOR_AREAS]
    with connect(warehouse) as conn:
        chunks = refresh_landscape(conn, keys)
    expected = _day_by_day(warehouse, start, end)
    assert {area for _, area, _, _ in expected} >= {"lung", "hematologic"}
    assert {dimension for _, _, dimension, _ in expected} == {
        "total",
        "phase",
        "status",
        "modality",
        "sponsor_class",
        "region",
    }
    assert _rows(warehouse) == expected
    # One statement per year of days, all areas at once; each slice counts its partitions.
    assert [(c.slice.start, c.slice.end, len(c.slice.areas)) for c in chunks] == [
        (date(2019, 1, 1), date(2020, 1, 1), 14),
        (date(2020, 1, 2), date(2021, 1, 1), 14),
        (date(2021, 1, 2), date(2021, 12, 31), 14),
    ]
    assert sum(c.counts.inserted for c in chunks) == len(expected)
    assert sum(c.slice.partitions for c in chunks) == len(keys)


def test_a_single_partition_run_writes_that_day_of_that_area(
    instance: dg.DagsterInstance, warehouse: str
) -> None:
    day = date(2020, 1, 15)
    result = dg.materialize(
        [LANDSCAPE],
        instance=instance,
        resources={"warehouse": WarehouseResource(database_url=warehouse)},
        partition_key=_key(day, "lung"),
    )
    assert result.success
    expected = {k: v for k, v in _day_by_day(warehouse, day, day).items() if k[1] == "lung"}
    assert expected and _rows(warehouse) == expected
    assert instance.get_materialized_partitions(analytics.LANDSCAPE_KEY) == {_key(day, "lung")}


def _study_like(nct_id: str, new_id: str, folder: Path, **status: Any) -> Path:
    """A copy of a real study under a new id, with its status, dates and phase replaced."""
    study = json.loads((CTGOV_DATA / f"{nct_id}.json").read_text())
    protocol = study["protocolSection"]
    protocol["identificationModule"]["nctId"] = new_id
    module = protocol["statusModule"]
    module["overallStatus"] = status["status"]
    module["startDateStruct"] = {"date": status["start"], "type": "ACTUAL"}
    for field in ("primaryCompletionDateStruct", "completionDateStruct"):
        module[field] = {"date": status["end"], "type": "ACTUAL"}
    protocol["designModule"]["phases"] = [status["phase"]]
    folder.mkdir()
    (folder / f"{new_id}.json").write_text(json.dumps(study))
    return folder


def test_a_trial_counts_in_its_area_by_phase_and_status_only_while_it_is_active(
    instance: dg.DagsterInstance, warehouse: str, tmp_path: Path
) -> None:
    with psycopg.connect(warehouse) as conn:
        model, day = conn.execute(
            "SELECT nct_id, t.partition_date FROM core.trials t JOIN enriched.trial_features "
            "USING (nct_id) WHERE tumor_areas = '{lung}' AND study_type = 'INTERVENTIONAL' "
            "ORDER BY nct_id LIMIT 1"
        ).fetchone()
    start, end = date(2021, 3, 1), date(2021, 3, 31)
    _landscape(instance, warehouse, start, end, "lung", "breast")
    before = _rows(warehouse)

    # A completed phase 3 lung trial active from 10 to 20 March 2021.
    _load_trials(
        warehouse,
        _study_like(
            model,
            "NCT99999902",
            tmp_path / "new",
            status="COMPLETED",
            start="2021-03-10",
            end="2021-03-20",
            phase="PHASE3",
        ),
    )
    with connect(warehouse) as conn:
        extract_days(conn, [day])
    metadata = _landscape(instance, warehouse, start, end, "lung", "breast")
    after = _rows(warehouse)

    for dimension, category in (("total", "all"), ("phase", "PHASE3"), ("status", "COMPLETED")):
        for offset in range(31):
            today = start + timedelta(days=offset)
            key = (today, "lung", dimension, category)
            old = before.get(key, (0, 0))[0]
            new = after.get(key, (0, 0))[0]
            active = date(2021, 3, 10) <= today <= date(2021, 3, 20)
            assert new - old == (1 if active else 0), (key, old, new)
    assert {k: v for k, v in after.items() if k[1] == "breast"} == {
        k: v for k, v in before.items() if k[1] == "breast"
    }
    assert metadata["inserted"] + metadata["updated"] > 0
    assert metadata["unchanged"] > 0  # breast, and lung's other days and categories

    again = _landscape(instance, warehouse, start, end, "lung", "breast")
    assert again["inserted"] == again["updated"] == again["deleted"] == 0
    assert again["unchanged"] == again["dagster/row_count"] == len(after)


def test_a_backfill_of_three_years_of_every_area_is_one_run_per_area() -> None:
    instance = dg.DagsterInstance.ephemeral()
    first, last = date(2022, 1, 1), date(2024, 12, 31)
    days = (last - first).days + 1
    unused = _resources("postgresql://unused")
    graph = dg.Definitions(assets=[LANDSCAPE], resources=unused).resolve_asset_graph()
    requested = [
        AssetKeyPartitionKey(analytics.LANDSCAPE_KEY, _key(first + timedelta(days=i), area))
        for i in range(days)
        for area in TUMOR_AREAS
    ]
    # The planner the backfill daemon runs (asset_backfill.py) on the UI's date × area grid.
    runs = build_run_requests_with_backfill_policies(requested, graph, instance)
    assert len(runs) == len(TUMOR_AREAS)
    ranges = sorted(
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in runs
    )
    assert ranges == sorted((_key(first, a), _key(last, a)) for a in TUMOR_AREAS)

    assert len(plan_slices((first + timedelta(days=i), "lung") for i in range(days))) == 3


def test_automation_requests_the_latest_day_of_every_area_when_trials_change() -> None:
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=[LANDSCAPE], resources=_resources("postgresql://unused"))
    now = datetime(2025, 6, 2, 9, tzinfo=UTC)
    latest = "2025-06-01"

    def updated(key: dg.AssetKey, partition: str | None = None) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))

    for key in (enrichment.DRUGS_KEY, enrichment.SPONSORS_KEY):
        updated(key)
    result = dg.evaluate_automation_conditions(defs, instance, evaluation_time=now)
    assert result.total_requested == 0  # the latest day's trials are not there yet

    for key in (TRIALS_KEY, enrichment.TRIAL_FEATURES_KEY, enrichment.SITE_GEOCODES_KEY):
        updated(key, latest)
    result = dg.evaluate_automation_conditions(
        defs, instance, evaluation_time=now, cursor=result.cursor
    )
    requested = result.get_requested_partitions(analytics.LANDSCAPE_KEY)
    assert requested == {_key(date(2025, 6, 1), area) for area in TUMOR_AREAS}

    updated(TRIALS_KEY, "2025-05-20")  # a past day's trials: no request
    result = dg.evaluate_automation_conditions(
        defs, instance, evaluation_time=now, cursor=result.cursor
    )
    assert result.total_requested == 0


def test_tumor_areas_are_partition_keys_as_they_are() -> None:
    assert tumor_area_partitions.get_partition_keys() == list(TUMOR_AREAS)
    key = _key(date(2024, 5, 1), "hepatobiliary/pancreatic")
    assert key == "2024-05-01|hepatobiliary/pancreatic"
    parsed = LANDSCAPE_PARTITIONS.get_partition_key_from_str(str(key))
    assert parsed.keys_by_dimension == {"date": "2024-05-01", "tumor_area": key.split("|")[1]}
    assert LANDSCAPE_PARTITIONS.has_partition_key(_key(date(2024, 5, 1), "head & neck"))


def _resources(url: str) -> dict[str, Any]:
    warehouse = WarehouseResource(database_url=url)
    return {
        "warehouse": warehouse,
        "pandas_io_manager": PostgresPandasIOManager(warehouse=warehouse),
    }


def test_sponsor_pipelines_and_drug_phases_of_every_area_in_one_run(
    instance: dg.DagsterInstance, warehouse: str
) -> None:
    tags = _range(TUMOR_AREAS[0], TUMOR_AREAS[-1])
    result = dg.materialize(ROLLUPS, instance=instance, resources=_resources(warehouse), tags=tags)
    assert result.success
    with psycopg.connect(warehouse) as conn:
        # Each drug's phase counts are its lead-sponsored interventional trials in the area.
        expected = conn.execute(
            "SELECT a.area, d.drug_key, coalesce(t.phase, 'unspecified'), count(*) "
            "FROM core.trials t JOIN enriched.trial_features f USING (nct_id) "
            "CROSS JOIN LATERAL unnest(f.tumor_areas) AS a (area) "
            "JOIN enriched.trial_drugs d USING (nct_id) "
            "WHERE t.study_type = 'INTERVENTIONAL' AND t.overall_status <> 'WITHDRAWN' "
            "AND EXISTS (SELECT 1 FROM core.trial_sponsors s WHERE s.nct_id = t.nct_id "
            "AND s.lead_or_collaborator = 'lead' AND coalesce(s.name, '') <> '') "
            "GROUP BY 1, 2, 3"
        ).fetchall()
        stored = conn.execute(
            "SELECT tumor_area, drug_key, phase, trials FROM analytics.drug_phases"
        ).fetchall()
        pipelines = conn.execute(
            "SELECT count(*), sum(trials) FROM analytics.sponsor_pipelines"
        ).fetchone()
        highest = conn.execute(
            "SELECT count(*) FROM analytics.sponsor_pipelines p WHERE NOT EXISTS ("
            "SELECT 1 FROM analytics.sponsor_pipelines q WHERE (q.tumor_area, q.sponsor_key, "
            "q.drug_key, q.phase) = (p.tumor_area, p.sponsor_key, p.drug_key, p.highest_phase))"
        ).fetchone()
    assert sorted(stored) == sorted(expected) and len(stored) > 20
    assert pipelines[1] == sum(n for *_, n in expected)
    assert highest[0] == 0  # the highest phase is one of the sponsor's phases of the drug

    again = dg.materialize(ROLLUPS, instance=instance, resources=_resources(warehouse), tags=tags)
    for node in ("analytics__sponsor_pipelines", "analytics__drug_phases"):
        metadata = again.asset_materializations_for_node(node)[-1].metadata
        assert metadata["inserted"].value == metadata["updated"].value == 0
        assert metadata["deleted"].value == 0


def test_the_analytics_assets_load_with_the_rest_of_the_code_location() -> None:
    daily = daily_partitions(START)
    warehouse = WarehouseResource(database_url="postgresql://unused")
    defs = dg.Definitions(
        assets=[
            build_normalization_asset(TRIALS_NORMALIZATION, daily),
            enrichment.drugs,
            enrichment.sponsors,
            enrichment.drug_profiles,
            enrichment.sponsor_profiles,
            enrichment.build_site_geocodes(daily),
            enrichment.build_trial_features(daily),
            LANDSCAPE,
            *ROLLUPS,
        ],
        resources={
            **_resources("postgresql://unused"),
            "warehouse": warehouse,
            "openai": OpenAIResource(api_key="unused"),
            "llm": LlmSettings(),
        },
    )
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert graph.get(analytics.LANDSCAPE_KEY).backfill_policy == dg.BackfillPolicy.single_run()
    assert graph.get(analytics.DRUG_PHASES_KEY).parent_keys == {analytics.SPONSOR_PIPELINES_KEY}
