"""Synthetic studies: determinism, counts, ids, realism and size against the real records.

Real sizes are measured here from ``shared/realdata/ctgov`` as compact JSON (what the replay
server sends). At the time of writing, in bytes: p5 5,550, p10 6,591, p25 8,298, p50 11,010,
p75 15,130, p90 23,282, p99 92,335, max 223,540 (the indented files on disk have a median of
about 14 KB).
"""

from __future__ import annotations

import random
import re
import statistics
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bioloupe_data.replay.server import ReplayServer
from bioloupe_data.replay.store import StudyStore
from bioloupe_data.replay.synth import (
    ID_SPACE,
    SynthSummary,
    synthetic_nct_id,
    synthetic_study,
    write_synthetic,
)

REALDATA = Path(__file__).parents[1].parent / "shared" / "realdata"
CTGOV = REALDATA / "ctgov"
END = date(2025, 3, 31)


def _studies_by_file(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        path.stem: orjson.loads(path.read_bytes())["studies"]
        for path in sorted((out / "ctgov").glob("*.json"))
    }


def _all_studies(out: Path) -> list[dict[str, Any]]:
    return [study for studies in _studies_by_file(out).values() for study in studies]


def _nct_id(study: dict[str, Any]) -> str:
    return study["protocolSection"]["identificationModule"]["nctId"]


def _percentile(sizes: list[int], fraction: float) -> int:
    ordered = sorted(sizes)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """5,000 synthetic studies (10 days x 500), the sample the module docstring measured."""
    out = tmp_path_factory.mktemp("synth-sample")
    write_synthetic(out, days=10, per_day=500, seed=1, end=END)
    return _all_studies(out)


@pytest.fixture(scope="module")
def real_sizes() -> list[int]:
    paths = sorted(CTGOV.glob("NCT*.json"))
    assert len(paths) == 544, f"real data not found at {CTGOV}"
    return [len(orjson.dumps(orjson.loads(path.read_bytes()))) for path in paths]


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for child in value.values():
            yield from _walk(child)
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child)


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    first = write_synthetic(tmp_path / "a", days=3, per_day=40, seed=7, end=END)
    second = write_synthetic(tmp_path / "b", days=3, per_day=40, seed=7, end=END)
    other_seed = write_synthetic(tmp_path / "c", days=3, per_day=40, seed=8, end=END)
    names = sorted(path.name for path in (tmp_path / "a" / "ctgov").iterdir())
    assert first == second
    assert len(names) == 3
    for name in names:
        a_bytes = (tmp_path / "a" / "ctgov" / name).read_bytes()
        assert a_bytes == (tmp_path / "b" / "ctgov" / name).read_bytes()
        assert a_bytes != (tmp_path / "c" / "ctgov" / name).read_bytes()
    assert other_seed.studies == first.studies


def test_one_file_per_day_with_exactly_per_day_studies(tmp_path: Path) -> None:
    summary = write_synthetic(tmp_path, days=4, per_day=25, seed=3, end=END)
    by_file = _studies_by_file(tmp_path)
    days = [(END - timedelta(days=offset)).isoformat() for offset in range(3, -1, -1)]
    assert list(by_file) == days
    assert summary == SynthSummary(
        studies=100,
        files=4,
        bytes=sum(path.stat().st_size for path in (tmp_path / "ctgov").iterdir()),
        first_day=date(2025, 3, 28),
        last_day=END,
    )
    for day, studies in by_file.items():
        assert len(studies) == 25
        for study in studies:
            update = study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]
            assert update == {"date": day, "type": "ACTUAL"}
            assert study["derivedSection"]["miscInfoModule"]["versionHolder"] == "2025-04-01"


def test_end_defaults_to_yesterday_utc(tmp_path: Path) -> None:
    summary = write_synthetic(tmp_path, days=1, per_day=1)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert summary.last_day == summary.first_day == yesterday
    assert (tmp_path / "ctgov" / f"{yesterday.isoformat()}.json").is_file()


