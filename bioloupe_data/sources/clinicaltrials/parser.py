"""Parse ClinicalTrials.gov API v2 study records into `core.trials` rows and child-table rows.

Column names follow AACT (CTTI's ClinicalTrials.gov database) wherever the concept is the same.
The parser is total: any input either yields a `ParsedStudy` / `StudyIdentity` or raises
`StudyParseError` with a machine-readable reason. Values of an unexpected type are treated as
absent rather than rejected, because one odd optional field must not cost the whole record.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

import orjson

__all__ = [
    "CHILD_TABLES",
    "TRIAL_COLUMNS",
    "ParsedStudy",
    "StudyIdentity",
    "StudyParseError",
    "parse_partial_date",
    "parse_study",
    "study_identity",
]

NCT_ID_PATTERN = re.compile(r"NCT[0-9]{8}")
PARTIAL_DATE_PATTERN = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
# CommonMark backslash escapes of ASCII punctuation, which ClinicalTrials.gov adds when it
# converts eligibility text to markdown (`\>= 18`, `10\^9/L`, `1\. Male`).
MARKDOWN_ESCAPE_PATTERN = re.compile(r"\\([!-/:-@\[-`{-~])")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

Result = TypeVar("Result")

TRIAL_COLUMNS: tuple[str, ...] = (
    "nct_id",
    "brief_title",
    "official_title",
    "acronym",
    "overall_status",
    "last_known_status",
    "why_stopped",
    "phase",
    "study_type",
    "enrollment",
    "enrollment_type",
    "start_month_year",
    "start_date",
    "start_date_precision",
    "start_date_type",
    "primary_completion_month_year",
    "primary_completion_date",
    "primary_completion_date_precision",
    "primary_completion_date_type",
    "completion_month_year",
    "completion_date",
    "completion_date_precision",
    "completion_date_type",
    "verification_month_year",
    "verification_date",
    "study_first_submitted_date",
    "study_first_posted_date",
    "results_first_posted_date",
    "last_update_submitted_date",
    "last_update_posted_date",
    "source",
    "source_class",
    "org_study_id",
    "brief_summary",
    "detailed_description",
    "has_results",
    "number_of_arms",
    "allocation",
    "intervention_model",
    "primary_purpose",
    "masking",
    "has_dmc",
    "is_fda_regulated_drug",
    "is_fda_regulated_device",
    "nct_id_aliases",
)

_MESH_COLUMNS = ("nct_id", "ordinal", "mesh_id", "mesh_term", "downcase_mesh_term", "mesh_type")

CHILD_TABLES: Mapping[str, tuple[str, ...]] = {
    "trial_conditions": ("nct_id", "ordinal", "name", "downcase_name"),
    "trial_keywords": ("nct_id", "ordinal", "name", "downcase_name"),
    "trial_interventions": (
        "nct_id",
        "ordinal",
        "intervention_type",
        "name",
        "description",
        "other_names",
        "arm_group_labels",
    ),
    "trial_sponsors": ("nct_id", "ordinal", "agency_class", "lead_or_collaborator", "name"),
    "trial_sites": (
        "nct_id",
        "ordinal",
        "status",
        "name",
        "city",
        "state",
        "zip",
        "country",
        "latitude",
        "longitude",
    ),
    "trial_arms": ("nct_id", "ordinal", "group_type", "title", "description", "intervention_names"),
    "trial_references": ("nct_id", "ordinal", "pmid", "reference_type", "citation"),
    "trial_countries": ("nct_id", "ordinal", "name", "removed"),
    "trial_outcomes": ("nct_id", "ordinal", "outcome_type", "measure", "time_frame", "description"),
    "trial_browse_conditions": _MESH_COLUMNS,
    "trial_browse_interventions": _MESH_COLUMNS,
    "trial_eligibilities": (
        "nct_id",
        "ordinal",
        "sampling_method",
        "gender",
        "gender_based",
        "minimum_age",
        "maximum_age",
        "healthy_volunteers",
        "population",
        "criteria",
        "std_ages",
    ),
}


class StudyParseError(ValueError):
    """A study record that cannot be used; `reason` is a short machine-readable code."""

    reason: str

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


def _raising_only_parse_errors(parse: Callable[[Any], Result], payload: Any) -> Result:
    """Run `parse`, turning any unexpected exception into a StudyParseError."""
    try:
        return parse(payload)
    except StudyParseError:
        raise
    except Exception as exc:
        reason = f"parse_error:{type(exc).__name__}"
        raise StudyParseError(reason, f"cannot parse study: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class StudyIdentity:
    nct_id: str
    last_update_post_date: date
    version_key: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class ParsedStudy:
    nct_id: str
    trial: tuple[Any, ...]
    children: Mapping[str, list[tuple[Any, ...]]]
    derivation_hash: str


# ---------------------------------------------------------------------------------------------
# Typed accessors: anything of an unexpected type reads as absent.


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in _items(value) if isinstance(item, Mapping)]


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    # PostgreSQL rejects NUL in text values.
    return value.replace("\x00", "")


def _texts(value: Any) -> list[str]:
    return [text for text in map(_text, _items(value)) if text is not None]


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _int32(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and INT32_MIN <= value <= INT32_MAX:
        return value
    return None


def _finite_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


# ---------------------------------------------------------------------------------------------
# Dates


def parse_partial_date(value: str | None) -> tuple[date | None, str | None]:
    """Parse 'YYYY-MM-DD', 'YYYY-MM' or 'YYYY' into (first possible day, precision).

    Missing or malformed values give (None, None).
    """
    if not isinstance(value, str):
        return None, None
    match = PARTIAL_DATE_PATTERN.fullmatch(value)
    if match is None:
        return None, None
    year, month, day = match.groups()
    precision = "day" if day else "month" if month else "year"
    try:
        return date(int(year), int(month or 1), int(day or 1)), precision
    except ValueError:
        return None, None


def _date(value: Any) -> date | None:
    return parse_partial_date(value)[0]


def _date_struct(struct: Any) -> tuple[str | None, date | None, str | None, str | None]:
    """(raw month_year string, date, precision, type) of a ClinicalTrials.gov date struct."""
    raw = _text(_dig(struct, "date"))
    parsed, precision = parse_partial_date(raw)
    return raw, parsed, precision, _text(_dig(struct, "type"))


# ---------------------------------------------------------------------------------------------
# Identity


def _protocol_section(payload: Any) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise StudyParseError("not_a_study", "study payload is not a JSON object")
    protocol = payload.get("protocolSection")
    if not isinstance(protocol, Mapping):
        raise StudyParseError("not_a_study", "study payload has no protocolSection object")
    return protocol


def _nct_id(protocol: Mapping[str, Any]) -> str:
    nct_id = _dig(protocol, "identificationModule", "nctId")
    if nct_id is None or nct_id == "":
        raise StudyParseError("missing_nct_id", "identificationModule.nctId is missing")
    if not isinstance(nct_id, str) or not NCT_ID_PATTERN.fullmatch(nct_id):
        raise StudyParseError("invalid_nct_id", f"nctId {nct_id!r} does not match NCT########")
    return nct_id


def _last_update_post_date(protocol: Mapping[str, Any]) -> date:
    raw = _dig(protocol, "statusModule", "lastUpdatePostDateStruct", "date")
    if raw is None or raw == "":
        raise StudyParseError(
            "missing_last_update_post_date",
            "statusModule.lastUpdatePostDateStruct.date is missing",
        )
    parsed, precision = parse_partial_date(raw)
    # The partition day must be a real day: a month would put the record on an arbitrary day.
    if parsed is None or precision != "day":
        raise StudyParseError(
            "invalid_last_update_post_date",
            f"lastUpdatePostDate {raw!r} is not a YYYY-MM-DD date",
        )
    return parsed


def _without_version_holder(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the payload without derivedSection.miscInfoModule.versionHolder.

    Only the dicts on the path to versionHolder are copied; the input is never mutated.
    """
    stripped = dict(payload)
    derived = stripped.get("derivedSection")
    if isinstance(derived, Mapping) and isinstance(derived.get("miscInfoModule"), Mapping):
        misc = {k: v for k, v in derived["miscInfoModule"].items() if k != "versionHolder"}
        stripped["derivedSection"] = {**derived, "miscInfoModule": misc}
    return stripped


