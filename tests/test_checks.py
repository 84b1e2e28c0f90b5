"""The landing assets' blocking checks in the source jobs, the check jobs and their schedules, and
the freshness checks: real ClinicalTrials.gov records served by the replay server, landed and
normalized by Dagster range runs on a PostgreSQL instance."""

import json
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from bioloupe_data.assets.ingestion import CLINICALTRIALS_LANDING_KEY, PUBMED_LANDING_KEY
from bioloupe_data.assets.normalize import TRIALS_KEY
from bioloupe_data.checks import (
    COMPLETENESS_CHECK,
    DEAD_LETTER_CHECK,
    KEYS_CHECK,
    LANDING_CHECK_NAMES,
    PER_DAY_RESULTS_MAX_DAYS,
    REQUIRED_FIELDS_CHECK,
    build_freshness_checks,
    build_landing_checks,
    freshness_check_keys,
    integrity_check_keys,
)
from bioloupe_data.definitions import build_definitions
from bioloupe_data.partitions import RANGE_END_TAG, RANGE_START_TAG
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.schedules import (
    CLINICALTRIALS_JOB_NAME,
    FRESHNESS_CHECKS_JOB_NAME,
    INTEGRITY_CHECKS_JOB_NAME,
    LANDING_CHECKS_JOB_NAME,
    LANDING_CHECKS_LOOKBACK_DAYS,
    PUBMED_JOB_NAME,
    clinicaltrials_job,
    freshness_checks_job,
    freshness_checks_schedule,
    landing_checks_job,
    landing_checks_schedule,
    pubmed_job,
)
from bioloupe_data.settings import Settings

from conftest import CTGOV_DATA
from warehouse_helpers import count, link_files

FIRST_DAY, LAST_DAY = date(2025, 4, 1), date(2025, 4, 30)
RANGE_TAGS = {RANGE_START_TAG: str(FIRST_DAY), RANGE_END_TAG: str(LAST_DAY)}
DAYS = (LAST_DAY - FIRST_DAY).days + 1
CHECKS_STEP = "clinicaltrials_gov_landing_checks"
TRIALS_STEP = "core__trials"
# What the failure tests need of the job: the enrichment steps after normalization add nothing.
LANDED_AND_NORMALIZED = [CLINICALTRIALS_LANDING_KEY, TRIALS_KEY]


def _last_update(study: dict[str, Any]) -> date:
    return date.fromisoformat(
        study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"]
    )


def _studies_in_range() -> list[Path]:
    return sorted(
        path
        for path in CTGOV_DATA.glob("NCT*.json")
        if FIRST_DAY <= _last_update(json.loads(path.read_text())) <= LAST_DAY
    )


STUDIES = _studies_in_range()


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> Iterator[tuple[ReplayServer, Path]]:
    """The real studies of a month, served by the replay server the definitions point at."""
    folder = link_files(STUDIES, tmp_path / "served")
    with ReplayServer(folder) as server:
        monkeypatch.setenv("BIOLOUPE_DATABASE_URL", database_url)
        monkeypatch.setenv("CTGOV_BASE_URL", server.url)
        monkeypatch.setenv("CTGOV_SCOPE", "all")
        monkeypatch.setenv("BIOLOUPE_START_DATE", "2006-01-01")
        for name in ("OPENAI_API_KEY", "NCBI_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        yield server, folder


def _definitions() -> dg.Definitions:
    """The code location's assets and resources with the checks, jobs and schedules of
    `checks.py` and `schedules.py`."""
    base = build_definitions(Settings.from_env())
    daily = base.resolve_asset_graph().get(CLINICALTRIALS_LANDING_KEY).partitions_def
    assert daily is not None
    landing = build_landing_checks(daily)
    freshness = build_freshness_checks()
    landing_job = landing_checks_job(landing)
    freshness_job = freshness_checks_job(freshness)
    return dg.Definitions(
        assets=base.assets,
        asset_checks=[*landing, *freshness],
        jobs=[clinicaltrials_job(), pubmed_job(), landing_job, freshness_job],
        schedules=[
            landing_checks_schedule(landing_job, daily),
            freshness_checks_schedule(freshness_job),
        ],
        resources=base.resources,
    )


def _run(
    definitions: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    tags: dict[str, str],
    **kwargs: Any,
) -> dg.ExecuteInProcessResult:
    return definitions.resolve_job_def(job_name).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False, **kwargs
    )


