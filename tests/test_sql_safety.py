"""Record content never changes a statement, and names that need quoting are quoted: a study
whose texts are SQL lands as text, and a frame written to a table whose schema and name are
hostile round-trips without touching anything else."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from bioloupe_data.pipelines.clinicaltrials import TRIALS_SPEC, land_range
from bioloupe_data.pipelines.landing import days_between
from bioloupe_data.pipelines.normalize import normalize_days
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.digest import table_digest
from bioloupe_data.warehouse.frames import read_frame, write_frame
from bioloupe_data.warehouse.migrate import migrate
from bioloupe_data.warehouse.quality import orphan_counts
from bioloupe_data.warehouse.upsert import Table

from conftest import CTGOV_DATA

INJECTIONS = (
    "Robert'); DROP TABLE core.trials; --",
    '"; DELETE FROM raw.documents; --',
    "$$; TRUNCATE core.trial_sites; $$",
    "\\'; SELECT pg_sleep(10); --\t\n\\N",
)


def _hostile_study(tmp_path: Path) -> tuple[Path, dict]:
    source = sorted(CTGOV_DATA.glob("NCT*.json"))[0]
    study = json.loads(source.read_text())
    protocol = study["protocolSection"]
    protocol["identificationModule"]["briefTitle"] = INJECTIONS[0]
    protocol["identificationModule"]["officialTitle"] = INJECTIONS[3]
    protocol.setdefault("conditionsModule", {})["conditions"] = list(INJECTIONS)
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / source.name).write_text(json.dumps(study))
    return folder, study


def test_a_study_whose_texts_are_sql_lands_as_text(database_url: str, tmp_path: Path) -> None:
    folder, study = _hostile_study(tmp_path)
    nct_id = study["protocolSection"]["identificationModule"]["nctId"]
    day = date.fromisoformat(
        study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"]
    )
    with ReplayServer(folder) as server, connect(database_url) as conn:
        migrate(conn)
        tables_before = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('raw', 'core')"
        ).fetchone()
        client = ClinicalTrialsClient.create(server.url, "all")
        try:
            land_range(conn, client, day, day, run_id="sql-safety")
        finally:
            client.close()
        normalize_days(conn, TRIALS_SPEC, days_between(day, day), run_id="sql-safety")

        titles = conn.execute(
            "SELECT brief_title, official_title FROM core.trials WHERE nct_id = %s", (nct_id,)
        ).fetchone()
        conditions = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM core.trial_conditions WHERE nct_id = %s ORDER BY ordinal",
                (nct_id,),
            )
        ]
        stored = conn.execute(
            "SELECT payload #>> '{protocolSection,identificationModule,briefTitle}' "
            "FROM raw.documents WHERE doc_id = %s",
            (nct_id,),
        ).fetchone()
        tables_after = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('raw', 'core')"
        ).fetchone()
    assert titles == (INJECTIONS[0], INJECTIONS[3])
    assert conditions == list(INJECTIONS)
    assert stored == (INJECTIONS[0],)
    assert tables_after == tables_before


def test_hostile_schema_and_table_names_are_quoted_identifiers(database_url: str) -> None:
    schema, table = 'odd "schema"; DROP SCHEMA core CASCADE; --', "t'); DROP TABLE x; --"
    frame = pd.DataFrame({"id": [1, 2], "note": [INJECTIONS[0], INJECTIONS[1]]})
    with connect(database_url) as conn:
        migrate(conn)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, note text)").format(
                sql.Identifier(schema, table)
            )
        )
        counts = write_frame(conn, schema, table, frame)
        back = read_frame(conn, schema, table)
        children = {"child": Table(schema, table, ("id", "note"), ("id",))}
        orphans = orphan_counts(conn, Table(schema, table, ("id",), ("id",)), children, "id")
        digest = table_digest(conn, f"{schema}.{table}")
        core_tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'core'"
        ).fetchone()
    assert counts.inserted == 2
    assert back.to_dict("list") == frame.to_dict("list")
    assert orphans == {"child": 0}
    assert digest.startswith("2:")
    assert core_tables is not None and core_tables[0] > 0


def test_a_table_name_that_is_not_schema_qualified_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url) as conn, pytest.raises(ValueError, match=r"schema\.table"):
        table_digest(conn, "documents")
