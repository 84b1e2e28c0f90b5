"""ClinicalTrials.gov landing and normalizing without Dagster: every real record, over every day
of the twenty years they span, served over HTTP by the replay server and fetched by the real
client, twice. The same code through Dagster, on the days holding most of them, is in
test_clinicaltrials_backfill."""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, NoReturn

import orjson
import pytest

from bioloupe_data.pipelines import clinicaltrials
from bioloupe_data.pipelines.landing import LandedDay, days_between
from bioloupe_data.pipelines.normalize import NormalizedDay, normalize_days
from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.sources.clinicaltrials.client import ClinicalTrialsClient
from bioloupe_data.sources.clinicaltrials.pages import StudyCut, cut_page
from bioloupe_data.sources.clinicaltrials.parser import study_identity
from bioloupe_data.warehouse.database import connect
from bioloupe_data.warehouse.documents import Document, StoredVersion
from bioloupe_data.warehouse.migrate import migrate

from conftest import CTGOV_DATA, create_database, drop_database, url_for
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
    folder: Path, database_url: str, start: date, end: date, run_id: str, *, lookup: bool = True
) -> tuple[list[LandedDay], list[NormalizedDay], int]:
    """Every day of start..end fetched and landed over HTTP, then normalized, as the two
    assets' steps do (on two connections each, and the landing's lookup connection unless
    `lookup` is false); with the number of requests answered."""
    with (
        ReplayServer(folder) as server,
        closing(ClinicalTrialsClient.create(server.url, "all")) as client,
        connect(database_url) as one,
        connect(database_url) as two,
        connect(database_url) as three,
    ):
        landed = clinicaltrials.land_range(
            [one, two], client, start, end, run_id=run_id, lookup=three if lookup else None
        )
        normalized = normalize_days(
            [one, two], clinicaltrials.TRIALS_SPEC, days_between(start, end), run_id=run_id
        )
        return landed, normalized, server.request_count