def _evaluations(
    result: dg.ExecuteInProcessResult, asset_key: dg.AssetKey = CLINICALTRIALS_LANDING_KEY
) -> dict[str, dict[str, dg.AssetCheckEvaluation]]:
    """check name -> partition -> evaluation."""
    found: dict[str, dict[str, dg.AssetCheckEvaluation]] = {}
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.asset_key == asset_key and evaluation.partition is not None:
            found.setdefault(evaluation.check_name, {})[evaluation.partition] = evaluation
    return found


def _failed_days(evaluations: dict[str, dg.AssetCheckEvaluation]) -> set[str]:
    return {day for day, evaluation in evaluations.items() if not evaluation.passed}


def _step_events(result: dg.ExecuteInProcessResult, step_key: str) -> list[str]:
    return [e.event_type_value for e in result.all_events if e.step_key == step_key]


def _assert_normalization_blocked(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance, database_url: str
) -> None:
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == CHECKS_STEP
    error = failure.step_failure_data.error
    assert error is not None and "blocking asset check" in error.message
    # The normalizing step never started, and Dagster says why in the run's log.
    assert "STEP_START" not in _step_events(result, TRIALS_STEP)
    assert not [m for m in result.get_asset_materialization_events() if m.asset_key == TRIALS_KEY]
    messages = [record.user_message for record in instance.all_logs(result.run_id)]
    assert any(
        f"Dependencies for step {TRIALS_STEP} failed" in m and CHECKS_STEP in m for m in messages
    )
    assert count(database_url, "core.trials") == 0
    # Every day of the range has its own recorded result, none left as merely planned.
    for name in LANDING_CHECK_NAMES:
        key = dg.AssetCheckKey(CLINICALTRIALS_LANDING_KEY, name)
        records = [
            r
            for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=500)
            if r.run_id == result.run_id
        ]
        assert len(records) == DAYS
        assert {r.status.value for r in records} <= {"SUCCEEDED", "FAILED"}


def test_a_good_range_passes_every_check_and_is_normalized_in_the_same_run(
    served: tuple[ReplayServer, Path], database_url: str, instance: dg.DagsterInstance
) -> None:
    definitions = _definitions()

    result = _run(definitions, instance, CLINICALTRIALS_JOB_NAME, RANGE_TAGS)

    assert result.success
    evaluations = _evaluations(result)
    assert set(evaluations) == set(LANDING_CHECK_NAMES)
    for name in LANDING_CHECK_NAMES:
        assert len(evaluations[name]) == DAYS, name
        assert _failed_days(evaluations[name]) == set(), name
        assert all(e.blocking for e in evaluations[name].values())
    busiest = evaluations[COMPLETENESS_CHECK]["2025-04-04"]
    assert busiest.metadata["source_total"].value == len(STUDIES)
    assert busiest.metadata["difference"].value == 0
    assert evaluations[KEYS_CHECK]["2025-04-04"].metadata["documents"].value == 3
    # Checks ran before normalization, which then wrote every trial.
    assert "STEP_SUCCESS" in _step_events(result, TRIALS_STEP)
    assert count(database_url, "core.trials") == len(STUDIES)

    # The daily schedule's run of one day is checked the same way.
    day = definitions.resolve_job_def(CLINICALTRIALS_JOB_NAME).execute_in_process(
        instance=instance, partition_key="2025-04-04", asset_selection=LANDED_AND_NORMALIZED
    )
    assert day.success
    one_day = _evaluations(day)
    assert {name: set(by_day) for name, by_day in one_day.items()} == {
        name: {"2025-04-04"} for name in LANDING_CHECK_NAMES
    }
    assert all(e.passed for by_day in one_day.values() for e in by_day.values())


