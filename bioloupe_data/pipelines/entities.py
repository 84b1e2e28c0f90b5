"""Entities of the warehouse (drugs, sponsors): derived from the core tables, registered once,
and profiled by rules first and an LLM second. No Dagster here."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from bioloupe_data.enrichment.drugs import (
    DrugEntity,
    Intervention,
    classify,
    drug_entities,
    parse_name,
)
from bioloupe_data.enrichment.llm import LlmStatus, StructuredExtractor
from bioloupe_data.enrichment.sponsors import SPONSOR_CLASSES, classify_sponsor
from bioloupe_data.warehouse.upsert import (
    Table,
    UpsertCounts,
    copy_rows,
    create_staging,
    upsert_rows,
)

DRUGS = Table("enriched", "drugs", ("drug_key", "name", "synonyms", "trial_count"), ("drug_key",))
TRIAL_DRUGS = Table("enriched", "trial_drugs", ("nct_id", "drug_key"), ("nct_id", "drug_key"))
SPONSORS = Table(
    "enriched", "sponsors", ("sponsor_key", "name", "agency_class", "trial_count"), ("sponsor_key",)
)
DRUG_PROFILES = Table(
    "enriched",
    "drug_profiles",
    (
        "drug_key",
        "modality",
        "mechanism",
        "target",
        "developer",
        "stem",
        "extracted_by",
        "prompt_version",
        "note",
    ),
    ("drug_key",),
)
SPONSOR_PROFILES = Table(
    "enriched",
    "sponsor_profiles",
    (
        "sponsor_key",
        "sponsor_class",
        "normalized_name",
        "country",
        "extracted_by",
        "prompt_version",
    ),
    ("sponsor_key",),
)
DRUG_PROMPT_VERSION = "drug-profile-v1"
DRUG_PROFILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["modality", "mechanism", "target", "developer"],
    "properties": {
        "modality": {
            "type": "string",
            "enum": [
                "small molecule",
                "monoclonal antibody",
                "bispecific antibody",
                "antibody-drug conjugate",
                "radioligand",
                "cell therapy",
                "gene therapy",
                "vaccine",
                "peptide",
                "oligonucleotide",
                "fusion protein",
                "other",
                "unknown",
            ],
        },
        "mechanism": {"type": ["string", "null"]},
        "target": {"type": ["string", "null"]},
        "developer": {"type": ["string", "null"]},
    },
}
SPONSOR_PROMPT_VERSION = "sponsor-profile-v1"
SPONSOR_PROFILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sponsor_class", "country"],
    "properties": {
        "sponsor_class": {"type": "string", "enum": list(SPONSOR_CLASSES)},
        "country": {"type": ["string", "null"]},
    },
}
SPONSOR_SYSTEM_PROMPT = (
    "You classify sponsors of clinical trials. Given an organisation's name and the registry's "
    "agency class, answer with its class (industry: companies; academic: universities, "
    "hospitals, research institutes; cooperative group: trial networks and groups; government: "
    "public agencies) and the country of its headquarters in English as ClinicalTrials.gov "
    "spells it (e.g. 'United States', 'Korea, Republic of'). Use 'other' and null when you do "
    "not know."
)
_ANSWERED = (LlmStatus.CALLED, LlmStatus.CACHED)
DRUG_SYSTEM_PROMPT = (
    "You classify oncology drugs. Given a drug name and its synonyms, answer with its modality, "
    "mechanism of action, molecular target and developer. Use null when you do not know; "
    "never guess a developer."
)


@dataclass(frozen=True, slots=True)
class Registered:
    key: str
    seq: int


def _interventions(conn: psycopg.Connection) -> list[tuple[str, Intervention]]:
    rows = conn.execute(
        "SELECT nct_id, coalesce(intervention_type, ''), coalesce(name, ''), other_names "
        "FROM core.trial_interventions ORDER BY nct_id, ordinal"
    ).fetchall()
    return [(nct, Intervention(kind, name, tuple(others))) for nct, kind, name, others in rows]


def _keys_of(intervention: Intervention, by_name: dict[str, str]) -> set[str]:
    parsed = parse_name(intervention.name)
    names = [c.name for c in (*parsed.components, *parsed.aliases) if c.name]
    for other in intervention.other_names:
        names += [c.name for c in parse_name(other).components if c.name]
    return {by_name[name] for name in names if name in by_name}


def refresh_drugs(conn: psycopg.Connection) -> tuple[UpsertCounts, int]:
    """Re-derive `enriched.drugs` and `enriched.trial_drugs` from every trial intervention.
    Returns the drug counts and how many trial links were written."""
    mentions = _interventions(conn)
    entities: list[DrugEntity] = drug_entities(i for _, i in mentions)
    by_name = {name: e.key for e in entities for name in (e.name, *e.synonyms)}
    links: dict[str, set[str]] = defaultdict(set)
    for nct_id, intervention in mentions:
        for key in _keys_of(intervention, by_name):
            links[key].add(nct_id)
    rows = [(e.key, e.name, list(e.synonyms), len(links.get(e.key, ()))) for e in entities]
    with conn.transaction():
        counts = upsert_rows(conn, DRUGS, rows)
        written = _replace_links(conn, links)
    return counts, written


def _replace_links(conn: psycopg.Connection, links: dict[str, set[str]]) -> int:
    """Make `enriched.trial_drugs` equal to `links`, writing only what differs."""
    staging = create_staging(conn, TRIAL_DRUGS)
    copy_rows(
        conn,
        staging,
        TRIAL_DRUGS.columns,
        sorted((nct, key) for key, ncts in links.items() for nct in ncts),
    )
    deleted = conn.execute(
        sql.SQL(
            "DELETE FROM enriched.trial_drugs AS d WHERE NOT EXISTS (SELECT 1 FROM {} s "
            "WHERE s.nct_id = d.nct_id AND s.drug_key = d.drug_key)"
        ).format(staging)
    ).rowcount
    inserted = conn.execute(
        sql.SQL(
            "INSERT INTO enriched.trial_drugs (nct_id, drug_key) SELECT s.nct_id, s.drug_key "
            "FROM {} s JOIN core.trials t USING (nct_id) ORDER BY 1, 2 ON CONFLICT DO NOTHING"
        ).format(staging)
    ).rowcount
    return deleted + inserted


def refresh_sponsors(conn: psycopg.Connection) -> UpsertCounts:
    """Re-derive `enriched.sponsors` from every trial's lead sponsor and collaborators."""
    rows = conn.execute(
        "SELECT name, agency_class, count(DISTINCT nct_id) FROM core.trial_sponsors "
        "WHERE coalesce(name, '') <> '' GROUP BY 1, 2"
    ).fetchall()
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    classes: dict[str, Counter[str]] = defaultdict(Counter)
    trials: Counter[str] = Counter()
    for name, agency_class, n in rows:
        profile = classify_sponsor(name, agency_class)
        spellings[profile.key][name] += n
        classes[profile.key][agency_class or ""] += n
        trials[profile.key] += n
    out = [
        (key, _most_common(spellings[key]), _most_common(classes[key]) or None, trials[key])
        for key in sorted(spellings)
    ]
    with conn.transaction():
        return upsert_rows(conn, SPONSORS, out)