def test_invalid_sizes_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_synthetic(tmp_path, days=0, per_day=5)
    with pytest.raises(ValueError):
        write_synthetic(tmp_path, days=11, per_day=ID_SPACE // 10)


def test_ids_are_unique_and_never_real(sample: list[dict[str, Any]]) -> None:
    ids = [_nct_id(study) for study in sample]
    real_ids = {path.stem for path in CTGOV.rglob("NCT*.json")}
    assert len(set(ids)) == len(ids) == 5000
    assert all(re.fullmatch(r"NCT9\d{7}", nct_id) for nct_id in ids)
    assert real_ids and not set(ids) & real_ids


def test_id_mapping_is_a_bijection_on_a_prefix() -> None:
    ids = {synthetic_nct_id(serial) for serial in range(200_000)}
    assert len(ids) == 200_000
    with pytest.raises(ValueError):
        synthetic_nct_id(ID_SPACE)


def test_size_distribution_close_to_real(
    sample: list[dict[str, Any]], real_sizes: list[int]
) -> None:
    sizes = [len(orjson.dumps(study)) for study in sample]
    real_median = statistics.median(real_sizes)
    synthetic_median = statistics.median(sizes)
    assert 10_000 < real_median < 12_000
    assert abs(synthetic_median / real_median - 1) <= 0.25
    # A similar long tail: upper percentiles relative to the median within a factor of 1.5.
    for fraction in (0.9, 0.99):
        real_ratio = _percentile(real_sizes, fraction) / real_median
        synthetic_ratio = _percentile(sizes, fraction) / synthetic_median
        assert real_ratio / 1.5 <= synthetic_ratio <= real_ratio * 1.5, fraction
    assert max(sizes) > 100_000


def test_structure_and_variety_like_real_records(sample: list[dict[str, Any]]) -> None:
    protocols = [study["protocolSection"] for study in sample]
    locations = [
        location
        for protocol in protocols
        for location in protocol.get("contactsLocationsModule", {}).get("locations", [])
    ]
    interventions = [
        intervention
        for protocol in protocols
        for intervention in protocol.get("armsInterventionsModule", {}).get("interventions", [])
    ]
    date_structs = [
        struct
        for protocol in protocols
        for key, struct in protocol["statusModule"].items()
        if key.endswith("DateStruct")
    ]
    countries = Counter(location["country"] for location in locations)
    location_counts = [
        len(p.get("contactsLocationsModule", {}).get("locations", [])) for p in protocols
    ]

    assert any("officialTitle" not in p["identificationModule"] for p in protocols)
    assert any("acronym" in p["identificationModule"] for p in protocols)
    assert {"Korea, Republic of", "Turkey (Türkiye)", "United States"} <= set(countries)
    assert any(not location["city"].isascii() for location in locations)
    for key in ("facility", "state", "zip", "status", "geoPoint"):
        assert any(key not in location for location in locations), key
        assert any(key in location for location in locations), key
    assert statistics.median(location_counts) <= 2
    assert max(location_counts) > 100
    assert any(len(struct["date"]) == 7 for struct in date_structs)
    assert any("type" not in struct for struct in date_structs)
    assert all(re.fullmatch(r"\d{4}-\d{2}", p["statusModule"]["statusVerifiedDate"])
               for p in protocols)  # fmt: skip
    assert {"DRUG", "BIOLOGICAL", "PROCEDURE", "RADIATION", "DEVICE", "OTHER"} <= {
        i["type"] for i in interventions
    }
    assert any("otherNames" in i for i in interventions)
    assert any("armGroupLabels" not in i for i in interventions)
    names = {i["name"] for i in interventions}
    assert {"Pembrolizumab", "Osimertinib", "Olaparib", "Trastuzumab deruxtecan"} <= names
    criteria = " ".join(p["eligibilityModule"]["eligibilityCriteria"] for p in protocols)
    for escape in ("\\<", "\\>", "\\*", "\\["):
        assert escape in criteria
    assert any("conditionBrowseModule" not in s["derivedSection"] for s in sample)
    assert any(s["hasResults"] and "resultsSection" in s for s in sample)
    assert all(s["hasResults"] == ("resultsSection" in s) for s in sample)


def test_design_rules_hold_per_study(sample: list[dict[str, Any]]) -> None:
    statuses = Counter()
    for study in sample:
        protocol = study["protocolSection"]
        design = protocol["designModule"]
        status = protocol["statusModule"]
        statuses[status["overallStatus"]] += 1
        if design["studyType"] == "OBSERVATIONAL":
            assert "phases" not in design
        else:
            assert design["phases"]
        stopped = status["overallStatus"] in ("TERMINATED", "WITHDRAWN")
        assert not stopped or "whyStopped" in status
        assert status["studyFirstPostDateStruct"]["date"] <= status[
            "lastUpdatePostDateStruct"]["date"]  # fmt: skip
    assert statuses["RECRUITING"] > statuses["WITHDRAWN"] > 0
    assert sum(s["protocolSection"]["designModule"]["studyType"] == "OBSERVATIONAL"
               for s in sample) > 500  # fmt: skip


def test_optional_values_are_absent_rather_than_null(sample: list[dict[str, Any]]) -> None:
    for study in sample[:300]:
        assert all(value is not None for value in _walk(study))


def test_collaborators_and_sponsor_classes(sample: list[dict[str, Any]]) -> None:
    sponsors = [study["protocolSection"]["sponsorCollaboratorsModule"] for study in sample]
    collaborator_counts = Counter(len(s.get("collaborators", [])) for s in sponsors)
    classes = {c["class"] for s in sponsors for c in s.get("collaborators", [])}
    assert set(collaborator_counts) == {0, 1, 2, 3, 4}
    assert {"INDUSTRY", "OTHER", "NIH", "OTHER_GOV", "NETWORK"} <= classes


def test_a_single_study_depends_only_on_the_rng_state() -> None:
    first = synthetic_study(random.Random(5), "NCT90000001", END, "2025-04-01")
    second = synthetic_study(random.Random(5), "NCT90000001", END, "2025-04-01")
    assert orjson.dumps(first) == orjson.dumps(second)


def test_store_and_server_serve_synthetic_days(tmp_path: Path) -> None:
    write_synthetic(tmp_path, days=5, per_day=40, seed=2, end=END)
    store = StudyStore.from_folder(tmp_path)
    assert len(store) == 200
    assert store.skipped_files == 0
    with (
        ReplayServer(tmp_path) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        response = http.get(
            "/api/v2/studies",
            params={
                "filter.advanced": "AREA[LastUpdatePostDate]RANGE[2025-03-28,2025-03-29]",
                "sort": "LastUpdatePostDate",
                "pageSize": "1000",
                "countTotal": "true",
            },
        )
        body = response.json()
        days = [s["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"]
                for s in body["studies"]]  # fmt: skip
        assert body["totalCount"] == 80
        assert days == ["2025-03-28"] * 40 + ["2025-03-29"] * 40
        assert http.get("/api/v2/version").json()["dataTimestamp"] == "2025-04-01T00:00:00"


def test_a_few_thousand_studies_are_generated(tmp_path: Path) -> None:
    summary = write_synthetic(tmp_path, days=4, per_day=1000, seed=11, end=END)
    studies = _all_studies(tmp_path)
    assert summary.studies == len(studies) == 4000
    assert len({_nct_id(study) for study in studies}) == 4000
    assert summary.bytes > 4000 * 8_000


def test_each_day_is_reported_as_it_is_written_with_its_size(tmp_path: Path) -> None:
    reported: list[tuple[date, int]] = []
    summary = write_synthetic(
        tmp_path, 3, 4, seed=2, end=date(2024, 1, 31), on_day=lambda d, n: reported.append((d, n))
    )
    assert [day for day, _ in reported] == [date(2024, 1, 29), date(2024, 1, 30), date(2024, 1, 31)]
    assert sum(size for _, size in reported) == summary.bytes