def test_the_check_job_runs_alone_on_the_days_its_schedule_names(
    served: tuple[ReplayServer, Path], database_url: str, instance: dg.DagsterInstance
) -> None:
    definitions = _definitions()
    assert _run(
        definitions,
        instance,
        CLINICALTRIALS_JOB_NAME,
        RANGE_TAGS,
        asset_selection=LANDED_AND_NORMALIZED,
    ).success
    schedule = definitions.resolve_schedule_def(f"{LANDING_CHECKS_JOB_NAME}_schedule")
    assert schedule.cron_schedule == "30 10 * * *"
    tick = datetime.combine(LAST_DAY + timedelta(days=1), datetime.min.time(), UTC)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
    requests = schedule.evaluate_tick(context).run_requests or []
    assert len(requests) == 1
    first = str(LAST_DAY - timedelta(days=LANDING_CHECKS_LOOKBACK_DAYS - 1))
    assert requests[0].tags[RANGE_START_TAG] == first
    assert requests[0].tags[RANGE_END_TAG] == str(LAST_DAY)
    documents_before = count(database_url, "raw.documents")

    result = _run(definitions, instance, LANDING_CHECKS_JOB_NAME, dict(requests[0].tags))

    assert not result.get_asset_materialization_events()  # it checks, it writes nothing
    assert count(database_url, "raw.documents") == documents_before
    trials = _evaluations(result)
    for name in LANDING_CHECK_NAMES:
        assert len(trials[name]) == LANDING_CHECKS_LOOKBACK_DAYS
        assert _failed_days(trials[name]) == set(), name
    # PubMed was never landed here: every day of it is missing from ops.partition_fetches.
    pubmed = _evaluations(result, PUBMED_LANDING_KEY)
    assert len(_failed_days(pubmed[COMPLETENESS_CHECK])) == LANDING_CHECKS_LOOKBACK_DAYS
    assert "No fetch recorded" in (pubmed[COMPLETENESS_CHECK][first].description or "")
    assert _failed_days(pubmed[DEAD_LETTER_CHECK]) == set()
    assert not result.success


def _study(nct_id: str, day: date, **changes: Any) -> dict[str, Any]:
    study = json.loads(STUDIES[0].read_text())
    study["protocolSection"]["identificationModule"]["nctId"] = nct_id
    study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"] = {
        "date": str(day),
        "type": "ACTUAL",
    }
    for key, value in changes.items():
        study["protocolSection"]["identificationModule"][key] = value
    return study


def test_dead_letters_over_the_threshold_and_missing_fields_stop_normalization(
    served: tuple[ReplayServer, Path], database_url: str, instance: dg.DagsterInstance
) -> None:
    server, folder = served
    rejected_day, incomplete_day = date(2025, 4, 4), date(2025, 4, 16)
    # Three records with ids no parser accepts, on a day of three good studies (they sort after
    # that day's good ones, so they are that day's dead letters).
    broken = [_study(f"NCTX{i:02d}", rejected_day) for i in range(3)]
    (folder / "broken.json").write_text(json.dumps({"studies": broken}))
    untitled = _study("NCT99999901", incomplete_day)
    del untitled["protocolSection"]["identificationModule"]["briefTitle"]
    (folder / "NCT99999901.json").write_text(json.dumps(untitled))
    assert server.reload() == len(STUDIES) + 4

    result = _run(
        _definitions(),
        instance,
        CLINICALTRIALS_JOB_NAME,
        RANGE_TAGS,
        asset_selection=LANDED_AND_NORMALIZED,
    )

    evaluations = _evaluations(result)
    assert _failed_days(evaluations[DEAD_LETTER_CHECK]) == {str(rejected_day)}
    rejected = evaluations[DEAD_LETTER_CHECK][str(rejected_day)]
    assert rejected.severity == dg.AssetCheckSeverity.ERROR
    assert rejected.metadata["dead_letters"].value == 3
    assert rejected.metadata["received"].value == 6
    assert rejected.metadata["by_reason"].value == {"invalid_nct_id": 3}
    assert rejected.metadata["dead_letters_sample"].value == [
        f"NCTX{i:02d} (invalid_nct_id)" for i in range(3)
    ]
    assert _failed_days(evaluations[REQUIRED_FIELDS_CHECK]) == {str(incomplete_day)}
    incomplete = evaluations[REQUIRED_FIELDS_CHECK][str(incomplete_day)]
    assert incomplete.metadata["missing_by_field"].value == {"briefTitle": 1}
    assert incomplete.metadata["incomplete_sample"].value == ["NCT99999901: missing briefTitle"]
    assert _failed_days(evaluations[KEYS_CHECK]) == set()
    assert _failed_days(evaluations[COMPLETENESS_CHECK]) == set()  # rejects are accounted for
    _assert_normalization_blocked(result, instance, database_url)
    assert count(database_url, "raw.documents") == len(STUDIES) + 1


