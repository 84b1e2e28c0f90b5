"""Rule-based trial features (enrichment/trial_features.py) over the real ClinicalTrials.gov
records in ``shared/realdata/ctgov``.

The hand-checked expectations below were written by reading each record's titles, conditions,
MeSH terms, arms and inclusion criteria, not by running the rules.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest

from bioloupe_data.enrichment import trial_features
from bioloupe_data.enrichment.trial_features import (
    BIOMARKERS,
    LINES_OF_THERAPY,
    RULES_VERSION,
    TRIAL_FEATURE_COLUMNS,
    TUMOR_AREAS,
    TrialFeatures,
    TrialText,
    extract_features,
    features_hash,
    to_row,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CTGOV = SHARED / "realdata" / "ctgov"
ONCOLOGY_CONDITION = re.compile(
    r"cancer|tumou?r|carcinoma|lymphoma|leuka?emia|myeloma|melanoma|sarcoma|neoplasm", re.I
)


def trial_text(study: dict[str, Any]) -> TrialText:
    """A TrialText from an API v2 study record, as the warehouse's tables would give it."""
    protocol = study["protocolSection"]
    identification = protocol.get("identificationModule", {})
    conditions = protocol.get("conditionsModule", {})
    browse = study.get("derivedSection", {}).get("conditionBrowseModule", {})
    arms_module = protocol.get("armsInterventionsModule", {})
    interventions = arms_module.get("interventions", [])
    return TrialText(
        nct_id=identification["nctId"],
        brief_title=identification.get("briefTitle"),
        official_title=identification.get("officialTitle"),
        conditions=conditions.get("conditions", []),
        keywords=conditions.get("keywords", []),
        mesh_terms=[mesh["term"] for mesh in browse.get("meshes", [])],
        eligibility=protocol.get("eligibilityModule", {}).get("eligibilityCriteria"),
        arms=[
            (arm.get("label"), arm.get("type"), arm.get("description"))
            for arm in arms_module.get("armGroups", [])
        ],
        interventions=[(item.get("type"), item.get("name")) for item in interventions],
        phase="/".join(protocol.get("designModule", {}).get("phases", [])) or None,
        arm_interventions=[
            (label, item["name"])
            for item in interventions
            for label in item.get("armGroupLabels", [])
        ],
    )


@cache
def real_trials() -> tuple[TrialText, ...]:
    paths = sorted(CTGOV.glob("NCT*.json"))
    return tuple(trial_text(orjson.loads(path.read_bytes())) for path in paths)


@cache
def real_features() -> dict[str, TrialFeatures]:
    return {trial.nct_id: extract_features(trial) for trial in real_trials()}


def real_trial(nct_id: str) -> TrialText:
    return next(trial for trial in real_trials() if trial.nct_id == nct_id)


# ---------------------------------------------------------------------------------------------
# Vocabularies and the row layout


def test_tumor_areas_are_the_design_partitions() -> None:
    design = (SHARED / "DESIGN.md").read_text(encoding="utf-8")
    listed = re.search(r"`tumor_area`.*?landscapes for \((.*?)\)", design, re.S)
    assert listed is not None
    areas = tuple(" ".join(area.split()) for area in listed.group(1).split(","))
    assert areas == TUMOR_AREAS


