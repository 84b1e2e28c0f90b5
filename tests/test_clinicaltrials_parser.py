"""ClinicalTrials.gov study parser and the core.trials DDL, against the real records."""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bioloupe_data.sources.clinicaltrials.parser import (
    CHILD_TABLES,
    TRIAL_COLUMNS,
    ParsedStudy,
    StudyParseError,
    parse_partial_date,
    parse_study,
    study_identity,
)

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
CTGOV = REALDATA / "ctgov"
ALT_SNAPSHOT = CTGOV / "alt_versions" / "NCT02552212.versionHolder-2023-12-12.json"
MIGRATION = (
    Path(__file__).resolve().parents[1]
    / "bioloupe_data"
    / "warehouse"
    / "migrations"
    / "002_core_trials.sql"
)
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BOOKKEEPING_COLUMNS = (
    "source_updated_at",
    "version_key",
    "content_hash",
    "derivation_hash",
    "partition_date",
    "normalized_at",
)
ESCAPED_MARKDOWN = re.compile(r"\\[<>*\[\]_]")


def load(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())


@cache
def real_records() -> tuple[dict[str, Any], ...]:
    return tuple(load(path) for path in sorted(CTGOV.glob("NCT*.json")))


@cache
def parsed_real_records() -> tuple[ParsedStudy, ...]:
    return tuple(parse_study(record) for record in real_records())


def record(nct_id: str) -> dict[str, Any]:
    return load(CTGOV / f"{nct_id}.json")


def trial_value(parsed: ParsedStudy, column: str) -> Any:
    return parsed.trial[TRIAL_COLUMNS.index(column)]


def child_dicts(parsed: ParsedStudy, table: str) -> list[dict[str, Any]]:
    return [dict(zip(CHILD_TABLES[table], row, strict=True)) for row in parsed.children[table]]


def all_child_dicts(table: str) -> Iterator[dict[str, Any]]:
    for parsed in parsed_real_records():
        yield from child_dicts(parsed, table)


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


# --- the real records -------------------------------------------------------------------------


def test_the_real_data_is_there() -> None:
    assert len(real_records()) == 544


def test_every_complete_real_record_parses_into_well_shaped_rows() -> None:
    for raw, parsed in zip(real_records(), parsed_real_records(), strict=True):
        nct_id = raw["protocolSection"]["identificationModule"]["nctId"]
        assert parsed.nct_id == nct_id == parsed.trial[0]
        assert len(parsed.trial) == len(TRIAL_COLUMNS)
        assert set(parsed.children) == set(CHILD_TABLES)
        for table, rows in parsed.children.items():
            assert [row[:2] for row in rows] == [(nct_id, i) for i in range(len(rows))], table
            assert all(len(row) == len(CHILD_TABLES[table]) for row in rows), table


def test_one_site_row_per_location_entry_duplicates_included() -> None:
    assert sum(len(p.children["trial_sites"]) for p in parsed_real_records()) == 2629


def test_phase_is_null_for_observational_studies_and_na_stays_na() -> None:
    phases = [trial_value(p, "phase") for p in parsed_real_records()]
    study_types = [trial_value(p, "study_type") for p in parsed_real_records()]
    assert phases.count(None) == 117
    assert {t for p, t in zip(phases, study_types, strict=True) if p is None} == {"OBSERVATIONAL"}
    assert phases.count("NA") == 234
    assert "PHASE1/PHASE2" in phases


def test_month_precision_dates_become_the_first_of_the_month() -> None:
    parsed = parse_study(record("NCT00000410"))
    assert trial_value(parsed, "start_month_year") == "2000-03"
    assert trial_value(parsed, "start_date") == date(2000, 3, 1)
    assert trial_value(parsed, "start_date_precision") == "month"
    assert trial_value(parsed, "start_date_type") is None
    assert trial_value(parsed, "completion_date") == date(2015, 4, 1)
    assert trial_value(parsed, "completion_date_type") == "ACTUAL"
    assert trial_value(parsed, "verification_date") == date(2015, 8, 1)
    assert trial_value(parsed, "last_update_posted_date") == date(2015, 8, 4)