def test_a_dead_letter_threshold_set_in_run_config_lets_the_same_range_through(
    served: tuple[ReplayServer, Path], database_url: str, instance: dg.DagsterInstance
) -> None:
    server, folder = served
    broken = [_study(f"NCTX{i:02d}", date(2025, 4, 4)) for i in range(3)]
    (folder / "broken.json").write_text(json.dumps({"studies": broken}))
    server.reload()
    config = {"ops": {CHECKS_STEP: {"config": {"max_dead_letter_rate": 0.6}}}}

    result = _run(
        _definitions(),
        instance,
        CLINICALTRIALS_JOB_NAME,
        RANGE_TAGS,
        asset_selection=LANDED_AND_NORMALIZED,
        run_config=config,
    )

    assert result.success
    assert _failed_days(_evaluations(result)[DEAD_LETTER_CHECK]) == set()
    assert count(database_url, "core.trials") == len(STUDIES)


class _OvercountingProxy:
    """Forwards to the replay server, but its studies answers report `extra` more studies in
    `totalCount` than the pages then hold, as when a registry counts records it does not
    serve."""

    def __init__(self, upstream: str, extra: int) -> None:
        self.upstream, self.extra = upstream, extra
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as answer:
                    body = answer.read()
                if self.path.startswith("/api/v2/studies"):
                    page = json.loads(body)
                    if "totalCount" in page:
                        page["totalCount"] += proxy.extra
                    body = json.dumps(page).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "_OvercountingProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_range_short_of_the_source_total_fails_its_days_and_is_not_normalized(
    served: tuple[ReplayServer, Path],
    database_url: str,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _ = served
    with _OvercountingProxy(server.url, extra=2) as proxy:
        monkeypatch.setenv("CTGOV_BASE_URL", proxy.url)
        result = _run(
            _definitions(),
            instance,
            CLINICALTRIALS_JOB_NAME,
            RANGE_TAGS,
            asset_selection=LANDED_AND_NORMALIZED,
        )

    evaluations = _evaluations(result)
    incomplete = evaluations[COMPLETENESS_CHECK]
    assert len(_failed_days(incomplete)) == DAYS  # the total is the whole range's
    day = incomplete[str(FIRST_DAY)]
    assert day.severity == dg.AssetCheckSeverity.ERROR
    assert day.metadata["source_total"].value == len(STUDIES) + 2
    assert day.metadata["chunk_landed"].value == len(STUDIES)
    assert day.metadata["difference"].value == -2
    assert day.metadata["chunk"].value == f"{FIRST_DAY}..{LAST_DAY}"
    assert "2 missing" in (day.description or "")
    for name in (KEYS_CHECK, REQUIRED_FIELDS_CHECK, DEAD_LETTER_CHECK):
        assert _failed_days(evaluations[name]) == set(), name
    _assert_normalization_blocked(result, instance, database_url)
    assert count(database_url, "raw.documents") == len(STUDIES)  # landed, not normalized


def test_every_daily_asset_has_a_freshness_check_due_after_its_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BIOLOUPE_START_DATE", "2024-01-01")
    monkeypatch.delenv("BIOLOUPE_DATABASE_URL", raising=False)
    definitions = _definitions()
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    daily = {
        key
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
        and isinstance(graph.get(key).partitions_def, dg.DailyPartitionsDefinition)
    }
    assert {key.to_user_string() for key in daily} == {
        "raw/clinicaltrials_gov",
        "core/trials",
        "enriched/site_geocodes",
        "enriched/trial_features",
        "raw/pubmed",
        "core/publications",
    }
    assert {k.asset_key for k in freshness_check_keys()} == daily
    assert set(freshness_check_keys()) <= graph.asset_check_keys
    deadlines = {
        key.asset_key.to_user_string(): graph.get(key).metadata["dagster/freshness_params"].value
        for key in freshness_check_keys()
    }
    assert deadlines["core/trials"]["deadline_cron"] == "0 9 * * *"
    assert deadlines["enriched/trial_features"]["deadline_cron"] == "0 9 * * *"
    assert deadlines["core/publications"]["deadline_cron"] == "0 10 * * *"
    schedule = definitions.resolve_schedule_def(f"{FRESHNESS_CHECKS_JOB_NAME}_schedule")
    assert schedule.cron_schedule == "5 9,10 * * *"
    assert schedule.execution_timezone == "UTC"

    # Each source job runs its landing asset's blocking checks (and its assets' freshness).
    for job_name, landing in (
        (CLINICALTRIALS_JOB_NAME, CLINICALTRIALS_LANDING_KEY),
        (PUBMED_JOB_NAME, PUBMED_LANDING_KEY),
    ):
        selected = definitions.resolve_job_def(job_name).asset_layer.asset_graph.asset_check_keys
        for name in LANDING_CHECK_NAMES:
            key = dg.AssetCheckKey(landing, name)
            assert key in selected
            assert graph.get(key).blocking

    with dg.DagsterInstance.ephemeral() as instance:
        result = _run(definitions, instance, FRESHNESS_CHECKS_JOB_NAME, {})
    evaluations = result.get_asset_check_evaluations()
    assert {(e.asset_key, e.check_name) for e in evaluations} == {
        (k.asset_key, k.name) for k in freshness_check_keys()
    }
    # Nothing was ever materialized: every asset is overdue, as a warning.
    assert all(not e.passed and e.severity == dg.AssetCheckSeverity.WARN for e in evaluations)