def test_rules_module_does_not_import_dagster() -> None:
    tree = ast.parse(Path(trial_features.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "dagster" for name in imported), imported


def test_row_layout() -> None:
    assert TRIAL_FEATURE_COLUMNS == (
        "nct_id",
        "tumor_areas",
        "biomarkers",
        "line_of_therapy",
        "combination_partners",
        "extracted_by",
        "value_sources",
        "rules_version",
        "unresolved",
    )
    features = real_features()["NCT05536349"]
    row = dict(zip(TRIAL_FEATURE_COLUMNS, to_row(features), strict=True))
    assert row == {
        "nct_id": "NCT05536349",
        "tumor_areas": ["hematologic"],
        "biomarkers": [],
        "line_of_therapy": "first-line",
        "combination_partners": ["obinutuzumab", "pirtobrutinib", "venetoclax"],
        "extracted_by": "rules",
        "value_sources": {
            "tumor_areas": "rules",
            "line_of_therapy": "rules",
            "combination_partners": "rules",
        },
        "rules_version": RULES_VERSION,
        "unresolved": False,
    }


# ---------------------------------------------------------------------------------------------
# All real records


def test_every_real_trial_gets_valid_features() -> None:
    trials = real_trials()
    assert len(trials) > 500
    features = real_features()
    assert len(features) == len(trials)
    for nct_id, found in features.items():
        assert found.nct_id == nct_id
        assert found.tumor_areas == tuple(a for a in TUMOR_AREAS if a in found.tumor_areas)
        assert found.biomarkers == tuple(b for b in BIOMARKERS if b in found.biomarkers)
        assert found.line_of_therapy is None or found.line_of_therapy in LINES_OF_THERAPY
        assert list(found.combination_partners) == sorted(set(found.combination_partners))
        assert found.unresolved == (not found.tumor_areas)
        assert (found.extracted_by, found.rules_version) == ("rules", RULES_VERSION)


def test_oncology_trials_get_a_tumor_area() -> None:
    oncology = [t for t in real_trials() if any(map(ONCOLOGY_CONDITION.search, t.conditions))]
    assert len(oncology) >= 100
    misses = [
        (trial.nct_id, list(trial.conditions))
        for trial in oncology
        if not real_features()[trial.nct_id].tumor_areas
    ]
    share = 1 - len(misses) / len(oncology)
    assert share >= 0.9, f"{share:.1%} of {len(oncology)} oncology trials have an area; {misses}"


def test_non_oncology_trials_get_no_oncology_features() -> None:
    quiet = [
        found
        for trial in real_trials()
        if not ONCOLOGY_CONDITION.search(" ".join([*trial.conditions, *trial.mesh_terms]))
        and not re.search(r"NSCLC|neoplas|oncolog", " ".join(trial.conditions), re.I)
        for found in [real_features()[trial.nct_id]]
    ]
    assert len(quiet) > 250
    assert [f.nct_id for f in quiet if f.tumor_areas or f.biomarkers or f.line_of_therapy] == []
    assert all(f.unresolved for f in quiet)


class Expected(NamedTuple):
    tumor_areas: tuple[str, ...]
    biomarkers: tuple[str, ...]
    line_of_therapy: str | None
    combination_partners: tuple[str, ...] = ()


HAND_CHECKED: dict[str, Expected] = {
    # "Afatinib in Pretreated Patients With Advanced NSCLC Harbouring HER2 Exon 20 Mutations";
    # single-group arm of type OTHER.
    "NCT02369484": Expected(("lung",), ("HER2", "HER2 mutation"), "later-line"),
    # "First-line PD-L1 Positive Advanced NSCLC", monotherapy cohorts.
    "NCT06361927": Expected(("lung",), ("PD-L1",), "first-line"),
    # "First-line PD-L1-negative"; inclusion "Wild-type EGFR/ALK", "PD-L1 negative".
    "NCT06496009": Expected(("lung",), (), "first-line"),
    # Adjuvant toripalimab, "no Driver Alterations (EGFR or ALK)", inclusion "PD-L1 TPS ≥ 1%".
    "NCT06221670": Expected(("lung",), ("PD-L1",), "adjuvant"),
    # Treatment-naive CLL; the arm adds valacyclovir and allopurinol as supportive care.
    "NCT05536349": Expected(
        ("hematologic",),
        (),
        "first-line",
        ("obinutuzumab", "pirtobrutinib", "venetoclax"),
    ),
    # R/R acute leukemia with KMT2A rearrangement, NPM1c or NUP98r; the partner is a generic
    # "Chemotherapy Regimen".
    "NCT05326516": Expected(("hematologic",), ("NPM1", "KMT2A", "NUP98"), "later-line"),
    # Ph-like ALL (not BCR-ABL), "newly diagnosed"; two single-drug arms.
    "NCT03564470": Expected(("hematologic",), (), "first-line"),
    # Vandetanib maintenance vs placebo.
    "NCT00777179": Expected(("lung",), (), "maintenance"),
    # "Neoadjuvant and Adjuvant Atezolizumab With or Without Tiragolumab"; PD-L1 only tested.
    "NCT05798663": Expected(("lung",), (), "perioperative", ("atezolizumab", "tiragolumab")),
    # "After First-Line PD-1 Inhibitor"; EGFR, ALK and ROS1 all negative.
    "NCT04691388": Expected(("lung",), (), "second-line", ("anlotinib", "sintilimab")),
    # Digital therapeutic for prostate, colorectal and lung cancer patients.
    "NCT05801965": Expected(("lung", "colorectal", "prostate"), (), None),
    # Cabazitaxel after docetaxel; keyword "2nd Line".
    "NCT01852578": Expected(("lung",), (), "second-line"),
    # "Apatinib With Docetaxel as Post Second-line Therapy".
    "NCT03416231": Expected(("lung",), (), "later-line", ("apatinib", "docetaxel")),
    # Neoadjuvant platform, single-drug arm.
    "NCT05714891": Expected(("lung",), (), "neoadjuvant"),
    # All-capitals titles; "Philadelphia chromosome positive CML" in blast crisis.
    "NCT03895671": Expected(("hematologic",), ("BCR-ABL",), None, ("azacitidine", "ponatinib")),
    # Activating EGFR mutations (exon 19 deletion or L858R); no previous chemotherapy.
    "NCT02759614": Expected(
        ("lung",),
        ("EGFR", "EGFR exon 19 deletion", "EGFR L858R"),
        "first-line",
        ("bevacizumab", "erlotinib"),
    ),
    # Brain metastases of driver-negative NSCLC (MeSH "Brain Neoplasms" is not a CNS primary).
    "NCT03801200": Expected(("lung",), (), None),
    # Newly diagnosed, untreated Ph+ ALL with CD22 expression on ≥20% of blasts.
    "NCT04747912": Expected(
        ("hematologic",),
        ("BCR-ABL", "CD22"),
        "first-line",
        (
            "dasatinib",
            "dexamethasone",
            "inotuzumab ozogamicin",
            "methotrexate",
            "ponatinib",
            "vincristine",
        ),
    ),
    # Non-G12C KRAS mutations such as G12D, after at least one prior line; gemcitabine named
    # only in the arm label.
    "NCT05651269": Expected(
        ("lung",), ("KRAS", "KRAS G12D"), "later-line", ("gemcitabine", "milciclib")
    ),
    # Conditions name endometrial stromal sarcoma; sub-study B requires ER-positive tumours.
    "NCT06388018": Expected(("gynecologic", "sarcoma"), ("HR-positive",), "adjuvant"),
    # Disc herniation: no oncology.
    "NCT00000410": Expected((), (), None),
}


@pytest.mark.parametrize("nct_id", sorted(HAND_CHECKED))
def test_hand_checked_real_trials(nct_id: str) -> None:
    found = real_features()[nct_id]
    expected = HAND_CHECKED[nct_id]
    assert (
        found.tumor_areas,
        found.biomarkers,
        found.line_of_therapy,
        found.combination_partners,
    ) == expected
    assert found.unresolved == (not expected.tumor_areas)


def test_hand_checked_sample_covers_every_feature() -> None:
    expected = HAND_CHECKED.values()
    assert len(HAND_CHECKED) >= 15
    assert {line for e in expected for line in [e.line_of_therapy] if line} == set(LINES_OF_THERAPY)
    assert len({b for e in expected for b in e.biomarkers}) >= 10
    assert len({a for e in expected for a in e.tumor_areas}) >= 5
    assert sum(bool(e.combination_partners) for e in expected) >= 5


# ---------------------------------------------------------------------------------------------
# Tumor areas


def areas(*conditions: str, title: str | None = None, mesh: tuple[str, ...] = ()) -> Any:
    return extract_features(
        TrialText("NCT00000001", brief_title=title, conditions=conditions, mesh_terms=mesh)
    ).tumor_areas


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("NSCLC", ("lung",)),
        ("Non-small Cell Lung Cancer", ("lung",)),
        ("Lung Adenocarcinoma", ("lung",)),
        ("Carcinoma, Non-Small-Cell Lung", ("lung",)),
        ("Triple Negative Breast Cancer", ("breast",)),
        ("AML", ("hematologic",)),
        ("Acute Myeloid Leukemia", ("hematologic",)),
        ("Diffuse Large B-Cell Lymphoma", ("hematologic",)),
        ("Metastatic Castration-Resistant Prostate Cancer", ("prostate",)),
        ("Hepatocellular Carcinoma", ("hepatobiliary/pancreatic",)),
        ("Gastroesophageal Junction Adenocarcinoma", ("upper GI",)),
        ("Head and Neck Squamous Cell Carcinoma", ("head & neck",)),
        ("Glioblastoma", ("CNS",)),
        ("Renal Cell Carcinoma", ("genitourinary",)),
        ("Osteosarcoma", ("sarcoma",)),
        ("Uterine Carcinosarcoma", ("gynecologic",)),
        ("Endometrial Stromal Sarcoma", ("gynecologic", "sarcoma")),
        ("Mesothelioma", ("other solid",)),
        ("Non-melanoma Skin Cancer", ("other solid",)),
        ("Uveal Melanoma", ("melanoma",)),
        ("Colorectal Cancer Liver Metastases", ("colorectal",)),
        # Not tumors, or no area of the DESIGN's list.
        ("Interstitial Lung Disease", ()),
        ("Cervical Spine Tumor", ()),
        ("Lung Function in Breast Cancer Survivors", ("breast",)),
        ("Sarcopenia", ()),
        ("Advanced Solid Tumors", ()),
        ("Advanced Malignancies", ()),
        ("Cancer", ()),
    ],
)
def test_tumor_area_synonyms(condition: str, expected: tuple[str, ...]) -> None:
    assert areas(condition) == expected