def test_every_date_struct_keeps_its_raw_string_and_precision() -> None:
    struct_columns = {
        "startDateStruct": "start",
        "primaryCompletionDateStruct": "primary_completion",
        "completionDateStruct": "completion",
    }
    month_precision = 0
    for raw, parsed in zip(real_records(), parsed_real_records(), strict=True):
        status = raw["protocolSection"]["statusModule"]
        for struct_key, prefix in struct_columns.items():
            text = status.get(struct_key, {}).get("date")
            parsed_date = trial_value(parsed, f"{prefix}_date")
            precision = trial_value(parsed, f"{prefix}_date_precision")
            assert trial_value(parsed, f"{prefix}_month_year") == text
            if text is None:
                assert parsed_date is None and precision is None
            elif len(text) == 7:
                month_precision += 1
                assert precision == "month" and parsed_date.day == 1
                assert parsed_date.isoformat()[:7] == text
            else:
                assert precision == "day" and parsed_date.isoformat() == text
    assert month_precision > 100


def test_markdown_escapes_are_gone_from_eligibility_criteria() -> None:
    raw_criteria = [
        r["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] for r in real_records()
    ]
    assert sum(bool(re.search(r"\\[<>]", text)) for text in raw_criteria) == 237
    parsed_criteria = [row["criteria"] for row in all_child_dicts("trial_eligibilities")]
    assert len(parsed_criteria) == 544
    assert not [text for text in parsed_criteria if ESCAPED_MARKDOWN.search(text)]

    criteria = child_dicts(parse_study(record("NCT04853849")), "trial_eligibilities")[0]["criteria"]
    assert "Has BMI > 40 kg/m^2" in criteria


def test_locations_without_geo_point_have_null_coordinates() -> None:
    sites = child_dicts(parse_study(record("NCT00353704")), "trial_sites")
    assert sites[0]["name"] == "Asker and Baerum Hospital"
    assert sites[0]["latitude"] is None and sites[0]["longitude"] is None
    all_sites = list(all_child_dicts("trial_sites"))
    assert sum(site["latitude"] is None for site in all_sites) == 25
    located = next(s for s in child_dicts(parse_study(record("NCT00000410")), "trial_sites"))
    assert (located["city"], located["latitude"], located["longitude"]) == (
        "Oakland",
        37.80437,
        -122.2708,
    )


def test_lead_sponsor_comes_first_then_collaborators() -> None:
    sponsors = child_dicts(parse_study(record("NCT00000410")), "trial_sponsors")
    assert [(s["lead_or_collaborator"], s["agency_class"]) for s in sponsors] == [
        ("lead", "OTHER"),
        ("collaborator", "NIH"),
        ("collaborator", "FED"),
        ("collaborator", "NIH"),
    ]
    assert sponsors[0]["name"] == "Dartmouth-Hitchcock Medical Center"


def test_countries_are_distinct_site_countries_then_removed_ones() -> None:
    countries = child_dicts(parse_study(record("NCT02552212")), "trial_countries")
    names = [c["name"] for c in countries]
    assert len(names) == len(set(names))
    assert names[0] == "United States"
    assert (countries[-1]["name"], countries[-1]["removed"]) == ("Czech Republic", True)
    assert not any(c["removed"] for c in countries[:-1])


def test_trial_row_values_a_user_would_query() -> None:
    parsed = parse_study(record("NCT00000410"))
    assert trial_value(parsed, "source") == "Dartmouth-Hitchcock Medical Center"
    assert trial_value(parsed, "enrollment") == 501
    assert trial_value(parsed, "number_of_arms") == 2
    assert trial_value(parsed, "has_dmc") is True
    assert trial_value(parsed, "has_results") is False
    assert trial_value(parsed, "nct_id_aliases") == []
    aliased = parse_study(record("NCT02300909"))
    assert trial_value(aliased, "nct_id_aliases")
    interventions = child_dicts(parsed, "trial_interventions")
    assert interventions[0]["intervention_type"] == "PROCEDURE"
    assert interventions[0]["arm_group_labels"] == ["Surgery"]
    browse = child_dicts(parsed, "trial_browse_conditions")
    assert {b["mesh_type"] for b in browse} == {"mesh-list", "mesh-ancestor"}
    assert all(b["downcase_mesh_term"] == b["mesh_term"].lower() for b in browse)


def test_nul_characters_are_stripped_from_text() -> None:
    raw = record("NCT00000410")
    raw["protocolSection"]["identificationModule"]["briefTitle"] = "Spine\x00 Trial"
    raw["protocolSection"]["conditionsModule"]["conditions"][0] = "Herniated\x00 Disc"
    parsed = parse_study(raw)
    assert trial_value(parsed, "brief_title") == "Spine Trial"
    assert parsed.children["trial_conditions"][0][2:] == ("Herniated Disc", "herniated disc")


# --- identity ----------------------------------------------------------------------------------


def test_identity_of_a_real_record() -> None:
    identity = study_identity(record("NCT00000410"))
    assert identity.nct_id == "NCT00000410"
    assert identity.last_update_post_date == date(2015, 8, 4)
    assert identity.version_key == "2024-12-16"
    assert re.fullmatch(r"[0-9a-f]{64}", identity.content_hash)


def test_two_snapshots_differ_in_order_so_their_content_hashes_differ() -> None:
    current, older = record("NCT02552212"), load(ALT_SNAPSHOT)
    current_identity, older_identity = study_identity(current), study_identity(older)
    assert current_identity.nct_id == older_identity.nct_id
    assert current_identity.last_update_post_date == older_identity.last_update_post_date
    assert (current_identity.version_key, older_identity.version_key) == (
        "2024-01-03",
        "2023-12-12",
    )
    # Besides versionHolder, the snapshots list browse leaves/branches in another order.
    current["derivedSection"]["miscInfoModule"].pop("versionHolder")
    older["derivedSection"]["miscInfoModule"].pop("versionHolder")
    assert current != older
    assert current_identity.content_hash != older_identity.content_hash


def test_two_snapshots_derive_identical_rows() -> None:
    current, older = parse_study(record("NCT02552212")), parse_study(load(ALT_SNAPSHOT))
    assert current.trial == older.trial
    assert current.children == older.children
    assert current.derivation_hash == older.derivation_hash


def test_content_hash_ignores_only_the_version_holder() -> None:
    raw = record("NCT02552212")
    baseline = study_identity(raw)
    resnapshotted = copy.deepcopy(raw)
    resnapshotted["derivedSection"]["miscInfoModule"]["versionHolder"] = "2099-01-01"
    assert study_identity(resnapshotted).content_hash == baseline.content_hash
    assert study_identity(resnapshotted).version_key == "2099-01-01"

    without_holder = copy.deepcopy(raw)
    del without_holder["derivedSection"]["miscInfoModule"]["versionHolder"]
    assert study_identity(without_holder).version_key == ""
    assert study_identity(without_holder).content_hash == baseline.content_hash

    retitled = copy.deepcopy(raw)
    retitled["protocolSection"]["identificationModule"]["briefTitle"] += "."
    assert study_identity(retitled).content_hash != baseline.content_hash


def test_identity_and_parsing_do_not_mutate_the_input() -> None:
    raw = record("NCT02552212")
    untouched = copy.deepcopy(raw)
    study_identity(raw)
    parse_study(raw)
    assert raw == untouched
    assert "versionHolder" in raw["derivedSection"]["miscInfoModule"]


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    raw = record("NCT00000410")
    target = raw
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


_DELETE = object()
NCT_ID = ("protocolSection", "identificationModule", "nctId")
LAST_UPDATE = ("protocolSection", "statusModule", "lastUpdatePostDateStruct", "date")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(lambda: _with(NCT_ID, _DELETE), "missing_nct_id", id="no-nct-id"),
        pytest.param(lambda: _with(NCT_ID, "NCT123"), "invalid_nct_id", id="short-nct-id"),
        pytest.param(lambda: _with(NCT_ID, 410), "invalid_nct_id", id="numeric-nct-id"),
        pytest.param(
            lambda: _with(LAST_UPDATE, _DELETE), "missing_last_update_post_date", id="no-date"
        ),
        pytest.param(
            lambda: _with(LAST_UPDATE, "2015-13-45"),
            "invalid_last_update_post_date",
            id="bad-date",
        ),
        pytest.param(
            lambda: _with(LAST_UPDATE, "2015-08"),
            "invalid_last_update_post_date",
            id="month-date",
        ),
        pytest.param(lambda: [], "not_a_study", id="list"),
        pytest.param(lambda: {"hasResults": False}, "not_a_study", id="no-protocol"),
        pytest.param(lambda: {"protocolSection": "x"}, "not_a_study", id="protocol-string"),
    ],
)
def test_study_identity_rejects_unusable_records_with_a_reason(payload: Any, reason: str) -> None:
    with pytest.raises(StudyParseError) as raised:
        study_identity(payload())
    assert raised.value.reason == reason
    assert str(raised.value)