def _most_common(counter: Counter[str]) -> str:
    # Ties broken by the text itself so the choice never depends on row order.
    return min(counter.items(), key=lambda item: (-item[1], item[0]))[0]


def registered_since(conn: psycopg.Connection, entity: str, after: int) -> list[Registered]:
    """Entities first seen after sequence number `after`, in order."""
    table, key = {"drugs": ("drugs", "drug_key"), "sponsors": ("sponsors", "sponsor_key")}[entity]
    rows = conn.execute(
        sql.SQL("SELECT {}, registered_seq FROM {} WHERE registered_seq > %s ORDER BY 2").format(
            sql.Identifier(key), sql.Identifier("enriched", table)
        ),
        (after,),
    ).fetchall()
    return [Registered(k, seq) for k, seq in rows]


@dataclass(slots=True)
class ProfileCounts:
    counts: UpsertCounts
    by_rules: int = 0
    by_llm: int = 0
    unresolved: int = 0


def profile_drugs(
    conn: psycopg.Connection, keys: Iterable[str], extractor: StructuredExtractor | None
) -> ProfileCounts:
    """Modality, mechanism and target by INN stem; the LLM only where the stem cannot tell."""
    drugs = conn.execute(
        "SELECT drug_key, name, synonyms FROM enriched.drugs WHERE drug_key = ANY(%s) "
        "ORDER BY drug_key",
        (sorted(set(keys)),),
    ).fetchall()
    result = ProfileCounts(UpsertCounts())
    rows = []
    unknown = []
    for key, name, synonyms in drugs:
        found = next((c for c in map(classify, [name, *synonyms]) if c is not None), None)
        if found is not None:
            result.by_rules += 1
            rows.append(
                (
                    key,
                    found.modality,
                    found.mechanism,
                    found.target,
                    None,
                    found.stem,
                    "rules",
                    None,
                    None,
                )
            )
        else:
            unknown.append((key, name, list(synonyms)))
    if extractor is not None:
        extractor.prefetch([{"name": n, "synonyms": s} for _, n, s in unknown])
    for key, name, synonyms in unknown:
        outcome = extractor.extract({"name": name, "synonyms": synonyms}) if extractor else None
        if outcome is not None and outcome.status in (LlmStatus.CALLED, LlmStatus.CACHED):
            value = outcome.value or {}
            result.by_llm += 1
            rows.append(
                (
                    key,
                    value.get("modality"),
                    value.get("mechanism"),
                    value.get("target"),
                    value.get("developer"),
                    None,
                    f"llm:{extractor.model}",
                    DRUG_PROMPT_VERSION,
                    None,
                )
            )
        else:
            result.unresolved += 1
            note = f"llm {outcome.status}" if outcome is not None else "no stem matched; rules only"
            rows.append((key, None, None, None, None, None, "none", None, note))
    with conn.transaction():
        result.counts = upsert_rows(conn, DRUG_PROFILES, rows)
    return result