def test_tumor_area_matching_is_case_insensitive_but_acronyms_are_not() -> None:
    assert areas("acute myeloid LEUKEMIA") == ("hematologic",)
    assert areas("NSCLC", "ALL") == ("lung", "hematologic")
    assert areas(title="Effect of a Diet on All Patients With Asthma") == ()
    assert areas(title="A STUDY OF DIET IN ALL PATIENTS WITH ASTHMA") == ()
    # "Anaplastic Lymphoma Kinase" is a gene, not a lymphoma.
    assert areas(title="Brigatinib in Anaplastic Lymphoma Kinase Positive NSCLC") == ("lung",)


def test_metastatic_sites_are_not_primary_areas() -> None:
    assert areas("NSCLC", mesh=("Brain Neoplasms",)) == ("lung", "CNS")
    with_metastases = areas("NSCLC", "Brain Metastases", mesh=("Brain Neoplasms",))
    assert with_metastases == ("lung",)
    assert areas("Glioblastoma", "Brain Metastases") == ("CNS",)


def test_no_area_is_unresolved() -> None:
    unresolved = extract_features(TrialText("NCT00000001", conditions=["Solid Tumor"]))
    assert unresolved.tumor_areas == ()
    assert unresolved.unresolved
    assert not extract_features(TrialText("NCT00000001", conditions=["NSCLC"])).unresolved