def test_parse_study_rejects_records_without_a_usable_key() -> None:
    for payload, reason in [
        (_with(NCT_ID, _DELETE), "missing_nct_id"),
        (_with(NCT_ID, "nct00000410"), "invalid_nct_id"),
        ("not a study", "not_a_study"),
    ]:
        with pytest.raises(StudyParseError) as raised:
            parse_study(payload)
        assert raised.value.reason == reason


def test_partial_records_parse_or_fail_with_a_reason() -> None:
    partial_paths = sorted((CTGOV / "partial").glob("NCT*.json"))
    assert len(partial_paths) == 22
    for path in partial_paths:
        raw = load(path)
        for function in (parse_study, study_identity):
            try:
                result = function(raw)
            except StudyParseError as error:
                assert error.reason, path.name
            else:
                assert result.nct_id == path.stem


# --- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-05-17", (date(2019, 5, 17), "day")),
        ("2019-05", (date(2019, 5, 1), "month")),
        ("2019", (date(2019, 1, 1), "year")),
        (None, (None, None)),
        ("", (None, None)),
        ("2019-13", (None, None)),
        ("2019-02-30", (None, None)),
        ("0000-01-01", (None, None)),
        ("May 2019", (None, None)),
        ("2019-5-1", (None, None)),
        ("2019-05-01T10:00", (None, None)),
    ],
)
def test_parse_partial_date(text: str | None, expected: tuple[date | None, str | None]) -> None:
    assert parse_partial_date(text) == expected