def test_every_real_study_lands_once_and_a_refetch_of_every_day_rewrites_nothing(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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

    # Every page decoded (no lookup), as a first landing does.
    landed, normalized, _ = _land_and_normalize(
        folder, database_url, first_day, last_day, "one", lookup=False
    )

    assert pass_totals(landed, normalized, TRIALS) == clean_pass(span, 544, TRIALS, new=True)
    assert count(database_url, "raw.documents") == 544
    assert count(database_url, "core.trials") == 544
    assert count(database_url, "core.trial_sites") == 2629
    assert count(database_url, "ops.dead_letters") == 0
    assert count(database_url, "ops.partition_fetches") == span
    assert count(database_url, "ops.partition_fetches", "received <> landed") == 0

    counters_before = write_counters(database_url)
    rows_before = warehouse_digest(database_url)

    # Each study is the bytes stored with it: none is decoded to be recognised.
    monkeypatch.setattr(clinicaltrials, "study_identity", _not_to_be_decoded)
    landed, normalized, requests = _land_and_normalize(
        folder, database_url, first_day, last_day, "two"
    )

    assert requests > 0  # it fetched them again...
    assert pass_totals(landed, normalized, TRIALS) == clean_pass(  # ...and wrote nothing
        span, 544, TRIALS, new=False
    )
    assert write_counters(database_url) == counters_before
    assert warehouse_digest(database_url) == rows_before


def _not_to_be_decoded(study: Any) -> NoReturn:
    raise AssertionError(f"decoded {study['protocolSection']['identificationModule']['nctId']}")


def test_a_refetch_decodes_only_changed_studies_and_lands_what_decoding_every_study_would(
    admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "served"
    folder.mkdir()
    studies = {p.name: json.loads(p.read_bytes()) for p in COMPLETE_STUDIES[:60]}
    for name, study in studies.items():
        (folder / name).write_bytes(orjson.dumps(study))
    days = [study_identity(s).last_update_post_date for s in studies.values()]
    start, end = min(days), max(days)
    # The same passes into two warehouses: one as the landing asset lands (pages cut, a lookup
    # connection), one decoding every study.
    names = [create_database(admin_url) for _ in range(2)]
    cut_url, decoded_url = (url_for(admin_url, name) for name in names)
    try:
        for url in (cut_url, decoded_url):
            with connect(url) as conn:
                migrate(conn)
            _land_and_normalize(folder, url, start, end, "one", lookup=url == cut_url)

        # The next snapshot: every study carries a new snapshot date, one is amended (a new
        # title, posted on the range's last day) and one comes in an earlier snapshot than the
        # stored one (identical content converges on the earliest).
        amended, earlier, *_ = studies.values()
        for study in studies.values():
            _misc(study)["versionHolder"] = "2099-01-01"
        _misc(earlier)["versionHolder"] = "1999-01-01"
        amended["protocolSection"]["identificationModule"]["briefTitle"] += " (amended)"
        amended["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"] = str(end)
        for name, study in studies.items():
            (folder / name).write_bytes(orjson.dumps(study))
        decoded: list[str] = []

        def counted(study: Any) -> Any:
            decoded.append(study["protocolSection"]["identificationModule"]["nctId"])
            return study_identity(study)

        monkeypatch.setattr(clinicaltrials, "study_identity", counted)
        landed, _, _ = _land_and_normalize(folder, cut_url, start, end, "two")
        assert decoded == [_nct(amended)]
        monkeypatch.undo()
        _land_and_normalize(folder, decoded_url, start, end, "two", lookup=False)

        assert sum(d.counts.updated for d in landed) == 2  # the amended and the earlier snapshot
        assert sum(d.counts.unchanged for d in landed) == len(studies) - 2
        assert warehouse_digest(cut_url) == warehouse_digest(decoded_url)
        with connect(cut_url) as conn:
            versions = dict(conn.execute("SELECT doc_id, version_key FROM raw.documents"))
        assert versions[_nct(earlier)] == "1999-01-01"
        assert versions[_nct(amended)] == "2099-01-01"
        assert "2099-01-01" not in {v for k, v in versions.items() if k != _nct(amended)}
    finally:
        for name in names:
            drop_database(admin_url, name)


def _misc(study: dict[str, Any]) -> dict[str, Any]:
    misc: dict[str, Any] = study["derivedSection"]["miscInfoModule"]
    return misc


def _nct(study: dict[str, Any]) -> str:
    nct_id: str = study["protocolSection"]["identificationModule"]["nctId"]
    return nct_id


def test_studies_landed_before_digests_get_theirs_on_their_next_refetch(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = link_files(COMPLETE_STUDIES[:40], tmp_path / "served")
    days = [
        study_identity(json.loads(p.read_bytes())).last_update_post_date
        for p in COMPLETE_STUDIES[:40]
    ]
    start, end = min(days), max(days)
    with connect(database_url) as conn:
        migrate(conn)
    _land_and_normalize(folder, database_url, start, end, "one")
    with connect(database_url) as conn:
        digests = dict(conn.execute("SELECT doc_id, source_digest FROM raw.documents"))
        # As a warehouse landed before migration 012 holds them.
        conn.execute("UPDATE raw.documents SET source_digest = NULL")
    assert len(digests) == 40 and None not in digests.values()

    landed, _, _ = _land_and_normalize(folder, database_url, start, end, "two")

    assert sum(d.counts.unchanged for d in landed) == 40  # the documents themselves untouched
    with connect(database_url) as conn:
        assert dict(conn.execute("SELECT doc_id, source_digest FROM raw.documents")) == digests
    monkeypatch.setattr(clinicaltrials, "study_identity", _not_to_be_decoded)
    landed, _, _ = _land_and_normalize(folder, database_url, start, end, "three")
    assert sum(d.counts.unchanged for d in landed) == 40


def _stored_row(study: dict[str, Any], digest: bytes | None) -> StoredVersion:
    identity = study_identity(study)
    return StoredVersion(
        source_updated_at=datetime.combine(identity.last_update_post_date, time(), UTC),
        version_key=identity.version_key,
        content_hash=identity.content_hash,
        partition_date=identity.last_update_post_date,
        source_digest=digest,
    )


def test_a_stored_digest_stands_for_a_study_only_if_it_leaves_out_the_snapshot_date() -> None:
    study = json.loads(COMPLETE_STUDIES[0].read_bytes())
    landed = clinicaltrials._to_document(study)
    stored = _stored_row(study, landed.source_digest)
    _misc(study)["versionHolder"] = "2099-01-01"
    (cut,) = _cuts_of(study)

    recognised = clinicaltrials._stored_document(cut, stored)
    assert _as_text(recognised) == clinicaltrials._to_document(orjson.loads(cut.raw))
    assert recognised is not None and recognised.version_key == "2099-01-01"
    # A stored study without a snapshot date: the key the digest left out is something else.
    assert clinicaltrials._stored_document(cut, stored._replace(version_key="")) is None
    # A digest leaving nothing out stands for a stored study without a snapshot date only.
    del _misc(study)["versionHolder"]
    (plain,) = _cuts_of(study)
    assert plain.digest.version_holder is None
    stored_plain = stored._replace(source_digest=plain.digest.digest)
    assert clinicaltrials._stored_document(plain, stored_plain) is None
    recognised = clinicaltrials._stored_document(plain, stored_plain._replace(version_key=""))
    assert _as_text(recognised) == clinicaltrials._to_document(orjson.loads(plain.raw))


def _as_text(document: Document | None) -> Document | None:
    """A recognised document carries its payload as bytes, a decoded one as text."""
    if document is None or isinstance(document.payload_json, str):
        return document
    return replace(document, payload_json=document.payload_json.decode())


def _cuts_of(*studies: Any) -> list[StudyCut]:
    page = cut_page(b'{"studies":[' + b",".join(orjson.dumps(s) for s in studies) + b"]}")
    assert page is not None
    return page.cuts


def test_a_recognised_study_dead_lettered_keeps_its_nct_id_and_payload() -> None:
    study = json.loads(COMPLETE_STUDIES[0].read_bytes())
    document = clinicaltrials._to_document(study)
    recognised = replace(document, payload_json=document.payload_json.encode())
    letter = clinicaltrials._dead_letter(recognised, date(2024, 1, 1), "r", "d", "landing")
    assert letter.doc_id == _nct(study)
    assert letter.payload_excerpt == orjson.dumps(study).decode()[:2000]