# ---------------------------------------------------------------------------------------------
# Biomarkers


def markers(inclusion: str, *, title: str | None = None, exclusion: str = "") -> Any:
    eligibility = f"Inclusion Criteria:\n\n* {inclusion}\n\nExclusion Criteria:\n\n* {exclusion}"
    trial = TrialText(
        "NCT00000001", brief_title=title, conditions=["NSCLC"], eligibility=eligibility
    )
    return extract_features(trial).biomarkers


@pytest.mark.parametrize(
    ("inclusion", "expected"),
    [
        (
            "Documented EGFR mutation (exon 19 deletion or L858R)",
            ("EGFR", "EGFR exon 19 deletion", "EGFR L858R"),
        ),
        ("Acquired EGFR T790M mutation", ("EGFR", "EGFR T790M")),
        ("EGFR exon 20 insertion mutation", ("EGFR", "EGFR exon 20 insertion")),
        ("HER2 exon 20 insertion mutation", ("HER2", "HER2 mutation")),
        ("ALK-positive or ROS1 rearranged NSCLC", ("ALK", "ROS1")),
        ("KRAS G12C mutation", ("KRAS", "KRAS G12C")),
        ("BRAF V600E-mutant tumour", ("BRAF", "BRAF V600E")),
        ("HER2-positive (IHC 3+ or ISH amplified)", ("HER2", "HER2-positive")),
        ("HER2-low (IHC 1+ or IHC 2+/ISH-negative)", ("HER2", "HER2-low")),
        ("HR+/HER2- advanced breast cancer", ("HR-positive",)),
        ("PD-L1 TPS ≥ 50%", ("PD-L1",)),
        ("MSI-H or dMMR tumour", ("MSI-H/dMMR",)),
        ("TMB-high (≥ 10 mut/Mb)", ("TMB-high",)),
        ("NTRK gene fusion", ("NTRK fusion",)),
        ("RET fusion-positive", ("RET fusion",)),
        ("MET exon 14 skipping mutation", ("MET", "MET exon 14 skipping")),
        ("Deleterious germline BRCA1 or BRCA2 mutation (gBRCAm)", ("BRCA1", "BRCA2")),
        ("FGFR2 fusion or rearrangement", ("FGFR2",)),
        ("IDH1 mutation", ("IDH1",)),
        ("FLT3-ITD mutated AML", ("FLT3",)),
        ("NPM1-mutated AML", ("NPM1",)),
        ("Philadelphia chromosome-positive ALL", ("BCR-ABL",)),
        ("CD19-positive B-cell ALL", ("CD19",)),
        ("Claudin 18.2-positive gastric cancer", ("Claudin 18.2",)),
        ("PIK3CA mutation and ESR1 mutation", ("PIK3CA", "ESR1")),
    ],
)
def test_biomarkers_and_their_variants(inclusion: str, expected: tuple[str, ...]) -> None:
    assert markers(inclusion) == expected