# --- derivation hash ---------------------------------------------------------------------------


def test_derivation_hash_is_deterministic() -> None:
    raw = record("NCT00000410")
    assert parse_study(raw).derivation_hash == parse_study(copy.deepcopy(raw)).derivation_hash
    assert re.fullmatch(r"[0-9a-f]{64}", parse_study(raw).derivation_hash)


@pytest.mark.parametrize(
    "path",
    [
        ("protocolSection", "contactsLocationsModule", "locations", 3, "city"),
        ("protocolSection", "conditionsModule", "keywords", 0),
        ("protocolSection", "identificationModule", "acronym"),
    ],
)
def test_derivation_hash_changes_when_one_derived_value_changes(path: tuple[Any, ...]) -> None:
    raw = record("NCT00000410")
    changed = copy.deepcopy(raw)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] += "x"
    assert parse_study(changed).derivation_hash != parse_study(raw).derivation_hash


def test_derivation_hash_ignores_what_is_not_derived() -> None:
    raw = record("NCT00000410")
    changed = copy.deepcopy(raw)
    changed["derivedSection"]["miscInfoModule"]["versionHolder"] = "2099-01-01"
    changed["protocolSection"]["contactsLocationsModule"]["overallOfficials"][0]["name"] = "X"
    assert parse_study(changed).derivation_hash == parse_study(raw).derivation_hash


# --- fuzz --------------------------------------------------------------------------------------

WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)
MALFORMED_DATES = st.one_of(
    st.sampled_from(
        ["", "2019-13", "2019-02-30", "19-05", "2019/05/01", "May 2019", "0000-00-00", "2019-5"]
    ),
    st.text(max_size=12),
)


def _slots(node: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) of a JSON document, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield node, key
        if isinstance(value, dict | list):
            yield from _slots(value)


def _mutate(data: st.DataObject, document: dict[str, Any]) -> None:
    slots = list(_slots(document))
    if not slots:
        return
    container, key = data.draw(st.sampled_from(slots))
    mutation = data.draw(st.sampled_from(["delete", "wrong_type", "nul", "bad_date"]))
    if mutation == "delete":
        container.pop(key)
    elif mutation == "wrong_type":
        container[key] = data.draw(WRONG_TYPES)
    elif mutation == "nul":
        text = container[key] if isinstance(container[key], str) else ""
        position = data.draw(st.integers(0, len(text)))
        container[key] = text[:position] + "\x00" + text[position:]
    else:
        date_slots = [s for s in slots if isinstance(s[1], str) and s[1].lower().endswith("date")]
        target, date_key = data.draw(st.sampled_from(date_slots or [(container, key)]))
        target[date_key] = data.draw(MALFORMED_DATES)