def _content_hash(payload: Mapping[str, Any]) -> str:
    try:
        canonical = orjson.dumps(_without_version_holder(payload), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise StudyParseError("unserializable_payload", f"payload is not JSON: {exc}") from exc
    return hashlib.sha256(canonical).hexdigest()


def study_identity(payload: Mapping[str, Any]) -> StudyIdentity:
    """Key, partition day, snapshot version and content hash of one study record."""
    return _raising_only_parse_errors(_study_identity, payload)


def _study_identity(payload: Mapping[str, Any]) -> StudyIdentity:
    protocol = _protocol_section(payload)
    nct_id = _nct_id(protocol)
    last_update = _last_update_post_date(protocol)
    version_key = _text(_dig(payload, "derivedSection", "miscInfoModule", "versionHolder"))
    return StudyIdentity(
        nct_id=nct_id,
        last_update_post_date=last_update,
        version_key=version_key or "",
        content_hash=_content_hash(payload),
    )


# ---------------------------------------------------------------------------------------------
# core.trials


def _phase(design: Mapping[str, Any]) -> str | None:
    phases = _texts(design.get("phases"))
    return "/".join(phases) if phases else None


def _trial_row(
    nct_id: str, payload: Mapping[str, Any], protocol: Mapping[str, Any]
) -> tuple[Any, ...]:
    identification = _mapping(protocol.get("identificationModule"))
    status = _mapping(protocol.get("statusModule"))
    description = _mapping(protocol.get("descriptionModule"))
    design = _mapping(protocol.get("designModule"))
    design_info = _mapping(design.get("designInfo"))
    enrollment = _mapping(design.get("enrollmentInfo"))
    oversight = _mapping(protocol.get("oversightModule"))
    organization = _mapping(identification.get("organization"))
    arm_count = len(_mappings(_dig(protocol, "armsInterventionsModule", "armGroups")))
    verification_month_year = _text(status.get("statusVerifiedDate"))
    values: dict[str, Any] = {
        "nct_id": nct_id,
        "brief_title": _text(identification.get("briefTitle")),
        "official_title": _text(identification.get("officialTitle")),
        "acronym": _text(identification.get("acronym")),
        "overall_status": _text(status.get("overallStatus")),
        "last_known_status": _text(status.get("lastKnownStatus")),
        "why_stopped": _text(status.get("whyStopped")),
        "phase": _phase(design),
        "study_type": _text(design.get("studyType")),
        "enrollment": _int32(enrollment.get("count")),
        "enrollment_type": _text(enrollment.get("type")),
        **_date_columns("start", status.get("startDateStruct")),
        **_date_columns("primary_completion", status.get("primaryCompletionDateStruct")),
        **_date_columns("completion", status.get("completionDateStruct")),
        "verification_month_year": verification_month_year,
        "verification_date": _date(verification_month_year),
        "study_first_submitted_date": _date(status.get("studyFirstSubmitDate")),
        "study_first_posted_date": _date(_dig(status, "studyFirstPostDateStruct", "date")),
        "results_first_posted_date": _date(_dig(status, "resultsFirstPostDateStruct", "date")),
        "last_update_submitted_date": _date(status.get("lastUpdateSubmitDate")),
        "last_update_posted_date": _date(_dig(status, "lastUpdatePostDateStruct", "date")),
        "source": _text(organization.get("fullName")),
        "source_class": _text(organization.get("class")),
        "org_study_id": _text(_dig(identification, "orgStudyIdInfo", "id")),
        "brief_summary": _text(description.get("briefSummary")),
        "detailed_description": _text(description.get("detailedDescription")),
        "has_results": _bool(payload.get("hasResults")),
        "number_of_arms": arm_count or None,
        "allocation": _text(design_info.get("allocation")),
        "intervention_model": _text(design_info.get("interventionModel")),
        "primary_purpose": _text(design_info.get("primaryPurpose")),
        "masking": _text(_dig(design_info, "maskingInfo", "masking")),
        "has_dmc": _bool(oversight.get("oversightHasDmc")),
        "is_fda_regulated_drug": _bool(oversight.get("isFdaRegulatedDrug")),
        "is_fda_regulated_device": _bool(oversight.get("isFdaRegulatedDevice")),
        "nct_id_aliases": _texts(identification.get("nctIdAliases")),
    }
    return tuple(values[column] for column in TRIAL_COLUMNS)


def _date_columns(prefix: str, struct: Any) -> dict[str, Any]:
    raw, parsed, precision, date_type = _date_struct(struct)
    return {
        f"{prefix}_month_year": raw,
        f"{prefix}_date": parsed,
        f"{prefix}_date_precision": precision,
        f"{prefix}_date_type": date_type,
    }


# ---------------------------------------------------------------------------------------------
# Child tables. Each builder yields the row values after (nct_id, ordinal).

RowValues = tuple[Any, ...]


def _named_terms(values: Any) -> Iterator[RowValues]:
    for name in _texts(values):
        yield name, name.lower()


def _conditions(protocol: Mapping[str, Any], _: Mapping[str, Any]) -> Iterator[RowValues]:
    return _named_terms(_dig(protocol, "conditionsModule", "conditions"))


def _keywords(protocol: Mapping[str, Any], _: Mapping[str, Any]) -> Iterator[RowValues]:
    return _named_terms(_dig(protocol, "conditionsModule", "keywords"))


def _interventions(protocol: Mapping[str, Any], _: Mapping[str, Any]) -> Iterator[RowValues]:
    for item in _mappings(_dig(protocol, "armsInterventionsModule", "interventions")):
        yield (
            _text(item.get("type")),
            _text(item.get("name")),
            _text(item.get("description")),
            _texts(item.get("otherNames")),
            _texts(item.get("armGroupLabels")),
        )


def _sponsors(protocol: Mapping[str, Any], _: Mapping[str, Any]) -> Iterator[RowValues]:
    module = _mapping(protocol.get("sponsorCollaboratorsModule"))
    lead = module.get("leadSponsor")
    if isinstance(lead, Mapping):
        yield _text(lead.get("class")), "lead", _text(lead.get("name"))
    for collaborator in _mappings(module.get("collaborators")):
        yield _text(collaborator.get("class")), "collaborator", _text(collaborator.get("name"))


def _locations(protocol: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return _mappings(_dig(protocol, "contactsLocationsModule", "locations"))


def _sites(protocol: Mapping[str, Any], _: Mapping[str, Any]) -> Iterator[RowValues]:
    for location in _locations(protocol):
        geo_point = _mapping(location.get("geoPoint"))
        yield (
            _text(location.get("status")),
            _text(location.get("facility")),
            _text(location.get("city")),
            _text(location.get("state")),
            _text(location.get("zip")),
            _text(location.get("country")),
            _finite_float(geo_point.get("lat")),
            _finite_float(geo_point.get("lon")),
        )


def _arms(protocol: Mapping[str, Any], _: Mapping[str, Any]) -> Iterator[RowValues]:
    for group in _mappings(_dig(protocol, "armsInterventionsModule", "armGroups")):
        yield (
            _text(group.get("type")),
            _text(group.get("label")),
            _text(group.get("description")),
            _texts(group.get("interventionNames")),
        )


def _references(protocol: Mapping[str, Any], _: Mapping[str, Any]) -> Iterator[RowValues]:
    for reference in _mappings(_dig(protocol, "referencesModule", "references")):
        yield (
            _text(reference.get("pmid")),
            _text(reference.get("type")),
            _text(reference.get("citation")),
        )


def _countries(protocol: Mapping[str, Any], payload: Mapping[str, Any]) -> Iterator[RowValues]:
    site_countries = [_text(location.get("country")) for location in _locations(protocol)]
    removed_countries = _texts(
        _dig(payload, "derivedSection", "miscInfoModule", "removedCountries")
    )
    seen: set[str] = set()
    for names, removed in ((site_countries, False), (removed_countries, True)):
        for name in names:
            if name is not None and name not in seen:
                seen.add(name)
                yield name, removed


def _outcomes(protocol: Mapping[str, Any], _: Mapping[str, Any]) -> Iterator[RowValues]:
    module = _mapping(protocol.get("outcomesModule"))
    for outcome_type in ("primary", "secondary", "other"):
        for outcome in _mappings(module.get(f"{outcome_type}Outcomes")):
            yield (
                outcome_type,
                _text(outcome.get("measure")),
                _text(outcome.get("timeFrame")),
                _text(outcome.get("description")),
            )


def _mesh_terms(browse_module: Any) -> Iterator[RowValues]:
    module = _mapping(browse_module)
    for list_key, mesh_type in (("meshes", "mesh-list"), ("ancestors", "mesh-ancestor")):
        for term in _mappings(module.get(list_key)):
            mesh_term = _text(term.get("term"))
            yield _text(term.get("id")), mesh_term, _lower(mesh_term), mesh_type


def _browse_conditions(_: Mapping[str, Any], payload: Mapping[str, Any]) -> Iterator[RowValues]:
    return _mesh_terms(_dig(payload, "derivedSection", "conditionBrowseModule"))


def _browse_interventions(_: Mapping[str, Any], payload: Mapping[str, Any]) -> Iterator[RowValues]:
    return _mesh_terms(_dig(payload, "derivedSection", "interventionBrowseModule"))


def _unescape_markdown(text: str | None) -> str | None:
    return MARKDOWN_ESCAPE_PATTERN.sub(r"\1", text) if text is not None else None


def _eligibilities(protocol: Mapping[str, Any], _: Mapping[str, Any]) -> Iterator[RowValues]:
    module = protocol.get("eligibilityModule")
    if not isinstance(module, Mapping):
        return
    yield (
        _text(module.get("samplingMethod")),
        _text(module.get("sex")),
        _bool(module.get("genderBased")),
        _text(module.get("minimumAge")),
        _text(module.get("maximumAge")),
        _bool(module.get("healthyVolunteers")),
        _text(module.get("studyPopulation")),
        _unescape_markdown(_text(module.get("eligibilityCriteria"))),
        _texts(module.get("stdAges")),
    )


ChildBuilder = Callable[[Mapping[str, Any], Mapping[str, Any]], Iterator[RowValues]]

CHILD_BUILDERS: Mapping[str, ChildBuilder] = {
    "trial_conditions": _conditions,
    "trial_keywords": _keywords,
    "trial_interventions": _interventions,
    "trial_sponsors": _sponsors,
    "trial_sites": _sites,
    "trial_arms": _arms,
    "trial_references": _references,
    "trial_countries": _countries,
    "trial_outcomes": _outcomes,
    "trial_browse_conditions": _browse_conditions,
    "trial_browse_interventions": _browse_interventions,
    "trial_eligibilities": _eligibilities,
}


def _child_rows(
    nct_id: str, protocol: Mapping[str, Any], payload: Mapping[str, Any]
) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [
            (nct_id, ordinal, *values)
            for ordinal, values in enumerate(CHILD_BUILDERS[table](protocol, payload))
        ]
        for table in CHILD_TABLES
    }


# ---------------------------------------------------------------------------------------------
# Derivation hash


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _derivation_hash(trial: tuple[Any, ...], children: Mapping[str, list[tuple[Any, ...]]]) -> str:
    """sha256 over every derived value, with column names, so schema changes count too."""
    document = [
        ["trials", TRIAL_COLUMNS, [trial]],
        *([table, CHILD_TABLES[table], children[table]] for table in sorted(children)),
    ]
    return hashlib.sha256(orjson.dumps(document, default=_json_default)).hexdigest()


# ---------------------------------------------------------------------------------------------
# Entry point


def parse_study(payload: Mapping[str, Any]) -> ParsedStudy:
    """Derive the `core.trials` row and all child-table rows of one study record."""
    return _raising_only_parse_errors(_parse_study, payload)


def _parse_study(payload: Mapping[str, Any]) -> ParsedStudy:
    protocol = _protocol_section(payload)
    nct_id = _nct_id(protocol)
    trial = _trial_row(nct_id, payload, protocol)
    children = _child_rows(nct_id, protocol, payload)
    return ParsedStudy(
        nct_id=nct_id,
        trial=trial,
        children=children,
        derivation_hash=_derivation_hash(trial, children),
    )