@pytest.mark.parametrize(
    "inclusion",
    [
        "EGFR wild-type NSCLC",
        "EGFR/ALK wild type",
        "Patients without EGFR mutation",
        "No known EGFR mutation or ALK rearrangement",
        "Patients must not have EGFR sensitizing mutations, ALK gene fusion or BRAF V600E mutation",
        "T790M-negative",
        "HER2-negative breast cancer",
        "Regardless of PD-L1 expression",
        "PD-L1 TPS < 1%",
        "Ph-like ALL",
        "Ph-negative ALL",
        "EGFR mutation status must be known",
        # Drugs and targets, not patient selection.
        "Progression on prior EGFR-TKI therapy",
        "Prior anti-PD-1/PD-L1 therapy",
        "Eligible for CD19 CAR-T cells",
        # A sub-population that is allowed, not required.
        "Patients with Ph+ ALL are eligible if they are intolerant to TKI therapy",
    ],
)
def test_negated_or_non_selecting_mentions_are_skipped(inclusion: str) -> None:
    assert markers(inclusion) == ()


def test_a_mention_in_a_clause_is_found_in_the_joined_clauses() -> None:
    """A mention pattern that finds nothing in all clauses joined is not tried clause by
    clause: that needs every match in a clause to be a match there too (no pattern tests for
    the end of its text). Checked for every pattern on the real trials' clauses, and on
    mentions that end a clause before another begins."""
    patterns = [
        *(gene.pattern for gene in trial_features._GENES + trial_features._STATUS_MARKERS),
        *(pattern for pattern, _ in trial_features._VARIANTS),
        trial_features._EXON20,
        trial_features._HER2,
        trial_features._RET,
    ]
    made_up = [  # mentions ending a clause, then clauses starting the way a mention goes on
        ["EGFR-mutant", "exon 20 insertion", "KRAS G12C"],
        ["BRAF V600", "E", "HER2-positive", "RET", "fusion"],
        ["gBRCA", "m", "EGFR", "-mutant", "CD19", "+", "HER2", "-low", "MLL", "-r", "PD-L1", "TPS"],
    ]
    clause_sets = [trial_features._biomarker_clauses(trial) for trial in real_trials()]
    clause_sets += [trial_features._Clauses(clauses) for clauses in made_up]
    checked = 0
    for clauses in clause_sets:
        for pattern in patterns:
            if any(pattern.search(clause) for clause in clauses):
                assert pattern.search(clauses.joined), (pattern.pattern, list(clauses))
                checked += 1
    assert checked > 100


