"""Drugs and sponsors from the real trials: derived, registered as dynamic partitions by the
sensor, and profiled by rules and by an LLM behind a local OpenAI-compatible server."""

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster_openai import OpenAIResource

from bioloupe_data.assets import enrichment
from bioloupe_data.enrichment import geocode
from bioloupe_data.enrichment.geocode import Geocoder, shared_geocoder
from bioloupe_data.enrichment.llm import StructuredExtractor
from bioloupe_data.enrichment.trial_features_llm import TRIAL_FEATURES_PROMPT
from bioloupe_data.partitions import daily_partitions
from bioloupe_data.pipelines import features
from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC, land_range
from bioloupe_data.pipelines.features import extract_days
from bioloupe_data.pipelines.geocoding import geocode_days
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.pipelines.normalize import normalize_days
from bioloupe_data.replay.openai_server import OpenAICompatibleServer
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.resources import LlmSettings, WarehouseResource
from bioloupe_data.sensors import drug_registration_sensor, sponsor_registration_sensor
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.migrate import migrate

from conftest import CTGOV_DATA, create_database, drop_database, url_for
from warehouse_helpers import count, link_files

NEW_DRUGS = ("Loupetinib", "Dataloupumab")


def _load_trials(url: str, folder: Path) -> None:
    """The trials through the same day-by-day pipeline the assets run (without Dagster)."""
    with ReplayServer(folder) as server, connect(url) as conn:
        migrate(conn)
        client = ClinicalTrialsClient.create(server.url, "all")
        days = []
        for page in client.iter_pages(date(2000, 1, 1), date(2026, 1, 1)):
            for study in page.studies:
                status = study["protocolSection"]["statusModule"]
                days.append(date.fromisoformat(status["lastUpdatePostDateStruct"]["date"]))
        start, end = min(days), max(days)
        land_range(conn, client, start, end, run_id="test")
        normalize_days(conn, TRIALS_SPEC, days_between(start, end), run_id="test")
        client.close()


