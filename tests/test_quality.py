"""The measurements and rules behind the landing checks, without Dagster: every real record
passes them, and what each rule catches."""

import json
from datetime import date, timedelta
from itertools import groupby
from pathlib import Path

import psycopg

from bioloupe_data.pipelines import clinicaltrials, pubmed
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.sources.pubmed import article_identity
from bioloupe_data.sources.pubmed.client import PubmedClient
from bioloupe_data.warehouse import quality
from bioloupe_data.warehouse.quality import DayVerdicts, DeadLetterThreshold

from conftest import CTGOV_DATA, REALDATA
from warehouse_helpers import link_files

STUDIES = sorted(CTGOV_DATA.glob("NCT*.json"))
ARTICLES = sorted((REALDATA / "pubmed" / "articles").glob("*.xml"))


def _failures(verdicts: dict[date, DayVerdicts]) -> list[tuple[date, str, str]]:
    return [
        (day, name, verdict.description)
        for day, day_verdicts in verdicts.items()
        for name in ("keys", "required_fields", "dead_letters", "completeness")
        if not (verdict := getattr(day_verdicts, name)).passed
    ]


def _last_update(path: Path) -> date:
    study = json.loads(path.read_text())
    return date.fromisoformat(
        study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"]
    )


def test_every_real_study_passes_every_rule(conn: psycopg.Connection, tmp_path: Path) -> None:
    days = sorted({_last_update(path) for path in STUDIES})
    # One chunk per month that has studies: one 20-year chunk would be 7,000 commits.
    months = [list(group) for _, group in groupby(days, key=lambda d: (d.year, d.month))]
    fetched: set[date] = set()
    with ReplayServer(link_files(STUDIES, tmp_path / "served")) as server:
        client = ClinicalTrialsClient.create(server.url, "all")
        for month in months:
            landed = clinicaltrials.land_range(conn, client, month[0], month[-1], run_id="r")
            fetched |= {day.day for day in landed}
        client.close()

    verdicts = quality.judge_days(
        conn, "clinicaltrials_gov", days[0], days[-1], DeadLetterThreshold()
    )

    assert sum(v.keys.metadata["documents"] for v in verdicts.values()) == len(STUDIES)
    assert [f for f in _failures(verdicts) if f[0] in fetched] == []
    # The days between the chunks were never fetched: only the completeness check can tell.
    assert {(day, name) for day, name, _ in _failures(verdicts)} == {
        (day, "completeness") for day in verdicts if day not in fetched
    }


def test_every_real_article_passes_every_rule(conn: psycopg.Connection, tmp_path: Path) -> None:
    days = sorted({article_identity(path.read_bytes()).modified for path in ARTICLES})
    months = [list(group) for _, group in groupby(days, key=lambda d: (d.year, d.month))]
    verdicts: dict[date, DayVerdicts] = {}
    with ReplayServer(link_files(ARTICLES, tmp_path / "served")) as server:
        client = PubmedClient.create(server.url, "all[sb]")
        for month in months:
            pubmed.land_range(conn, client, month[0], month[-1], run_id="r")
            verdicts |= quality.judge_days(
                conn, "pubmed", month[0], month[-1], DeadLetterThreshold()
            )
        client.close()

    assert _failures(verdicts) == []
    documents = sum(v.required_fields.metadata["documents"] for v in verdicts.values())
    assert documents == len(ARTICLES)


def _land(conn: psycopg.Connection, url: str, start: date, end: date, run_id: str) -> None:
    client = ClinicalTrialsClient.create(url, "all")
    clinicaltrials.land_range(conn, client, start, end, run_id=run_id)
    client.close()


def test_a_chunk_partly_fetched_again_is_judged_on_what_is_left_of_it(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    first, last = date(2025, 4, 1), date(2025, 4, 30)
    with ReplayServer(link_files(STUDIES, tmp_path / "served")) as server:
        _land(conn, server.url, first, last, "month")
        _land(conn, server.url, date(2025, 4, 20), last, "retry")  # a later, shorter run

    verdicts = quality.judge_days(conn, "clinicaltrials_gov", first, last, DeadLetterThreshold())

    assert _failures(verdicts) == []
    early = verdicts[first].completeness
    assert early.metadata["chunk"] == f"{first}..{last}"
    assert early.metadata["chunk_days_still_recorded"] == 19
    assert early.metadata["fetch_run_id"] == "month"
    assert verdicts[last].completeness.metadata["chunk"] == f"2025-04-20..{last}"

    # Days never fetched fail; a recorded total the rows do not reach fails every day of it.
    conn.execute(
        "UPDATE ops.partition_fetches SET source_total = source_total + 1 WHERE run_id = 'retry'"
    )
    verdicts = quality.judge_days(
        conn, "clinicaltrials_gov", first - timedelta(days=1), last, DeadLetterThreshold()
    )
    failed = {(day, name) for day, name, _ in _failures(verdicts)}
    retried = {date(2025, 4, 20) + timedelta(days=i) for i in range(11)}
    assert failed == {(day, "completeness") for day in {first - timedelta(days=1), *retried}}
    assert "1 missing" in verdicts[last].completeness.description


def test_keys_unlike_the_sources_and_payloads_that_disagree_are_caught(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    with ReplayServer(link_files(STUDIES, tmp_path / "served")) as server:
        _land(conn, server.url, date(2025, 4, 1), date(2025, 4, 30), "month")
    conn.execute(
        "UPDATE raw.documents SET doc_id = 'NCT0000000X' "
        "WHERE doc_id = (SELECT min(doc_id) FROM raw.documents WHERE partition_date = '2025-04-04')"
    )
    conn.execute(
        "UPDATE raw.documents SET payload = jsonb_set(payload, "
        "'{protocolSection,identificationModule,nctId}', '\"NCT99999999\"') "
        "WHERE doc_id = (SELECT max(doc_id) FROM raw.documents WHERE partition_date = '2025-04-04')"
    )

    day = quality.judge_days(
        conn, "clinicaltrials_gov", date(2025, 4, 4), date(2025, 4, 4), DeadLetterThreshold()
    )[date(2025, 4, 4)]

    assert not day.keys.passed
    assert day.keys.metadata["malformed_keys"] == 1
    assert day.keys.metadata["keys_differing_from_payload"] == 1
    sample = day.keys.metadata["offending_keys_sample"]
    assert sample[0] == "NCT0000000X: not NCT########"
    assert sample[1].endswith(": payload states NCT99999999")
    assert day.required_fields.passed and day.completeness.passed