def test_biomarkers_come_from_inclusion_criteria_only() -> None:
    assert markers("Stage IV NSCLC", exclusion="Known EGFR mutation or ALK rearrangement") == ()
    assert markers("Stage IV NSCLC", title="Drug X in EGFR-mutant NSCLC") == ("EGFR",)


# ---------------------------------------------------------------------------------------------
# Line of therapy


def line(
    inclusion: str | None = None, *, title: str | None = None, condition: str = "NSCLC"
) -> str | None:
    eligibility = f"Inclusion Criteria:\n\n* {inclusion}" if inclusion else None
    trial = TrialText(
        "NCT00000001", brief_title=title, conditions=[condition], eligibility=eligibility
    )
    return extract_features(trial).line_of_therapy


@pytest.mark.parametrize(
    ("inclusion", "expected"),
    [
        ("No prior therapy for metastatic disease", "first-line"),
        ("Received prior therapy for metastatic disease", "later-line"),
        ("Prior therapy with at least one platinum-based regimen", "later-line"),
        ("Previously untreated advanced NSCLC", "first-line"),
        ("Treatment-naive patients", "first-line"),
        ("Prior systemic chemotherapy is not allowed", "first-line"),
        ("Progression after first-line platinum chemotherapy", "second-line"),
        ("Progressed on one prior line of therapy", "second-line"),
        ("At least two prior lines of therapy", "later-line"),
        ("Relapsed or refractory disease", "later-line"),
        ("Patients may have received prior chemotherapy", None),
        ("Prior adjuvant chemotherapy is allowed", None),
        ("Newly diagnosed or relapsed disease", None),
        ("ECOG 0-1", None),
    ],
)
def test_line_of_therapy_from_eligibility(inclusion: str, expected: str | None) -> None:
    assert line(inclusion) == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Adjuvant X in Resected NSCLC", "adjuvant"),
        ("Neoadjuvant X Before Surgery", "neoadjuvant"),
        ("Neoadjuvant and Adjuvant X", "perioperative"),
        ("Perioperative X in NSCLC", "perioperative"),
        ("X Maintenance After Platinum-doublet Chemotherapy", "maintenance"),
        ("X as First-line Treatment", "first-line"),
        ("X as Second-line Treatment", "second-line"),
        ("X After Failure of First-line Therapy", "second-line"),
        ("X as Post Second-line Therapy", "later-line"),
        ("X in Previously Treated NSCLC", "later-line"),
        ("Perioperative Care Pathway in Lung Cancer", None),
    ],
)
def test_line_of_therapy_from_titles(title: str, expected: str | None) -> None:
    assert line(title=title) == expected


def test_titles_win_over_eligibility_and_non_oncology_has_no_line() -> None:
    assert line("Received prior therapy for metastatic disease", title="First-line X") == (
        "first-line"
    )
    assert line(title="Adjuvant X After Surgery", condition="Lumbar Disc Herniation") is None


# ---------------------------------------------------------------------------------------------
# Combination partners


def partners(
    arms: list[tuple[str, str, str]],
    interventions: list[tuple[str, str]],
    links: list[tuple[str, str]] | None = None,
) -> tuple[str, ...]:
    trial = TrialText(
        "NCT00000001", arms=arms, interventions=interventions, arm_interventions=links or []
    )
    return extract_features(trial).combination_partners