def _assert_well_formed(parsed: ParsedStudy) -> None:
    assert len(parsed.trial) == len(TRIAL_COLUMNS)
    assert not any("\x00" in s for s in strings_in(parsed.trial))
    for table, rows in parsed.children.items():
        assert all(len(row) == len(CHILD_TABLES[table]) for row in rows)
        assert not any("\x00" in s for s in strings_in(rows))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), index=st.integers(0, 543), mutation_count=st.integers(1, 6))
def test_damaged_records_only_ever_parse_or_raise_study_parse_error(
    data: st.DataObject, index: int, mutation_count: int
) -> None:
    document = orjson.loads(orjson.dumps(real_records()[index]))
    for _ in range(mutation_count):
        _mutate(data, document)
    try:
        _assert_well_formed(parse_study(document))
    except StudyParseError as error:
        assert error.reason
    try:
        study_identity(document)
    except StudyParseError as error:
        assert error.reason


# --- DDL ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def throwaway_database() -> Iterator[str]:
    """URL of a fresh database on the local PostgreSQL, dropped afterwards."""
    name = f"test_parser_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def core_schema(throwaway_database: str) -> str:
    sql = MIGRATION.read_text()
    with psycopg.connect(throwaway_database, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA core")
        connection.execute(sql)
        connection.execute(sql)
    return throwaway_database


def _columns(connection: psycopg.Connection, table: str) -> tuple[str, ...]:
    rows = connection.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'core' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return tuple(row[0] for row in rows)


def test_ddl_column_order_matches_the_parser(core_schema: str) -> None:
    with psycopg.connect(core_schema) as connection:
        assert _columns(connection, "trials") == TRIAL_COLUMNS + BOOKKEEPING_COLUMNS
        for table, columns in CHILD_TABLES.items():
            assert _columns(connection, table) == columns, table
        commented = connection.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'core' AND c.relkind = 'r'"
            " AND obj_description(c.oid, 'pg_class') LIKE '%AACT%'"
        ).fetchall()
        assert {row[0] for row in commented} == {"trials", *CHILD_TABLES}


def _copy_rows(
    connection: psycopg.Connection,
    table: str,
    columns: tuple[str, ...],
    rows: list[tuple[Any, ...]],
) -> None:
    with connection.cursor().copy(f"COPY core.{table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _bookkept_trial(raw: dict[str, Any], parsed: ParsedStudy) -> tuple[Any, ...]:
    identity = study_identity(raw)
    updated_at = datetime.combine(identity.last_update_post_date, datetime.min.time(), UTC)
    return (
        *parsed.trial,
        updated_at,
        identity.version_key,
        identity.content_hash,
        parsed.derivation_hash,
        identity.last_update_post_date,
    )


def test_every_real_record_loads_into_the_tables(core_schema: str) -> None:
    with psycopg.connect(core_schema) as connection:
        trials = [
            _bookkept_trial(raw, parsed)
            for raw, parsed in zip(real_records(), parsed_real_records(), strict=True)
        ]
        _copy_rows(connection, "trials", TRIAL_COLUMNS + BOOKKEEPING_COLUMNS[:-1], trials)
        for table, columns in CHILD_TABLES.items():
            rows = [row for parsed in parsed_real_records() for row in parsed.children[table]]
            _copy_rows(connection, table, columns, rows)

        count = connection.execute("SELECT count(*) FROM core.trial_sites").fetchone()
        assert count == (2629,)
        loaded = connection.execute(
            "SELECT start_date, start_date_precision, nct_id_aliases"
            " FROM core.trials WHERE nct_id = 'NCT00000410'"
        ).fetchone()
        assert loaded == (date(2000, 3, 1), "month", [])

        connection.execute("DELETE FROM core.trials WHERE nct_id = 'NCT00000410'")
        orphans = connection.execute(
            "SELECT count(*) FROM core.trial_sites WHERE nct_id = 'NCT00000410'"
        ).fetchone()
        assert orphans == (0,)
        connection.rollback()