@pytest.fixture(scope="module")
def loaded_template(admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding every real trial, landed and normalized once for the module."""
    name = create_database(admin_url)
    try:
        folder = link_files(sorted(CTGOV_DATA.glob("NCT*.json")), tmp_path_factory.mktemp("served"))
        _load_trials(url_for(admin_url, name), folder)
        yield name
    finally:
        drop_database(admin_url, name)


@pytest.fixture
def loaded(admin_url: str, loaded_template: str) -> Iterator[str]:
    """A throwaway copy of the loaded warehouse for one test."""
    name = create_database(admin_url, template=loaded_template)
    try:
        yield url_for(admin_url, name)
    finally:
        drop_database(admin_url, name)


@pytest.fixture
def resources(loaded: str) -> dict[str, object]:
    return {
        "warehouse": WarehouseResource(database_url=loaded),
        "openai": OpenAIResource(api_key="unused"),
        "llm": LlmSettings(enabled=False, model="test-model", max_calls_per_run=50),
    }


Cursors = dict[str, str | None]


def _tick(instance: dg.DagsterInstance, url: str, cursors: Cursors) -> dict[str, dg.SensorResult]:
    """One tick of each registration sensor, applied to the instance as the daemon does."""
    results = {}
    for name, sensor in (
        ("drugs", drug_registration_sensor),
        ("sponsors", sponsor_registration_sensor),
    ):
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursors.get(name),
            resources={"warehouse": WarehouseResource(database_url=url)},
        )
        result = sensor(context)
        if isinstance(result, dg.SkipReason):
            result = dg.SensorResult(skip_reason=result, cursor=cursors.get(name))
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        results[name] = result
    return results


def _cursors(results: dict[str, dg.SensorResult]) -> Cursors:
    return {name: result.cursor for name, result in results.items()}


def _keys(results: dict[str, dg.SensorResult], name: str) -> list[str]:
    return [
        key
        for request in results[name].dynamic_partitions_requests or []
        for key in request.partition_keys
    ]


def _with_new_drugs(tmp_path: Path) -> Path:
    study = json.loads((CTGOV_DATA / "NCT02552212.json").read_text())
    study["protocolSection"]["identificationModule"]["nctId"] = "NCT99999901"
    study["protocolSection"]["armsInterventionsModule"]["interventions"] = [
        {"type": "DRUG", "name": name, "otherNames": []} for name in NEW_DRUGS
    ]
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "NCT99999901.json").write_text(json.dumps(study))
    return folder


def test_one_tick_registers_every_drug_and_sponsor_once_and_a_second_tick_nothing(
    instance: dg.DagsterInstance, resources: dict[str, object], loaded: str, tmp_path: Path
) -> None:
    assert dg.materialize(
        [enrichment.drugs, enrichment.sponsors], instance=instance, resources=resources
    ).success
    drugs = count(loaded, "enriched.drugs")
    sponsors = count(loaded, "enriched.sponsors")
    assert drugs > 100 and sponsors > 100

    first = _tick(instance, loaded, {})

    assert len(_keys(first, "drugs")) == len(set(_keys(first, "drugs"))) == drugs
    assert len(_keys(first, "sponsors")) == sponsors
    assert set(instance.get_dynamic_partitions("drugs")) == set(_keys(first, "drugs"))
    requested = first["drugs"].run_requests or []
    assert all(r.asset_selection == [enrichment.DRUG_PROFILES_KEY] for r in requested)
    assert 1 < len(requested) <= drugs // 100 + 1  # batched range runs, not one per drug
    assert len({r.run_key for r in requested}) == len(requested)
    assert requested[0].tags["dagster/asset_partition_range_start"] == _keys(first, "drugs")[0]

    second = _tick(instance, loaded, _cursors(first))
    for result in second.values():
        assert result.skip_reason is not None and not result.run_requests

    _load_trials(loaded, _with_new_drugs(tmp_path))
    assert dg.materialize([enrichment.drugs], instance=instance, resources=resources).success
    third = _tick(instance, loaded, _cursors(second))
    assert sorted(_keys(third, "drugs")) == ["dataloupumab", "loupetinib"]
    assert _keys(third, "sponsors") == []


@pytest.fixture
def registered(
    instance: dg.DagsterInstance, resources: dict[str, object], loaded: str
) -> Iterator[list[str]]:
    assert dg.materialize([enrichment.drugs], instance=instance, resources=resources).success
    with psycopg.connect(loaded) as conn:
        keys = [r[0] for r in conn.execute("SELECT drug_key FROM enriched.drugs ORDER BY 1")]
    instance.add_dynamic_partitions("drugs", keys)
    yield keys


def _profile(
    instance: dg.DagsterInstance, resources: dict[str, object], key: str
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [enrichment.drug_profiles], instance=instance, resources=resources, partition_key=key
    )


def test_rules_classify_known_drugs_by_stem_without_an_llm(
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    loaded: str,
    registered: list[str],
) -> None:
    assert "pembrolizumab" in registered
    # Every trial naming the drug (as its name or another name) is linked to it.
    with psycopg.connect(loaded) as conn:
        naming = conn.execute(
            "SELECT count(DISTINCT nct_id) FROM core.trial_interventions WHERE "
            "name ILIKE '%pembrolizumab%' OR array_to_string(other_names, '|') "
            "ILIKE '%pembrolizumab%'"
        ).fetchone()[0]
    assert naming > 0
    assert count(loaded, "enriched.trial_drugs", "drug_key = 'pembrolizumab'") == naming
    result = _profile(instance, resources, "pembrolizumab")
    assert result.success
    metadata = result.asset_materializations_for_node("enriched__drug_profiles")[0].metadata
    assert "rules-only" in str(metadata["llm.mode"].value)
    assert (
        count(
            loaded,
            "enriched.drug_profiles",
            "drug_key = 'pembrolizumab' AND modality = 'monoclonal antibody' "
            "AND extracted_by = 'rules'",
        )
        == 1
    )


def test_the_llm_is_asked_once_per_unknown_drug_and_never_again(
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    loaded: str,
    registered: list[str],
) -> None:
    with psycopg.connect(loaded) as conn:
        conn.execute(
            "INSERT INTO enriched.drugs (drug_key, name) VALUES ('zz-unstemmed', 'Zorblat X')"
        )
    instance.add_dynamic_partitions("drugs", ["zz-unstemmed"])
    with OpenAICompatibleServer() as server:
        with_llm = {
            **resources,
            "openai": OpenAIResource(api_key="test", base_url=server.url),
            "llm": LlmSettings(enabled=True, model="test-model", max_calls_per_run=50),
        }
        first = _profile(instance, with_llm, "zz-unstemmed")
        assert first.success and server.calls == 1
        second = _profile(instance, with_llm, "zz-unstemmed")
        assert second.success and server.calls == 1  # answered from ops.llm_cache
    assert (
        count(
            loaded,
            "enriched.drug_profiles",
            "drug_key = 'zz-unstemmed' AND extracted_by = 'llm:test-model' "
            "AND prompt_version IS NOT NULL",
        )
        == 1
    )
    metadata = first.asset_materializations_for_node("enriched__drug_profiles")[0].metadata
    assert metadata["openai.test-model.calls"].value == 1


def test_every_site_of_a_day_ends_with_coordinates_or_a_reason(
    instance: dg.DagsterInstance, resources: dict[str, object], loaded: str
) -> None:
    with psycopg.connect(loaded) as conn:
        day, sites = conn.execute(
            "SELECT t.partition_date, count(*) FROM core.trial_sites s JOIN core.trials t "
            "USING (nct_id) GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
        ).fetchone()
        conn.execute(  # as if the registry had given no point for these sites
            "UPDATE core.trial_sites SET latitude = NULL, longitude = NULL WHERE nct_id IN "
            "(SELECT nct_id FROM core.trials WHERE partition_date = %s)",
            (day,),
        )
    asset = enrichment.build_site_geocodes(daily_partitions("2006-01-01"))
    result = dg.materialize(
        [asset], instance=instance, resources=resources, partition_key=day.isoformat()
    )
    assert result.success
    assert count(loaded, "enriched.site_geocodes") == sites
    placed = count(loaded, "enriched.site_geocodes", "source LIKE 'gazetteer:%'")
    assert placed >= 0.85 * sites
    assert (
        count(loaded, "enriched.site_geocodes", "latitude IS NULL AND coalesce(reason, '') = ''")
        == 0
    )
    again = dg.materialize(
        [asset], instance=instance, resources=resources, partition_key=day.isoformat()
    )
    metadata = again.asset_materializations_for_node("enriched__site_geocodes")[-1].metadata
    assert metadata["updated"].value == metadata["inserted"].value == 0


def test_a_budget_of_n_calls_stops_the_llm_at_n_and_records_the_rest(
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    loaded: str,
    registered: list[str],
) -> None:
    unknown = [f"zz-unstemmed-{i}" for i in range(5)]
    with psycopg.connect(loaded) as conn:
        for key in unknown:
            conn.execute(
                "INSERT INTO enriched.drugs (drug_key, name) VALUES (%s, %s)",
                (key, f"Zorblat {key[-1]}"),
            )
    instance.add_dynamic_partitions("drugs", unknown)
    with OpenAICompatibleServer() as server:
        budgeted = {
            **resources,
            "openai": OpenAIResource(api_key="test", base_url=server.url),
            "llm": LlmSettings(enabled=True, model="test-model", max_calls_per_run=3),
        }
        result = dg.materialize(
            [enrichment.drug_profiles],
            instance=instance,
            resources=budgeted,
            tags={
                "dagster/asset_partition_range_start": unknown[0],
                "dagster/asset_partition_range_end": unknown[-1],
            },
        )
        assert result.success
        assert server.calls == 3
    assert count(loaded, "enriched.drug_profiles", "extracted_by = 'llm:test-model'") == 3
    assert (
        count(
            loaded,
            "enriched.drug_profiles",
            "extracted_by = 'none' AND note LIKE '%budget%' AND drug_key LIKE 'zz-unstemmed-%'",
        )
        == 2
    )


def test_trial_features_of_a_day_are_extracted_by_rules_and_rewritten_only_when_changed(
    instance: dg.DagsterInstance, resources: dict[str, object], loaded: str
) -> None:
    with psycopg.connect(loaded) as conn:
        day, trials = conn.execute(
            "SELECT partition_date, count(*) FROM core.trials t WHERE EXISTS (SELECT 1 FROM "
            "core.trial_conditions c WHERE c.nct_id = t.nct_id "
            "AND (c.name ILIKE '%lung cancer%' OR c.name ILIKE '%nsclc%')) "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
        ).fetchone()
        total = conn.execute(
            "SELECT count(*) FROM core.trials WHERE partition_date = %s", (day,)
        ).fetchone()[0]
    asset = enrichment.build_trial_features(daily_partitions("2006-01-01"))
    first = dg.materialize(
        [asset], instance=instance, resources=resources, partition_key=day.isoformat()
    )
    assert first.success
    assert count(loaded, "enriched.trial_features") == total
    assert (
        count(
            loaded,
            "enriched.trial_features",
            "'lung' = ANY(tumor_areas) AND extracted_by = 'rules' AND rules_version <> ''",
        )
        >= trials
    )
    again = dg.materialize(
        [asset], instance=instance, resources=resources, partition_key=day.isoformat()
    )
    metadata = again.asset_materializations_for_node("enriched__trial_features")[-1].metadata
    assert metadata["unchanged"].value == total
    assert metadata["updated"].value == metadata["inserted"].value == 0


def _features_answer(request: dict) -> dict:
    """A breast-cancer, second-line answer with two partners, whatever the trial."""
    return {
        "tumor_areas": ["breast"],
        "biomarkers": ["HER2-positive"],
        "line_of_therapy": "second-line",
        "combination_partners": ["trastuzumab", "pertuzumab"],
    }


def test_an_llm_fills_what_the_rules_leave_open_and_the_answer_is_cached(
    instance: dg.DagsterInstance, resources: dict[str, object], loaded: str
) -> None:
    with psycopg.connect(loaded) as conn:
        row = conn.execute(
            "SELECT t.partition_date FROM core.trials t WHERE t.nct_id = 'NCT04571398'"
        ).fetchone()
    assert row is not None  # its only condition is "Cancer": no tumor area by rules
    day = row[0].isoformat()
    asset = enrichment.build_trial_features(daily_partitions("2006-01-01"))
    assert dg.materialize([asset], instance=instance, resources=resources, partition_key=day)
    with psycopg.connect(loaded) as conn:
        by_rules = dict(
            conn.execute(
                "SELECT nct_id, value_sources FROM enriched.trial_features "
                "WHERE partition_date = %s",
                (day,),
            ).fetchall()
        )
    assert all(set(sources.values()) <= {"rules"} for sources in by_rules.values())
    with OpenAICompatibleServer(responder=_features_answer) as server:
        with_llm = {
            **resources,
            "openai": OpenAIResource(api_key="test", base_url=server.url),
            "llm": LlmSettings(enabled=True, model="test-model", max_calls_per_run=50),
        }
        first = dg.materialize([asset], instance=instance, resources=with_llm, partition_key=day)
        calls = server.calls
        assert calls >= 1
        second = dg.materialize([asset], instance=instance, resources=with_llm, partition_key=day)
        assert server.calls == calls
        # The answered trials hold the digest of their text under this model and prompt: the
        # second run asks nothing, not even the cache.
        metadata = second.asset_materializations_for_node("enriched__trial_features")[-1].metadata
        assert metadata["llm.cached"].value == metadata["llm.called"].value == 0
    assert (
        count(
            loaded,
            "enriched.trial_features",
            "nct_id = 'NCT04571398' AND tumor_areas = '{breast}' "
            "AND line_of_therapy = 'second-line' AND extracted_by = 'llm:test-model' "
            "AND value_sources ->> 'tumor_areas' = 'llm:test-model' AND NOT unresolved "
            "AND rules_version LIKE '%+trial-features-v2'",
        )
        == 1
    )
    with psycopg.connect(loaded) as conn:
        after = dict(
            conn.execute(
                "SELECT nct_id, value_sources FROM enriched.trial_features "
                "WHERE partition_date = %s",
                (day,),
            ).fetchall()
        )
    # A value the rules found keeps 'rules'; the LLM only filled what was empty.
    for nct_id, sources in by_rules.items():
        for name, source in sources.items():
            assert after[nct_id][name] == source == "rules", (nct_id, name)
    metadata = first.asset_materializations_for_node("enriched__trial_features")[-1].metadata
    assert metadata["llm.called"].value == calls

    # Another model: the trials it would answer are derived and asked again.
    with OpenAICompatibleServer(responder=_features_answer) as server:
        other_model = {
            **resources,
            "openai": OpenAIResource(api_key="test", base_url=server.url),
            "llm": LlmSettings(enabled=True, model="other-model"),
        }
        assert dg.materialize([asset], instance=instance, resources=other_model, partition_key=day)
        assert server.calls == calls
    assert metadata["openai.test-model.calls"].value == calls


def test_an_llm_classifies_a_sponsor_the_rules_leave_as_other(
    instance: dg.DagsterInstance, resources: dict[str, object], loaded: str
) -> None:
    assert dg.materialize([enrichment.sponsors], instance=instance, resources=resources)
    with psycopg.connect(loaded) as conn:
        conn.execute(
            "INSERT INTO enriched.sponsors (sponsor_key, name, agency_class) "
            "VALUES ('zz-loupe-partners', 'Loupe Partners', 'OTHER')"
        )
        known = conn.execute(
            "SELECT sponsor_key FROM enriched.sponsors WHERE agency_class = 'INDUSTRY' "
            "ORDER BY trial_count DESC, 1 LIMIT 1"
        ).fetchone()[0]
    keys = sorted([known, "zz-loupe-partners"])
    instance.add_dynamic_partitions("sponsors", keys)
    answer = {"sponsor_class": "industry", "country": "Switzerland"}
    with OpenAICompatibleServer(responder=lambda request: answer) as server:
        with_llm = {
            **resources,
            "openai": OpenAIResource(api_key="test", base_url=server.url),
            "llm": LlmSettings(enabled=True, model="test-model", max_calls_per_run=50),
        }
        tags = {
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        }
        result = dg.materialize(
            [enrichment.sponsor_profiles], instance=instance, resources=with_llm, tags=tags
        )
        assert result.success
        assert server.calls == 1  # the industry sponsor with a site country needs no question
        assert dg.materialize(
            [enrichment.sponsor_profiles], instance=instance, resources=with_llm, tags=tags
        ).success
        assert server.calls == 1
    assert (
        count(
            loaded,
            "enriched.sponsor_profiles",
            "sponsor_key = 'zz-loupe-partners' AND sponsor_class = 'industry' "
            "AND country = 'Switzerland' AND extracted_by = 'llm:test-model' "
            "AND prompt_version = 'sponsor-profile-v1'",
        )
        == 1
    )
    assert (
        count(
            loaded,
            "enriched.sponsor_profiles",
            f"sponsor_key = '{known}' AND sponsor_class = 'industry' AND extracted_by = 'rules'",
        )
        == 1
    )


def _calls(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> list[tuple]:
    """The positional arguments of every call of `target.name` from now on."""
    calls: list[tuple] = []
    real = getattr(target, name)

    def recorded(*args: object) -> object:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(target, name, recorded)
    return calls


def _disabled_extractor(conn: psycopg.Connection) -> StructuredExtractor:
    prompt = TRIAL_FEATURES_PROMPT
    return StructuredExtractor(
        None,
        model="test-model",
        prompt_version=prompt.version,
        system_prompt=prompt.system,
        schema=prompt.schema,
        conn=conn,
    )


def _one(conn: psycopg.Connection, query: str, params: tuple = ()) -> tuple:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


# Days with the most trials or sites (each enrichment run costs a transaction a day).
_BUSIEST_DAYS = 60
# Its only condition is "Cancer": the rules leave its tumor area open for the LLM.
_OPEN_TRIAL = "NCT04571398"


def test_a_rerun_derives_again_only_trials_whose_text_day_or_rules_changed(
    loaded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect(loaded) as conn:
        days = [
            d
            for (d,) in conn.execute(
                "SELECT partition_date FROM core.trials GROUP BY 1 "
                "ORDER BY bool_or(nct_id = %s) DESC, count(*) DESC LIMIT %s",
                (_OPEN_TRIAL, _BUSIEST_DAYS),
            )
        ]
        extract_days(conn, days)  # without an LLM step, as a warehouse with rules alone would
        total = count(loaded, "enriched.trial_features")
        # With an LLM step (here without a key), the trials it would ask must be looked at:
        # every trial is derived again once.
        extractor = _disabled_extractor(conn)
        first = extract_days(conn, days, extractor=extractor)
        # Trials the rules leave open wait for an LLM answer: no digest, derived every run.
        waiting = {
            nct_id
            for (nct_id,) in conn.execute(
                "SELECT nct_id FROM enriched.trial_features WHERE input_digest IS NULL"
            )
        }
        assert sum(d.derived for d in first) == total > len(waiting)
        assert _OPEN_TRIAL in waiting
        calls = _calls(monkeypatch, features, "extract_features")

        def derived() -> set[str]:
            found = {text.nct_id for (text,) in calls}
            calls.clear()
            return found

        again = extract_days(conn, days, extractor=extractor)
        assert derived() == waiting
        assert sum(d.counts.unchanged for d in again) == total
        assert sum(d.counts.inserted + d.counts.updated for d in again) == 0

        nct_id, day = _one(
            conn,
            "SELECT nct_id, partition_date FROM core.trials t WHERE nct_id <> ALL(%s) "
            "AND partition_date = ANY(%s) AND EXISTS "
            "(SELECT 1 FROM core.trial_conditions c WHERE c.nct_id = t.nct_id) ORDER BY 1 LIMIT 1",
            (list(waiting), days),
        )
        conn.execute(
            "UPDATE core.trial_conditions SET name = 'Non-Small Cell Lung Cancer' "
            "WHERE nct_id = %s",
            (nct_id,),
        )
        changed = extract_days(conn, days, extractor=extractor)
        assert derived() == waiting | {nct_id}
        assert sum(d.counts.updated for d in changed) == 1
        stored = "SELECT tumor_areas, partition_date FROM enriched.trial_features WHERE nct_id = %s"
        areas, _ = _one(conn, stored, (nct_id,))
        assert "lung" in areas

        # The trial moves to another day with the same text: derived again, its row follows.
        other = next(d for d in days if d != day)
        conn.execute(
            "UPDATE core.trials SET partition_date = %s WHERE nct_id = %s", (other, nct_id)
        )
        extract_days(conn, [other], extractor=extractor)
        assert nct_id in derived()
        assert _one(conn, stored, (nct_id,)) == (areas, other)

        # New rules (a version bump): every trial is derived again.
        monkeypatch.setattr(features, "RULES_VERSION", "trial-features-rules-test")
        extract_days(conn, days, extractor=extractor)
        assert len(derived()) == total


def test_a_rerun_geocodes_again_only_sites_whose_address_or_geocoder_changed(
    loaded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    geocoder = shared_geocoder()
    with connect(loaded) as conn:
        days = [
            d
            for (d,) in conn.execute(
                "SELECT t.partition_date FROM core.trial_sites s JOIN core.trials t "
                "USING (nct_id) GROUP BY 1 ORDER BY count(*) DESC LIMIT %s",
                (_BUSIEST_DAYS,),
            )
        ]
        conn.execute(  # some sites without the registry's point, to be placed by the gazetteer
            "UPDATE core.trial_sites SET latitude = NULL, longitude = NULL WHERE ordinal % 2 = 0"
        )
        conn.execute(  # a point with more digits than 15 (0.30000000000000004)
            "UPDATE core.trial_sites SET latitude = 0.1::float8 + 0.2::float8 "
            "WHERE latitude IS NOT NULL AND nct_id IN "
            "(SELECT nct_id FROM core.trials WHERE partition_date = ANY(%s))",
            (days,),
        )
        first = geocode_days(conn, geocoder, days)
        total = count(loaded, "enriched.site_geocodes")
        assert total == sum(d.sites for d in first) == sum(d.geocoded for d in first) > 0
        calls = _calls(monkeypatch, Geocoder, "geocode")

        # Points are hashed as stored, not as this session would print them (rounded to 15).
        conn.execute("SET extra_float_digits = 0")
        again = geocode_days(conn, geocoder, days)
        assert calls == []
        assert sum(d.counts.unchanged for d in again) == total
        assert sum(d.geocoded for d in again) == 0

        nct_id, ordinal = _one(
            conn,
            "SELECT nct_id, ordinal FROM core.trial_sites WHERE latitude IS NULL "
            "AND country = 'United States' AND city <> 'Boston' AND nct_id IN "
            "(SELECT nct_id FROM core.trials WHERE partition_date = ANY(%s)) ORDER BY 1, 2 LIMIT 1",
            (days,),
        )
        conn.execute(
            "UPDATE core.trial_sites SET city = 'Boston', state = 'Massachusetts' "
            "WHERE nct_id = %s AND ordinal = %s",
            (nct_id, ordinal),
        )
        changed = geocode_days(conn, geocoder, days)
        assert [(site.city, site.state) for _, site in calls] == [("Boston", "Massachusetts")]
        assert sum(d.counts.updated for d in changed) == 1
        point = _one(
            conn,
            "SELECT round(latitude::numeric), round(longitude::numeric) "
            "FROM enriched.site_geocodes WHERE nct_id = %s AND ordinal = %s",
            (nct_id, ordinal),
        )
        assert point == (42, -71)

        monkeypatch.setattr(geocode, "MATCHING_VERSION", "site-geocodes-test")
        calls.clear()
        geocode_days(conn, geocoder, days)
        assert len(calls) == total


def test_rules_run_in_worker_processes_give_the_features_they_give_here(
    loaded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mapped: list[int] = []
    real_map = features.WorkerProcesses.map

    def recorded_map(self: features.WorkerProcesses, fn: object, items: list) -> list:
        mapped.append(len(items))
        return real_map(self, fn, items)  # type: ignore[arg-type]

    monkeypatch.setattr(features.WorkerProcesses, "map", recorded_map)
    monkeypatch.setattr(features, "RULES_PROCESS_MIN_TRIALS", 5)
    # Every column but updated_at.
    features_table = (
        "SELECT nct_id, tumor_areas, biomarkers, line_of_therapy, combination_partners, "
        "extracted_by, rules_version, unresolved, partition_date, value_sources, input_digest "
        "FROM enriched.trial_features ORDER BY nct_id"
    )
    with connect(loaded) as conn:
        days = [
            d
            for (d,) in conn.execute(
                "SELECT partition_date FROM core.trials GROUP BY 1 ORDER BY count(*) DESC LIMIT 8"
            )
        ]
        here = extract_days(conn, days, processes=1)
        expected = conn.execute(features_table).fetchall()
        assert mapped == []
        conn.execute("TRUNCATE enriched.trial_features")

        in_workers = extract_days(conn, days, processes=2)

        assert sum(mapped) == sum(d.derived for d in here if d.derived >= 5) > 0
        assert [(d.day, d.derived, d.counts) for d in in_workers] == [
            (d.day, d.derived, d.counts) for d in here
        ]
        assert conn.execute(features_table).fetchall() == [row for row in expected]
