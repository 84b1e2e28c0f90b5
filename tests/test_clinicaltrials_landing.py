"""ClinicalTrials.gov landing and normalizing without Dagster: every real record, over every day
of the twenty years they span, served over HTTP by the replay server and fetched by the real
client, twice. The same code through Dagster, on the days holding most of them, is in
test_clinicaltrials_backfill."""

from __future__ import annotations

import json
from contextlib import closing
from datetime import date
from pathlib import Path

from bioloupe_data.pipelines import clinicaltrials
from bioloupe_data.pipelines.landing import LandedDay, days_between
from bioloupe_data.pipelines.normalize import NormalizedDay, normalize_days
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.clinicaltrials.client import ClinicalTrialsClient
from bioloupe_data.sources.clinicaltrials.parser import study_identity
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.migrate import migrate

from conftest import CTGOV_DATA
from warehouse_helpers import (
    clean_pass,
    count,
    link_files,
    pass_totals,
    warehouse_digest,
    write_counters,
)

COMPLETE_STUDIES = sorted(CTGOV_DATA.glob("NCT*.json"))
TRIALS = clinicaltrials.TRIALS_SPEC.parent.name


def _land_and_normalize(
    folder: Path, database_url: str, start: date, end: date, run_id: str
) -> tuple[list[LandedDay], list[NormalizedDay], int]:
    """Every day of start..end fetched and landed over HTTP, then normalized, as the two
    assets' steps do (on two connections each); with the number of requests answered."""
    with (
        ReplayServer(folder) as server,
        closing(ClinicalTrialsClient.create(server.url, "all")) as client,
        connect(database_url) as one,
        connect(database_url) as two,
    ):
        landed = clinicaltrials.land_range([one, two], client, start, end, run_id=run_id)
        normalized = normalize_days(
            [one, two], clinicaltrials.TRIALS_SPEC, days_between(start, end), run_id=run_id
        )
        return landed, normalized, server.request_count


def test_every_real_study_lands_once_and_a_refetch_of_every_day_rewrites_nothing(
    database_url: str, tmp_path: Path
) -> None:
    folder = link_files(COMPLETE_STUDIES, tmp_path / "served")
    updated = [
        study_identity(json.loads(p.read_bytes())).last_update_post_date for p in COMPLETE_STUDIES
    ]
    first_day, last_day = min(updated), max(updated)
    span = (last_day - first_day).days + 1
    assert len(COMPLETE_STUDIES) == 544 and span > 19 * 365
    with connect(database_url) as conn:
        migrate(conn)

    landed, normalized, _ = _land_and_normalize(folder, database_url, first_day, last_day, "one")

    assert pass_totals(landed, normalized, TRIALS) == clean_pass(span, 544, TRIALS, new=True)
    assert count(database_url, "raw.documents") == 544
    assert count(database_url, "core.trials") == 544
    assert count(database_url, "core.trial_sites") == 2629
    assert count(database_url, "ops.dead_letters") == 0
    assert count(database_url, "ops.partition_fetches") == span
    assert count(database_url, "ops.partition_fetches", "received <> landed") == 0

    counters_before = write_counters(database_url)
    rows_before = warehouse_digest(database_url)

    landed, normalized, requests = _land_and_normalize(
        folder, database_url, first_day, last_day, "two"
    )

    assert requests > 0  # it fetched them again...
    assert pass_totals(landed, normalized, TRIALS) == clean_pass(  # ...and wrote nothing
        span, 544, TRIALS, new=False
    )
    assert write_counters(database_url) == counters_before
    assert warehouse_digest(database_url) == rows_before