def test_a_long_range_records_only_its_failing_days_and_still_blocks(
    served: tuple[ReplayServer, Path], database_url: str, instance: dg.DagsterInstance
) -> None:
    server, folder = served
    last = date(2025, 5, 15)
    tags = {RANGE_START_TAG: str(FIRST_DAY), RANGE_END_TAG: str(last)}
    assert (last - FIRST_DAY).days + 1 > PER_DAY_RESULTS_MAX_DAYS
    definitions = _definitions()

    good = _run(
        definitions, instance, CLINICALTRIALS_JOB_NAME, tags, asset_selection=LANDED_AND_NORMALIZED
    )

    assert good.success
    assert _evaluations(good) == {}  # every day passed: nothing recorded, one line logged
    messages = [record.user_message for record in instance.all_logs(good.run_id)]
    assert any("results recorded for failing days only" in m for m in messages)
    assert count(database_url, "core.trials") == len(STUDIES)

    untitled = _study("NCT99999902", date(2025, 5, 10))
    del untitled["protocolSection"]["identificationModule"]["briefTitle"]
    (folder / "NCT99999902.json").write_text(json.dumps(untitled))
    server.reload()

    bad = _run(
        definitions, instance, CLINICALTRIALS_JOB_NAME, tags, asset_selection=LANDED_AND_NORMALIZED
    )

    assert not bad.success
    evaluations = _evaluations(bad)
    assert {name: set(by_day) for name, by_day in evaluations.items()} == {
        REQUIRED_FIELDS_CHECK: {"2025-05-10"}
    }
    assert "STEP_START" not in _step_events(bad, TRIALS_STEP)
    assert count(database_url, "core.trials", "nct_id = 'NCT99999902'") == 0


def test_the_integrity_job_finds_child_rows_without_their_trial(
    served: tuple[ReplayServer, Path], database_url: str, instance: dg.DagsterInstance
) -> None:
    definitions = build_definitions(Settings.from_env())
    source = definitions.resolve_job_def(CLINICALTRIALS_JOB_NAME)
    assert not set(integrity_check_keys()) & set(source.asset_layer.asset_graph.asset_check_keys)
    assert _run(definitions, instance, CLINICALTRIALS_JOB_NAME, RANGE_TAGS).success

    def children_check() -> dg.AssetCheckEvaluation:
        result = _run(definitions, instance, INTEGRITY_CHECKS_JOB_NAME, {})
        assert result.success
        (evaluation,) = [
            e for e in result.get_asset_check_evaluations() if e.asset_key == TRIALS_KEY
        ]
        return evaluation

    clean = children_check()
    assert clean.passed and clean.metadata["orphans"].value == 0
    sites = count(database_url, "core.trial_sites")
    assert sites > 0

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO core.trial_sites (nct_id, ordinal) VALUES ('NCT99999999', 1)")
    broken = children_check()
    assert not broken.passed
    assert broken.metadata["trial_sites"].value == 1
    assert "trial_sites 1" in (broken.description or "")

    # Deleting trials deletes their children, once per statement.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM core.trial_sites WHERE nct_id = 'NCT99999999'")
        conn.execute("DELETE FROM core.trials")
    assert count(database_url, "core.trial_sites") == 0
    assert children_check().passed