def profile_sponsors(
    conn: psycopg.Connection,
    keys: Iterable[str],
    extractor: StructuredExtractor | None = None,
) -> ProfileCounts:
    """Class and normalized name by rules; country: where most of its trials' sites are. The
    LLM is asked only about sponsors the rules leave as 'other' or without a country, and fills
    only those gaps."""
    sponsors = conn.execute(
        """
        SELECT s.sponsor_key, s.name, s.agency_class,
               (SELECT c.country FROM core.trial_sponsors ts
                  JOIN core.trial_sites c USING (nct_id)
                 WHERE ts.name = s.name AND c.country IS NOT NULL
                 GROUP BY c.country ORDER BY count(*) DESC, c.country LIMIT 1)
        FROM enriched.sponsors s WHERE s.sponsor_key = ANY(%s) ORDER BY 1
        """,
        (sorted(set(keys)),),
    ).fetchall()
    ruled = [
        (key, name, agency_class, classify_sponsor(name, agency_class), country)
        for key, name, agency_class, country in sponsors
    ]
    open_questions = [
        {"name": name, "agency_class": agency_class}
        for _, name, agency_class, profile, country in ruled
        if profile.sponsor_class == "other" or country is None
    ]
    if extractor is not None and open_questions:
        extractor.prefetch(open_questions)
    result = ProfileCounts(UpsertCounts())
    rows = []
    for key, name, agency_class, profile, country in ruled:
        sponsor_class, extracted_by, version = profile.sponsor_class, "rules", None
        if extractor is not None and (sponsor_class == "other" or country is None):
            outcome = extractor.extract({"name": name, "agency_class": agency_class})
            answer = outcome.value if outcome.status in _ANSWERED else None
            llm_class = (answer or {}).get("sponsor_class")
            llm_country = (answer or {}).get("country")
            if sponsor_class == "other" and llm_class in SPONSOR_CLASSES and llm_class != "other":
                sponsor_class, extracted_by = llm_class, f"llm:{extractor.model}"
            if country is None and isinstance(llm_country, str) and llm_country.strip():
                country, extracted_by = llm_country.strip(), f"llm:{extractor.model}"
            version = SPONSOR_PROMPT_VERSION if extracted_by != "rules" else None
        result.by_llm += extracted_by != "rules"
        result.by_rules += extracted_by == "rules"
        result.unresolved += sponsor_class == "other" or country is None
        rows.append((key, sponsor_class, profile.normalized_name, country, extracted_by, version))
    with conn.transaction():
        result.counts = upsert_rows(conn, SPONSOR_PROFILES, rows)
    return result