def test_partners_from_linked_interventions() -> None:
    arms = [("A", "EXPERIMENTAL", ""), ("B", "ACTIVE_COMPARATOR", "")]
    interventions = [("DRUG", "Pembrolizumab"), ("DRUG", "Lenvatinib"), ("DRUG", "Docetaxel")]
    links = [("A", "Pembrolizumab"), ("A", "Drug: Lenvatinib"), ("B", "Docetaxel")]
    assert partners(arms, interventions, links) == ("lenvatinib", "pembrolizumab")
    # The comparator's combination does not count.
    links = [("A", "Pembrolizumab"), ("B", "Docetaxel"), ("B", "Lenvatinib")]
    assert partners(arms, interventions, links) == ()


def test_partners_from_arm_text_without_links() -> None:
    arms = [
        ("Arm A", "EXPERIMENTAL", "Pembrolizumab 200 mg every 3 weeks plus lenvatinib 20 mg daily"),
        ("Arm B", "ACTIVE_COMPARATOR", "Docetaxel 75 mg/m2"),
    ]
    interventions = [("DRUG", "Pembrolizumab"), ("DRUG", "Lenvatinib"), ("DRUG", "Docetaxel")]
    assert partners(arms, interventions) == ("lenvatinib", "pembrolizumab")


@pytest.mark.parametrize(
    "interventions",
    [
        [("DRUG", "Osimertinib"), ("DRUG", "Placebo")],
        [("DRUG", "Venetoclax"), ("DRUG", "Filgrastim"), ("DRUG", "Allopurinol")],
        [("BIOLOGICAL", "CD19 CAR-T cells"), ("DRUG", "Fludarabine"), ("DRUG", "Cyclophosphamide")],
        [("DRUG", "Alflutinib"), ("DRUG", "Chemotherapy"), ("PROCEDURE", "Surgery")],
    ],
)
def test_monotherapy_has_no_partners(interventions: list[tuple[str, str]]) -> None:
    arms = [("Single arm", "EXPERIMENTAL", "")]
    assert partners(arms, interventions) == ()


def test_partners_split_combined_intervention_names() -> None:
    arms = [("A", "EXPERIMENTAL", "")]
    assert partners(arms, [("DRUG", "Sintilimab combined with Anlotinib")]) == (
        "anlotinib",
        "sintilimab",
    )


# ---------------------------------------------------------------------------------------------
# Determinism and the hash


def shuffled(trial: TrialText, rng: random.Random) -> TrialText:
    def mix(items: Any) -> list[Any]:
        items = list(items)
        rng.shuffle(items)
        return items

    return replace(
        trial,
        conditions=mix(trial.conditions),
        keywords=mix(trial.keywords),
        mesh_terms=mix(trial.mesh_terms),
        arms=mix(trial.arms),
        interventions=mix(trial.interventions),
        arm_interventions=mix(trial.arm_interventions),
    )


def test_features_are_deterministic_and_order_independent() -> None:
    rng = random.Random(20240601)
    features = real_features()
    for trial in real_trials():
        again = extract_features(shuffled(trial, rng))
        assert again == features[trial.nct_id], trial.nct_id
        assert features_hash(again) == features_hash(features[trial.nct_id])


def test_features_hash_follows_every_column() -> None:
    features = real_features()["NCT04747912"]
    digest = features_hash(features)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    changed = [
        replace(features, tumor_areas=()),
        replace(features, biomarkers=("BCR-ABL",)),
        replace(features, line_of_therapy=None),
        replace(features, combination_partners=()),
        replace(features, extracted_by="llm:some-model"),
        replace(features, rules_version=RULES_VERSION + "-next"),
        replace(features, unresolved=True),
        replace(features, value_sources=(("tumor_areas", "llm:some-model"),)),
    ]
    digests = {features_hash(other) for other in changed}
    assert digest not in digests
    assert len(digests) == len(changed)
    # The key is part of the row, so no two trials share a hash.
    assert len({features_hash(found) for found in real_features().values()}) == len(real_trials())
