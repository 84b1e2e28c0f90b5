"""Trial features by rules: tumor areas, biomarkers, line of therapy and combination partners.

Pure functions, no dagster import. `extract_features(TrialText) -> TrialFeatures` is the rules
step of `enriched/trial_features`; an LLM step may follow for trials the rules leave
`unresolved`. Every result carries `extracted_by='rules'` and `RULES_VERSION`, so a change of
rules (a version bump) rewrites exactly the rows whose values changed (`features_hash`).

Vocabularies and decisions:

* Tumor areas are the `tumor_area` partitions of DESIGN.md (`TUMOR_AREAS`), matched in the
  conditions, condition MeSH terms (pass the `mesh-list` terms, not the broad ancestors) and
  titles. An organ word counts only next to a cancer noun ("lung cancer", "Carcinoma,
  Non-Small-Cell Lung", "carcinoma of the lung"), so "interstitial lung disease" or "cervical
  spine" are not tumors; histologies and acronyms count alone ("NSCLC", "glioblastoma", "AML";
  acronyms case-sensitively, and not in all-capitals text). An organ named as a metastatic site
  ("brain metastases", "liver metastases") does not count for its own area: MeSH files brain
  metastases under "Brain Neoplasms". DESIGN has no pan-tumor area, so "solid tumors",
  "advanced malignancies" or a bare "cancer" give no area. Thyroid, neuroendocrine, thymic,
  skin (non-melanoma), adrenal, eye tumors, mesothelioma and unknown primaries are
  'other solid'; germ-cell tumors are 'genitourinary'; uterine sarcomas are both 'gynecologic'
  and 'sarcoma'. No area at all gives `unresolved=True`.
* Biomarkers (`BIOMARKERS`) are the markers a trial selects patients *for*, read from the
  titles, conditions, keywords and the inclusion part of the eligibility criteria (the text
  before "Exclusion Criteria"). A gene counts only with an alteration word ("EGFR mutation",
  "ALK-positive", "KRAS G12C"), a status marker only with an expression or positivity word
  ("PD-L1 TPS >= 50%", "CD19-positive"): "EGFR TKI", "anti-PD-L1" or "CD19 CAR-T" name drugs and
  their targets, which drug profiles hold. Negated or negative mentions ("without EGFR
  mutation", "EGFR wild-type", "no driver alterations (EGFR or ALK)", "HER2-negative",
  "Ph-like", "regardless of PD-L1 expression") are skipped, not recorded: the columns list
  what a trial requires. A specific variant is recorded with its gene ("EGFR exon 19 deletion"
  and "EGFR"); a family named without a member stays the family ("BRCA", "IDH", "FGFR").
* Line of therapy (`LINES_OF_THERAPY`) is read from the titles, conditions and keywords first,
  then from the inclusion criteria. A setting named in a title wins (perioperative, also for
  neoadjuvant plus adjuvant; then neoadjuvant, adjuvant, maintenance). Otherwise "previously
  untreated", "treatment-naive", "newly diagnosed", "no prior therapy" give 'first-line';
  exactly one prior line ("second-line", "after first-line") gives 'second-line'; two or more,
  or a previously treated population without a count ("relapsed", "refractory", "progressed
  on", "prior therapy") gives 'later-line'. Cues for both untreated and pretreated patients
  give None (a mixed population), as do trials that do not look oncologic.
* Combination partners: the named drugs of experimental arms that give two or more drugs,
  their union over those arms, sorted. Drugs are the DRUG, BIOLOGICAL, GENETIC and
  COMBINATION_PRODUCT interventions, split and normalized by `drugs.parse_name`; placebo,
  generic classes ("chemotherapy") and procedures are dropped, as are supportive-care drugs and,
  next to a cell therapy, its lymphodepleting conditioning. Arms and interventions are linked
  by `TrialText.arm_interventions` when given (the registry's own links), else by the
  intervention's name appearing in the arm's label or description; one-word drug names with
  an INN stem in the arm's label count too ("Milciclib plus gemcitabine").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache, cached_property
from typing import Any

import orjson

from bioloupe_data.enrichment.drugs import CELL_THERAPY, classify, parse_name

__all__ = [
    "BIOMARKERS",
    "EXTRACTED_BY",
    "FEATURE_FIELDS",
    "LINES_OF_THERAPY",
    "RULES_VERSION",
    "TRIAL_FEATURE_COLUMNS",
    "TUMOR_AREAS",
    "TrialFeatures",
    "TrialText",
    "biomarkers",
    "combination_partners",
    "extract_features",
    "features_hash",
    "inclusion_criteria",
    "line_of_therapy",
    "sources_of",
    "to_row",
    "tumor_areas",
]

RULES_VERSION = "trial-features-rules-1"
EXTRACTED_BY = "rules"

TUMOR_AREAS: tuple[str, ...] = (
    "lung",
    "breast",
    "colorectal",
    "prostate",
    "melanoma",
    "hematologic",
    "gynecologic",
    "upper GI",
    "hepatobiliary/pancreatic",
    "head & neck",
    "CNS",
    "genitourinary",
    "sarcoma",
    "other solid",
)

FIRST_LINE = "first-line"
SECOND_LINE = "second-line"
LATER_LINE = "later-line"
MAINTENANCE = "maintenance"
ADJUVANT = "adjuvant"
NEOADJUVANT = "neoadjuvant"
PERIOPERATIVE = "perioperative"
LINES_OF_THERAPY: tuple[str, ...] = (
    FIRST_LINE,
    SECOND_LINE,
    LATER_LINE,
    MAINTENANCE,
    ADJUVANT,
    NEOADJUVANT,
    PERIOPERATIVE,
)

# The extracted values; each non-empty one names its extractor in `value_sources`.
FEATURE_FIELDS: tuple[str, ...] = (
    "tumor_areas",
    "biomarkers",
    "line_of_therapy",
    "combination_partners",
)
TRIAL_FEATURE_COLUMNS: tuple[str, ...] = (
    "nct_id",
    *FEATURE_FIELDS,
    "extracted_by",
    "value_sources",
    "rules_version",
    "unresolved",
)


@dataclass(frozen=True)
class TrialText:
    """The text of one trial that the rules read (core.trials and its child tables).

    `arms` are (label, group type, description); `interventions` are (type, name);
    `arm_interventions` are optional (arm label, intervention name) links, from
    `trial_interventions.arm_group_labels` or `trial_arms.intervention_names`. `phase` is not
    read by the rules; it is part of what an LLM step is shown.
    """

    nct_id: str
    brief_title: str | None = None
    official_title: str | None = None
    conditions: Sequence[str] = ()
    keywords: Sequence[str] = ()
    mesh_terms: Sequence[str] = ()
    eligibility: str | None = None
    arms: Sequence[tuple[str | None, str | None, str | None]] = ()
    interventions: Sequence[tuple[str | None, str | None]] = ()
    phase: str | None = None
    arm_interventions: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class TrialFeatures:
    nct_id: str
    tumor_areas: tuple[str, ...]
    biomarkers: tuple[str, ...]
    line_of_therapy: str | None
    combination_partners: tuple[str, ...]
    unresolved: bool
    extracted_by: str = EXTRACTED_BY
    rules_version: str = RULES_VERSION
    # (field, extractor) for every non-empty value: 'rules' or 'llm:<model>'.
    value_sources: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------------------------
# Shared text helpers


def _texts(*groups: Iterable[str | None]) -> list[str]:
    return [text for group in groups for text in group if isinstance(text, str) and text.strip()]


def _titles(trial: TrialText) -> list[str]:
    return _texts([trial.brief_title, trial.official_title])


def _mostly_upper(text: str) -> bool:
    """All-capitals text, where "ALL" or "MET" are ordinary words, not acronyms."""
    letters = "".join(filter(str.isalpha, text))
    return len(letters) >= 12 and sum(map(str.isupper, letters)) > 0.8 * len(letters)


_EXCLUSION_HEADER = re.compile(r"\bexclusion\s+criteri|^\W*exclusion\s*:", re.I | re.M)
# Markdown escapes as in the registry's raw text (`\<1%`); the parser removes them too.
_MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def inclusion_criteria(eligibility: str | None) -> str:
    """The eligibility text before its exclusion criteria."""
    if not eligibility:
        return ""
    text = _MARKDOWN_ESCAPE.sub(r"\1", eligibility)
    header = _EXCLUSION_HEADER.search(text)
    return text[: header.start()] if header else text


_CLAUSE_BREAK = re.compile(r"\n+|[;；，。]|[.!?](?=\s)|\s[•·]\s")


def _clauses(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        for clause in _CLAUSE_BREAK.split(text):
            if clause.strip():
                yield clause


# ---------------------------------------------------------------------------------------------
# Tumor areas

# A cancer noun; "tumor" not when it qualifies something else ("tumor mutational burden").
_NOUN = (
    r"(?:cancers?|carcinomas?|adenocarcinomas?|neoplasms?|neoplasias?|malignanc(?:y|ies)"
    r"|(?:carcino)?sarcomas?|tumou?rs?(?![\s-]+(?:mutation\w*|dna|cells?|markers?|burden|response|size"
    r"|volume|lysis|infiltrat\w*|microenvironment|tissues?|samples?|biops\w*|heterogeneity"
    r"|treating|necrosis|growth|organoids?)\b))"
)
# Words that end the link between an organ word and a cancer noun ("lung function in breast
# cancer" is not lung cancer).
_STOP_WORDS = (
    r"and|or|with|without|in|of|for|to|the|a|an|on|at|by|from|after|before|during|following"
    r"|versus|vs|patients?|participants?|subjects?|people|who|that|which|is|are|was|were|not"
    r"|no|function|diseases?|disorders?|injur\w*|surgery|transplant\w*|infections?|syndromes?"
    r"|spine|spinal|vertebral|disc|lymph|nodes?|metasta\w*|screening|survivors?|risk"
)
_LINK_TOKEN = rf"(?:[\s/-]+(?!(?:{_STOP_WORDS})\b)[a-z0-9][\w.+]*)"
_WORD_TOKEN = rf"(?:(?!(?:{_STOP_WORDS})\b)[a-z0-9][\w.+-]*\s+)"


@dataclass(frozen=True)
class _AreaRules:
    area: str
    sites: str = ""  # organ words: count next to a cancer noun
    terms: str = ""  # count alone, case-insensitively
    acronyms: str = ""  # count alone, case-sensitively
    metastatic: str = ""  # extra phrases naming the organ as a metastatic site


_AREA_RULES: tuple[_AreaRules, ...] = (
    _AreaRules(
        "lung",
        sites=r"lungs?|pulmonary|bronch(?:i|ial|us|ogenic|ioloalveolar|oalveolar)"
        r"|non[\s-]*small[\s-]*cell|small[\s-]*cell",
        terms=r"NSCLCs?|SCLCs?",
    ),
    _AreaRules(
        "breast",
        sites=r"breasts?|mammary",
        terms=r"TNBC|triple[\s-]+negative\s+breast|ductal\s+carcinoma\s+in\s+situ|DCIS",
    ),
    _AreaRules(
        "colorectal",
        sites=r"colorectal|colon|colonic|rectal|rectum|recto[\s-]?sigmoid|sigmoid|c(?:a|ae)cal"
        r"|appendiceal|appendix|anal|anus|(?<!small\s)bowel|large\s+intestine",
        terms=r"m?CRC",
    ),
    _AreaRules(
        "prostate",
        sites=r"prostate|prostatic",
        terms=r"(?:nm|m)?CRPC|m?HSPC|m?CSPC",
    ),
    _AreaRules("melanoma", terms=r"(?<!non-)(?<!non\s)melanomas?|lentigo\s+maligna"),
    _AreaRules(
        "hematologic",
        sites=r"ha?ematolog(?:ic|ical)|ha?ematopoietic|blood|myeloid|lymphoid|lymphocytic"
        r"|[bt][\s-]?cell|nk[\s-]?cell|plasma[\s-]?cell|bone\s+marrow",
        terms=r"leuka?emi(?:a|as|c)|lymphomas?(?!\s+kinase)|myelomas?|myelodysplas\w*"
        r"|myeloproliferative|myelofibrosis|polycyth(?:a|ae)?emia\s+vera"
        r"|essential\s+thrombocyth\w*|macroglobulin(?:a|ae)?emia|waldenstr\w*|hodgkin\w*"
        r"|mycosis\s+fungoides|s[eé]zary|mastocytosis|histiocytosis|plasmacytomas?"
        r"|lymphoproliferative|monoclonal\s+gammopathy|light[\s-]chain\s+amyloidosis"
        r"|AL\s+amyloidosis",
        acronyms=r"AML|ALL|CLL|CML|MDS|MPN|CMML|JMML|APL|DLBCL|NHL|MCL|PTCL|CTCL|BPDCN|MPAL"
        r"|ALAL|SLL|MZL|LBCL|MGUS|PCNSL",
    ),
    _AreaRules(
        "gynecologic",
        sites=r"ovar(?:y|ian|ies)|fallopian(?:\s+tubes?)?|primary\s+peritoneal|endometri(?:al|um)"
        r"|uter(?:us|ine)|cervi(?:x|cal)|vulv(?:a|ar)|vagin(?:a|al)|gyn(?:a|e|ae)colog(?:ic|ical)",
        terms=r"gestational\s+trophoblastic|choriocarcinomas?",
    ),
    _AreaRules(
        "upper GI",
        sites=r"gastric|stomach|o?esophag(?:eal|us)|gastro[\s-]?o?esophageal|o?esophagogastric"
        r"|duoden(?:al|um)",
        acronyms=r"GEJ|EGJ|ESCC",
    ),
    _AreaRules(
        "hepatobiliary/pancreatic",
        sites=r"liver|hepatic|hepatocellular|hepato[\s-]?biliary|biliary|bile[\s-]+ducts?"
        r"|gall[\s-]?bladder|pancrea(?:s|tic)|ampulla(?:ry)?|periampullary|intrahepatic"
        r"|extrahepatic|peri[\s-]?hilar",
        terms=r"cholangiocarcinomas?|hepatomas?|hepatoblastomas?|klatskin|PDAC|HCC",
        acronyms=r"BTC",
    ),
    _AreaRules(
        "head & neck",
        sites=r"head\s+(?:and|&)\s+neck|oral\s+cavity|oro[\s-]?pharyn(?:x|geal)"
        r"|naso[\s-]?pharyn(?:x|geal)|hypo[\s-]?pharyn(?:x|geal)|pharyn(?:x|geal)"
        r"|laryn(?:x|geal)|tongue|tonsil(?:lar)?|salivary|parotid|sinonasal|paranasal"
        r"|nasal\s+cavity|lip|gingival?|buccal|mouth",
        # "oral" alone is also a route ("oral cancer therapy").
        terms=r"oral\s+(?:squamous|cancers?|carcinomas?|tumou?rs?)"
        r"(?!\s+(?:therap\w*|treatments?|drugs?|medications?|agents?))",
        acronyms=r"HNSCC|SCCHN|OSCC",
    ),
    _AreaRules(
        "CNS",
        sites=r"brain|brainstem|brain\s+stem|cerebral|cerebellar|intracranial"
        r"|central\s+nervous\s+system|CNS|spinal\s+cord|pituitary|pineal",
        terms=r"gliomas?|glioblastomas?|astrocytomas?|oligodendrogliomas?|ependymomas?"
        r"|medulloblastomas?|meningiomas?|craniopharyngiomas?|gliosarcomas?|DIPG"
        r"|diffuse\s+(?:intrinsic\s+)?pontine|vestibular\s+schwannomas?|atypical\s+teratoid",
        acronyms=r"GBM|PCNSL",
        metastatic=r"leptomeningeal|meningeal\s+metasta\w*|brain\s+mets",
    ),
    _AreaRules(
        "genitourinary",
        sites=r"bladder|urothelial|urothelium|kidneys?|renal|ureter(?:al|ic)?|urethral?"
        r"|upper\s+(?:urinary\s+)?tract|urinary\s+tract|urolog(?:ic|ical)|testicular|testis"
        r"|testes|penile|penis|germ[\s-]+cell|genitourinary|transitional[\s-]+cell",
        terms=r"(?:cc|m)?RCC|UTUC|NMIBC|MIBC|wilms|nephroblastomas?|seminomas?",
    ),
    _AreaRules(
        "sarcoma",
        sites=r"soft[\s-]+tissue|bone|connective\s+tissue",
        terms=r"(?!carcinosarcoma|lymphosarcoma)[a-z]*sarcomas?|ewing\w*|GISTs?"
        r"|gastrointestinal\s+stromal|desmoid|chordomas?|PEComas?",
    ),
    _AreaRules(
        "other solid",
        sites=r"thyroid|parathyroid|thym(?:ic|us)|adrenal|adrenocortical|neuroendocrine|skin"
        r"|cutaneous|merkel[\s-]+cell|basal[\s-]+cell|eye|ocular|orbital|uveal?|conjunctival"
        r"|unknown\s+primary|pleural?",
        terms=r"mesotheliomas?|thymomas?|carcinoids?|pheochromocytomas?|paragangliomas?"
        r"|neuroblastomas?|retinoblastomas?",
        acronyms=r"CUP|GEP-NETs?|pNETs?",
    ),
)


@dataclass(frozen=True)
class _CompiledArea:
    area: str
    site: re.Pattern[str] | None
    term: re.Pattern[str] | None
    acronym: re.Pattern[str] | None
    metastatic: re.Pattern[str] | None


def _compile_area(rules: _AreaRules) -> _CompiledArea:
    site = metastatic = term = acronym = None
    if rules.sites:
        sites = f"(?:{rules.sites})"
        site = re.compile(
            rf"\b{sites}{_LINK_TOKEN}{{0,3}}?[\s/-]+{_NOUN}\b"  # lung (squamous) cancer
            rf"|\b{_NOUN}\s+(?:of|in)\s+(?:the\s+)?{_WORD_TOKEN}{{0,2}}?{sites}\b"  # … of the lung
            rf"|\b{_NOUN},\s+(?:[\w-]+\s+){{0,3}}?{sites}\b",  # MeSH: Carcinoma, … Lung
            re.I,
        )
        extra = f"|{rules.metastatic}" if rules.metastatic else ""
        metastatic = re.compile(
            rf"\b(?:{sites}\s+metasta\w*|metasta\w*\s+(?:to|in)\s+(?:the\s+)?{sites}{extra})\b",
            re.I,
        )
    if rules.terms:
        term = re.compile(rf"\b(?:{rules.terms})\b", re.I)
    if rules.acronyms:
        acronym = re.compile(rf"(?<![\w-])(?:{rules.acronyms})(?![\w]|-\d)")
    return _CompiledArea(rules.area, site, term, acronym, metastatic)


@cache
def _areas() -> tuple[_CompiledArea, ...]:
    """Compiled on first use: compiling them is most of this module's import time, which every
    process that loads the definitions would pay, whether it matches a trial or not."""
    return tuple(map(_compile_area, _AREA_RULES))


def _area_texts(trial: TrialText) -> list[str]:
    return _texts(trial.conditions, trial.mesh_terms, _titles(trial))


def _matches_area(
    area: _CompiledArea, texts: list[str], mostly_upper: list[bool], whole: str
) -> bool:
    for text, upper in zip(texts, mostly_upper, strict=True):
        if area.term and area.term.search(text):
            return True
        if area.acronym and not upper and area.acronym.search(text):
            return True
    if area.site is None or (area.metastatic and area.metastatic.search(whole)):
        return False
    return any(area.site.search(text) for text in texts)


def tumor_areas(trial: TrialText) -> tuple[str, ...]:
    """The trial's tumor areas, in `TUMOR_AREAS` order."""
    texts = _area_texts(trial)
    mostly_upper = [_mostly_upper(text) for text in texts]
    whole = "\n".join([*texts, *_texts(trial.keywords)])
    return tuple(area.area for area in _areas() if _matches_area(area, texts, mostly_upper, whole))


# ---------------------------------------------------------------------------------------------
# Biomarkers

EGFR = "EGFR"
EGFR_EXON19 = "EGFR exon 19 deletion"
EGFR_L858R = "EGFR L858R"
EGFR_T790M = "EGFR T790M"
EGFR_EXON20 = "EGFR exon 20 insertion"
HER2 = "HER2"
HER2_POSITIVE = "HER2-positive"
HER2_LOW = "HER2-low"
HER2_MUTATION = "HER2 mutation"
KRAS = "KRAS"
BRAF = "BRAF"
MET = "MET"
PD_L1 = "PD-L1"
BCR_ABL = "BCR-ABL"
HR_POSITIVE = "HR-positive"
MSI_H = "MSI-H/dMMR"
TMB_HIGH = "TMB-high"
HRD = "HRD"

BIOMARKERS: tuple[str, ...] = (
    EGFR,
    EGFR_EXON19,
    EGFR_L858R,
    EGFR_T790M,
    EGFR_EXON20,
    "ALK",
    "ROS1",
    KRAS,
    "KRAS G12C",
    "KRAS G12D",
    BRAF,
    "BRAF V600E",
    "BRAF V600",
    HER2,
    HER2_POSITIVE,
    HER2_LOW,
    HER2_MUTATION,
    PD_L1,
    MSI_H,
    TMB_HIGH,
    "NTRK fusion",
    "RET fusion",
    "RET mutation",
    MET,
    "MET exon 14 skipping",
    "MET amplification",
    "BRCA",
    "BRCA1",
    "BRCA2",
    HRD,
    "FGFR",
    "FGFR1",
    "FGFR2",
    "FGFR3",
    "FGFR4",
    "IDH",
    "IDH1",
    "IDH2",
    "FLT3",
    "NPM1",
    "KMT2A",
    "NUP98",
    "TP53",
    BCR_ABL,
    HR_POSITIVE,
    "PIK3CA",
    "ESR1",
    "Claudin 18.2",
    "CD7",
    "CD19",
    "CD20",
    "CD22",
    "CD30",
    "CD33",
    "CD38",
    "CD123",
    "BCMA",
)

# Negation cues before a mention in its clause ("must not have EGFR, ALK or ROS1 …").
_NEGATION_BEFORE = re.compile(
    r"\b(?:no|not(?!\s+limited)|without|w/o|absence\s+of|absent|lack(?:ing)?\s+of"
    r"|negative\s+for|exclu\w*|except|other\s+than|free\s+of|unknown|regardless\s+of"
    r"|irrespective\s+of|independent(?:ly)?\s+of|unselected|neither|nor)\b",
    re.I,
)
_NEGATION_WINDOW_WORDS = 30
# A new requirement ends a negation's reach ("no prior therapy, with EGFR mutation").
_NEGATION_RESET = re.compile(
    r"\b(?:but|who|whose|which|however|although|and\s+(?:have|has|are|is|must))\b|,\s*with\b",
    re.I,
)
# A mention that is about testing, not a requirement ("EGFR mutation status", "for PD-L1
# expression testing").
_TESTING_AFTER = re.compile(
    r"^[\s-]*(?:[\w-]+\s+){0,2}?(?:testing|tests?|detection|assays?|status|analys[ie]s|results?"
    r"|determination|screening|evaluation|assessment)\b",
    re.I,
)
# Eligibility clauses that allow rather than require ("Ph+ ALL patients are eligible if …").
_CONDITIONAL_CLAUSE = re.compile(
    r"\b(?:if|unless|whether|may|allowed|permitted|regardless|irrespective|optional|recommended"
    r"|with\s+or\s+without)\b",
    re.I,
)
_ALTERATION_WORD = (
    r"(?:mutat\w*|mutant\w*|alteration\w*|altered|aberration\w*|rearrange\w*|fusions?|fused"
    r"|translocat\w*|amplif\w*|positiv\w*|variants?|insertions?|deletions?|exons?|ex\d+\w*"
    r"|del\w*|ins\d*|ITD|TKD|driven|activating|sensiti[sz]ing|transcripts?"
    r"|p\.?[A-Z]\d{2,4}[A-Z]?|[A-Z]\d{2,4}[A-Z])"
)
_DRUG_WORD = (
    r"(?:inhibitors?|TKIs?|tyrosine|antibod\w*|targeted|targeting|directed|blockers?"
    r"|antagonists?|degraders?|CAR\w*|vaccines?|therap\w*|treatments?|agents?|drugs?)"
)
# An intervening word between a gene and its alteration ("EGFR gene mutation").
_GAP_WORD = rf"(?:(?!{_DRUG_WORD}\b)[\w./]+[\s-]+)"
_GENE_SYMBOL = (
    r"(?-i:EGFR|ALK|ROS-?1|KRAS|NRAS|BRAF|HER-?2|ERBB2|MET|RET|NTRK[1-3]?|BRCA[12]?|IDH[12]?"
    r"|FGFR[1-4]?|FLT3|NPM1|KMT2A|MLL|NUP98|PIK3CA|ESR1|TP53|PD-?L1|ER|PR|HR)"
)
# Other gene symbols and list words between a mention and its alteration ("EGFR, ALK or ROS1
# alterations"), or the symbol in brackets after a gene's name ("HER2 (ERBB2) mutant").
_LIST_OF_GENES = re.compile(
    rf"^(?:\s*(?:,|/|\bor\b|\band\b|&|\band/or\b)\s*{_GENE_SYMBOL}\b|\s*\(\s*{_GENE_SYMBOL}\s*\))*"
    r"\s*\)?",
    re.I,
)
_NEGATIVE_AFTER = re.compile(
    r"^[\s-]*(?:\(\s*)?(?:(?:gene|genes|mutations?|status|alterations?|rearrangements?"
    r"|fusions?|expression|exons?\s*\d*|driver|is|was|TPS|CPS|score|level)[\s:-]+)*"
    r"(?:wild[\s-]*types?|wt\b|negative|neg\b|not\s+detected|unmutated|non[\s-]?mutated"
    r"|non[\s-]?amplified|absent|excluded|ineligible|not\s+(?:eligible|allowed|permitted)"
    r"|unknown|<|≤|less\s+than)",
    re.I,
)
_POSITIVE_AFTER = re.compile(
    rf"^[\s:-]*(?:\(\s*)?(?:\+|{_GAP_WORD}{{0,2}}?{_ALTERATION_WORD}\b)", re.I
)
_POSITIVE_BEFORE = re.compile(
    r"\b(?:mutat\w*|mutant|activating|sensiti[sz]ing|rearranged|amplified|positive\s+for"
    r"|(?:mutations?|alterations?|fusions?|rearrangements?|amplifications?)\s+(?:in|of)"
    r"(?:\s+the)?)\s*$",
    re.I,
)
_EXPRESSION_AFTER = re.compile(
    r"^[\s-]*(?:\(\s*)?(?:\+|\(\+\)|positiv\w*|expression|expressing|overexpress\w*|high\b"
    r"|≥|>=|>|tumou?r\s+proportion\s+score|TPS|CPS|combined\s+positive|IHC|staining|score)",
    re.I,
)
_EXPRESSION_BEFORE = re.compile(
    r"\b(?:expressing|expression\s+of|positive\s+for|positivity\s+for)\s*$", re.I
)
_DRUG_BEFORE = re.compile(r"\banti[\s-]*$", re.I)


@dataclass(frozen=True)
class _Mention:
    clause: str
    start: int
    end: int

    @property
    def before(self) -> str:
        return self.clause[: self.start]

    @property
    def after(self) -> str:
        return self.clause[self.end :]

    def after_list(self) -> str:
        """The text after the mention, past a list of other genes that shares its words."""
        after = self.after
        listed = _LIST_OF_GENES.match(after)
        return after[listed.end() :] if listed else after

    def negated(self) -> bool:
        """Negated, negative, or only tested for ("EGFR mutation status")."""
        window = " ".join(self.before.split()[-_NEGATION_WINDOW_WORDS:])
        resets = list(_NEGATION_RESET.finditer(window))
        if resets:
            window = window[resets[-1].end() :]
        after = self.after_list()
        return bool(
            _NEGATION_BEFORE.search(window)
            or _NEGATIVE_AFTER.match(after)
            or _TESTING_AFTER.match(after)
            or _TESTING_AFTER.match(self.after_alteration())
        )

    def after_alteration(self) -> str:
        """The text after the alteration words that follow the mention."""
        match = _POSITIVE_AFTER.match(self.after_list())
        return self.after_list()[match.end() :] if match else ""

    def altered(self, match: re.Match[str]) -> bool:
        """An alteration next to the mention ("EGFR-mutant", "mutations in EGFR", "gBRCA")."""
        return bool(
            match.group("pre")
            or match.group("post")
            or _POSITIVE_AFTER.match(self.after_list())
            or _POSITIVE_BEFORE.search(self.before)
        )

    def expressed(self) -> bool:
        """A positivity or expression word next to the mention ("PD-L1 TPS", "CD19+")."""
        if _DRUG_BEFORE.search(self.before):
            return False
        return bool(
            _EXPRESSION_AFTER.match(self.after_list()) or _EXPRESSION_BEFORE.search(self.before)
        )


class _Clauses(tuple[str, ...]):
    """Clauses, and all of them in one text to rule a pattern out with a single search. A
    pattern that matches in a clause matches in the clauses joined by line breaks as long as it
    is anchored to neither end of its text and its lookarounds at a clause's edges (`\\b`,
    `(?<![\\w-])`, `(?![\\w])`) treat a line break as they treat the end of the text: true of
    every mention pattern, and tested on the real trials."""

    @cached_property
    def joined(self) -> str:
        return "\n".join(self)


def _mentions(
    pattern: re.Pattern[str], clauses: _Clauses
) -> Iterator[tuple[_Mention, re.Match[str]]]:
    if not pattern.search(clauses.joined):
        return
    for clause in clauses:
        for match in pattern.finditer(clause):
            yield _Mention(clause, match.start(), match.end()), match


def _symbol(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){pattern}(?![\w])", flags)


def _gene_symbol(pattern: str) -> re.Pattern[str]:
    """A gene symbol, also in its altered short forms: gBRCA, mIDH1, EGFRm, KMT2Ar, MLL-r."""
    return re.compile(
        rf"(?<![\w-])(?P<pre>[gsm](?=[A-Z]))?(?:{pattern})(?P<post>m\+?|-?r)?(?![\w])"
    )


@dataclass(frozen=True)
class _Gene:
    """A marker and the name it records; "{}" in `name` is the match's `member` group."""

    pattern: re.Pattern[str]
    name: str


_GENES: tuple[_Gene, ...] = (
    _Gene(_gene_symbol(r"(?:EGFR|(?i:epidermal\s+growth\s+factor\s+receptor))"), EGFR),
    _Gene(_gene_symbol(r"(?:ALK|(?i:anaplastic\s+lymphoma\s+kinase))"), "ALK"),
    _Gene(_gene_symbol(r"ROS-?1"), "ROS1"),
    _Gene(_gene_symbol(r"K-?RAS"), KRAS),
    _Gene(_gene_symbol(r"B-?RAF"), BRAF),
    _Gene(_gene_symbol(r"(?:c-?)?MET"), MET),
    _Gene(_gene_symbol(r"N?TRK[1-3]?"), "NTRK fusion"),
    _Gene(_gene_symbol(r"BRCA(?P<member>[12](?:/2)?)?"), "BRCA{}"),
    _Gene(_gene_symbol(r"FGFR(?P<member>[1-4])?"), "FGFR{}"),
    _Gene(_gene_symbol(r"IDH(?P<member>[12](?:/2)?)?"), "IDH{}"),
    _Gene(_gene_symbol(r"FLT-?3"), "FLT3"),
    _Gene(_gene_symbol(r"(?:NPM-?1|(?i:nucleophosmin)(?:\s*1)?)"), "NPM1"),
    _Gene(_gene_symbol(r"(?:KMT2A|MLL1?|(?i:mixed[\s-]lineage\s+leuka?emia))"), "KMT2A"),
    _Gene(_gene_symbol(r"(?:NUP98|(?i:nucleoporin\s*98))"), "NUP98"),
    _Gene(_gene_symbol(r"(?:TP53|p53)"), "TP53"),
    _Gene(_gene_symbol(r"PIK3CA"), "PIK3CA"),
    _Gene(_gene_symbol(r"ESR1"), "ESR1"),
    _Gene(_gene_symbol(r"BCR[\s:/-]*ABL1?"), BCR_ABL),
)

_STATUS_MARKERS: tuple[_Gene, ...] = (
    _Gene(_symbol(r"PD-?L1|(?i:programmed\s+death[\s-]ligand[\s-]1)"), PD_L1),
    _Gene(_symbol(r"(?P<member>CD(?:7|19|20|22|30|33|38|123))"), "{}"),
    _Gene(_symbol(r"BCMA"), "BCMA"),
    _Gene(_symbol(r"(?i:claudin[\s-]?18(?:\.2)?|CLDN18(?:\.2)?)"), "Claudin 18.2"),
    _Gene(_symbol(r"(?:HR|ER|PR|(?i:(?:hormone|o?estrogen|progesterone)\s+receptors?))"), ""),
    _Gene(_symbol(r"HRD"), HRD),
)

# Mentions that are an alteration by themselves: (pattern, names recorded).
_VARIANTS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern, re.I), names)
    for pattern, names in (
        (
            r"\b(?:(?:exon|ex)[\s-]*19[\s-]*(?:deletions?|del\w*)|del(?:etion)?[\s-]*(?:exon[\s-]*)?"
            r"19\b|19[\s-]*del\w*)",
            (EGFR, EGFR_EXON19),
        ),
        (r"\bL858R\b", (EGFR, EGFR_L858R)),
        (r"\bT790M\b", (EGFR, EGFR_T790M)),
        (r"\b(?:KRAS[\s-]*)?(?:p\.)?G12C\b", (KRAS, "KRAS G12C")),
        (r"\b(?:KRAS[\s-]*)?(?:p\.)?G12D\b", (KRAS, "KRAS G12D")),
        (r"\b(?:BRAF[\s-]*)?(?:p\.)?V600E\b", (BRAF, "BRAF V600E")),
        (r"\b(?:BRAF[\s-]*)?(?:p\.)?V600(?:K|(?![A-Z\d]))", (BRAF, "BRAF V600")),
        (
            r"\b(?:MET[\s-]*(?:exon|ex)[\s-]*14|METex14|exon[\s-]*14[\s-]*skipping)",
            (MET, "MET exon 14 skipping"),
        ),
        (
            r"\b(?:MSI[\s-]*H\b|MSI[\s-]*high|microsatellite[\s-]+instability[\s-]*(?:\(MSI\)[\s-]*)?"
            r"(?:-|\s)?high|high[\s-]+microsatellite[\s-]+instability|dMMR\b|mismatch[\s-]+repair"
            r"[\s-]*(?:\(MMR\)[\s-]*)?(?:-|\s)?deficien\w*|deficient[\s-]+mismatch[\s-]+repair"
            r"|MMR[\s-]*deficien\w*)",
            (MSI_H,),
        ),
        (
            r"\b(?:TMB[\s-]*(?:H\b|high)|high[\s-]+tumou?r[\s-]+mutation(?:al)?[\s-]+burden"
            r"|tumou?r[\s-]+mutation(?:al)?[\s-]+burden[\s-]*(?:\(TMB\)[\s-]*)?(?:-|\s)?high"
            r"|TMB\s*(?:≥|>=|>)\s*\d+)",
            (TMB_HIGH,),
        ),
        (
            r"(?<![\w-])(?:Phi?\s*\+|Ph(?:i)?[\s-]*positive|philadelphia[\s-]+(?:chromosome[\s-]+)?"
            r"(?:positive|\+))",
            (BCR_ABL,),
        ),
        (r"\b(?:homologous[\s-]+recombination[\s-]+(?:repair[\s-]+)?deficien\w*)", (HRD,)),
        (r"\b(?:tumou?r[\s-]+proportion[\s-]+score|TPS)\s*(?:\(TPS\)\s*)?(?:≥|>=|>|of)", (PD_L1,)),
    )
)
_EXON20 = re.compile(
    r"\b(?:(?:exon|ex)[\s-]*20[\s-]*(?:insertions?|ins\w*)|ex20ins|exon20ins)", re.I
)
_EXON20_GENE = re.compile(r"\b(EGFR|HER-?2|ERBB2)\b", re.I)
_EXON20_GENE_REACH = 60

_HER2 = _symbol(r"(?:HER-?2(?:/neu)?|ERBB-?2)", re.I)
_HER2_LOW = re.compile(r"^[\s-]*(?:\(\s*)?(?:ultra)?low\b", re.I)
_HER2_POSITIVE = re.compile(
    r"^[\s-]*(?:\(\s*)?(?:\+|\(\+\)|positiv\w*|amplif\w*|overexpress\w*|3\+)", re.I
)
_HER2_MUTATION = re.compile(
    rf"^[\s:-]*(?:\(\s*)?{_GAP_WORD}{{0,2}}?(?:mutat\w*|mutant\w*|exons?|insertions?)\b", re.I
)
_HER2_NEGATIVE_SIGN = re.compile(r"^\s*(?:-|\(-\)|−)(?![\w])")
_HER2_TARGETED = re.compile(r"^[\s-]*(?:targeted|directed|targeting|TKIs?|inhibitors?)\b", re.I)


def _gene_name(gene: _Gene, match: re.Match[str]) -> tuple[str, ...]:
    if "{}" not in gene.name:
        return (gene.name,)
    member = match.groupdict().get("member")
    if member is None:
        return (gene.name.format(""),)
    family = gene.name.format("")
    if member.endswith("/2"):  # "BRCA1/2", "IDH1/2": both members
        return (f"{family}1", f"{family}2")
    return (gene.name.format(member),)


def _status_name(gene: _Gene, match: re.Match[str]) -> tuple[str, ...]:
    if gene.name == "":
        return (HR_POSITIVE,)
    if gene.name == "{}":
        return (str(match.group("member")).upper(),)
    return (gene.name,)


def _status_expressed(gene: _Gene, mention: _Mention) -> bool:
    if gene.name == "":  # hormone receptors: only explicit positivity ("HR+", "ER-positive")
        return bool(re.match(r"^[\s-]*(?:\(\s*)?(?:\+|\(\+\)|positiv\w*)", mention.after_list()))
    return mention.expressed()


def _her2_names(mention: _Mention) -> tuple[str, ...]:
    after = mention.after_list()
    if _HER2_NEGATIVE_SIGN.match(after) or _DRUG_BEFORE.search(mention.before):
        return ()
    if _HER2_TARGETED.match(after):
        return ()
    if _HER2_LOW.match(after):
        return (HER2, HER2_LOW)
    if _HER2_POSITIVE.match(after) or re.search(r"positive\s+for\s*$", mention.before, re.I):
        return (HER2, HER2_POSITIVE)
    if _HER2_MUTATION.match(after):
        return (HER2, HER2_MUTATION)
    if mention.expressed():
        return (HER2,)
    return ()


def _exon20_names(mention: _Mention) -> tuple[str, ...]:
    genes = {
        match.group(1).upper().replace("-", "")
        for match in _EXON20_GENE.finditer(mention.before[-_EXON20_GENE_REACH:])
    }
    names: list[str] = []
    if genes & {"HER2", "ERBB2"}:
        names += [HER2, HER2_MUTATION]
    if "EGFR" in genes or not names:
        names += [EGFR, EGFR_EXON20]
    return tuple(names)


def _ret_names(mention: _Mention) -> tuple[str, ...]:
    after = mention.after_list()
    if re.match(r"^[\s-]*(?:\w+[\s-]+)?(?:mutat\w*|mutant)", after, re.I):
        return ("RET mutation",)
    if _POSITIVE_AFTER.match(after) or _POSITIVE_BEFORE.search(mention.before):
        return ("RET fusion",)
    return ()


_RET = _symbol(r"RET")


def _found_biomarkers(clauses: _Clauses) -> Iterator[str]:
    for gene in _GENES:
        for mention, match in _mentions(gene.pattern, clauses):
            if mention.altered(match) and not mention.negated():
                yield from _gene_name(gene, match)
    for gene in _STATUS_MARKERS:
        for mention, match in _mentions(gene.pattern, clauses):
            if _status_expressed(gene, mention) and not mention.negated():
                yield from _status_name(gene, match)
    for pattern, names in _VARIANTS:
        for mention, _ in _mentions(pattern, clauses):
            if not mention.negated():
                yield from names
    for mention, _ in _mentions(_EXON20, clauses):
        if not mention.negated():
            yield from _exon20_names(mention)
    for mention, _ in _mentions(_HER2, clauses):
        if not mention.negated():
            yield from _her2_names(mention)
    for mention, _ in _mentions(_RET, clauses):
        if not mention.negated():
            yield from _ret_names(mention)


def _biomarker_clauses(trial: TrialText) -> _Clauses:
    headline = _clauses(_texts(_titles(trial), trial.conditions, trial.keywords))
    eligibility = _clauses([inclusion_criteria(trial.eligibility)])
    return _Clauses([*headline, *(c for c in eligibility if not _CONDITIONAL_CLAUSE.search(c))])


_FAMILIES = ("BRCA", "IDH", "FGFR")


def biomarkers(trial: TrialText) -> tuple[str, ...]:
    """The biomarkers the trial selects for, in `BIOMARKERS` order."""
    found = set(_found_biomarkers(_biomarker_clauses(trial)))
    # A family ("gBRCAm") adds nothing when one of its members is named too.
    found -= {f for f in _FAMILIES if any(n.startswith(f) and n != f for n in found)}
    return tuple(name for name in BIOMARKERS if name in found)


# ---------------------------------------------------------------------------------------------
# Line of therapy

_ONCOLOGY = re.compile(
    r"cancer|tumou?r|carcinoma|lymphoma|leuka?emia|myeloma|melanoma|sarcoma|neoplas|malignan"
    r"|oncolog|metasta|glioma|blastoma|NSCLC|myelodysplas",
    re.I,
)

_SETTINGS = re.compile(
    r"(?P<perioperative>\bperi[\s-]?operative\b(?!\s+(?:care|pain|period|anxiety|stress"
    r"|management|an(?:a)?esth\w*|analges\w*|nursing|complications?|outcomes?|nutrition"
    r"|medicine|blood|fluids?|hypotherm\w*|risk|mortality|morbidity|rehabilitation"
    r"|exercise|education)\b))"
    r"|(?P<neoadjuvant>\bneo[\s-]?adjuvant\b|\bpre[\s-]?operative\b)"
    r"|(?P<adjuvant>(?<![\w-])adjuvant\b)"
    r"|(?P<maintenance>\bmaintenance\b)",
    re.I,
)

# "after failure of", "progressed on", … followed by a numbered line.
_AFTER_LINE = (
    r"(?:(?:(?:after|following|upon|post)\s+(?:the\s+)?(?:failure|progression|relapse)"
    r"\s+(?:of|on|after|to|with)|after|following|post|beyond|progress\w*\s+(?:on|after|following"
    r"|during)|fail\w*(?:\s+(?:of|on|to|with))?|refractory\s+to|resistan\w*\s+to"
    r"|intoleran\w*\s+to)\s+(?:the\s+)?(?:previous\s+|prior\s+)?(?:standard\s+)?)"
)
_LINE_CUES = re.compile(
    # Count-specific cues come first, so "after first-line" is not read as "first-line".
    r"(?P<later>\b(?:third|3rd|fourth|4th)[\s-]*lines?\b|\b3L\+?|\blater[\s-]+lines?\b"
    r"|\b(?:2L|(?:second|2nd)[\s-]*line)\s*(?:\+|and\s+beyond|or\s+(?:later|beyond|above))"
    rf"|\b{_AFTER_LINE}(?:second|2nd)[\s-]*lines?\b"
    r"|(?:≥|>=|at\s+least|two\s+or\s+more|2\s+or\s+more|more\s+than\s+one|multiple)\s*"
    r"(?:one|1|two|2|three|3)?\s+(?:prior|previous|lines?)\b"
    r"|≥\s*[23]\s+(?:prior\s+)?lines?|\b(?:two|2|three|3)\s+(?:prior|previous)\s+(?:lines?|regimens?"
    r"|therap\w*|treatments?)|\bheavily\s+pre[\s-]?treated|\bsecond\s+relapse|\bmultiply"
    r"\s+relapsed)"
    r"|(?P<second>\b(?:second|2nd)[\s-]*line\b|\b2L\b"
    rf"|\b{_AFTER_LINE}(?:first|1st|front)[\s-]*line\b"
    r"|\b(?:one|1|single|a\s+single)\s+(?:prior|previous)\s+(?:lines?|regimens?|systemic|therap"
    r"\w*|treatments?)|\bfirst\s+relapse)"
    r"|(?P<first>\b(?:first|1st|front)[\s-]*line\b|\b1L\b|\bpreviously[\s-]+untreated\b"
    r"|\buntreated\b(?!\s+(?:brain|cns|central|leptomeningeal|intracranial|asymptomatic))"
    r"|\b(?:treatment|therapy|chemo(?:therapy)?|TKI|systemic[\s-]+therapy)[\s-]*na[iï]ve\b"
    r"|\bnewly[\s-]+diagnosed\b|\b(?:no|without)\s+(?:any\s+)?(?:prior|previous)\s+(?:systemic\s+)?"
    r"(?:anti[\s-]?cancer\s+|anti[\s-]?tumou?r\s+)?(?:therap\w*|treatments?|chemotherapy|lines?"
    r"|regimens?)\b(?!\s+for\s+(?:early|localized|resectable))"
    r"|\b(?:not|never)\s+(?:\w+\s+){0,2}?(?:received|had|undergone)\s+(?:any\s+)?(?:prior|previous)"
    r"?\s*(?:systemic\s+)?(?:therap\w*|treatments?|chemotherapy|anti[\s-]?cancer))"
    r"|(?P<pretreated>\bpreviously[\s-]+treated\b|\bpre[\s-]?treated\b"
    r"|(?:\)|\b(?:treatment|therapy|TKI|CPI|ICI|immunotherapy|inhibitors?|platinum))"
    r"[\s-]*(?:experienced|resistant|refractory|failure)\b|\brelapsed\b|\brefractory\b|\bR/R\b"
    r"|\bin\s+relapse\b|\brelapse\s+(?:leuka?emia|AML|ALL|lymphoma|myeloma)"
    r"|\bprogress(?:ed|ion|ing)\s+(?:on|after|following|during)\b"
    r"|\b(?:after|following|upon)\s+(?:the\s+)?(?:failure|progression|relapse)\b"
    r"|\bfail(?:ed|ure|ing)\s+(?:of\s+|to\s+|on\s+|after\s+)?(?:prior|previous|standard|the)\b"
    r"|\bhave\s+failed\b|\bacquired\s+resistance\b|\bresistan(?:t|ce)\s+to\b"
    r"|^\W*(?:prior|previous)\s+(?:(?!radi|surg|adjuvant|neoadjuvant)\w+[\s-]+){0,3}?"
    r"(?:therap\w*|treatments?|chemotherapy|lines?|regimens?)\b"  # "Prior therapy: …"
    r"|\b(?:received|had|undergone|treated\s+with|exposed\s+to)\s+(?:\w+[\s-]+){0,3}?"
    r"(?:prior|previous)\s+(?:\w+[\s-]+){0,3}?(?:therap\w*|treatments?|chemotherapy|lines?"
    r"|regimens?)\b|\b(?:prior|previous)\s+(?:\w+[\s-]+){0,4}?(?:is|are)\s+required\b)",
    re.I,
)
# A clause that allows rather than requires earlier treatment: its pretreatment cues do not
# count ("prior chemotherapy is allowed").
_OPTIONAL_CLAUSE = re.compile(
    r"\b(?:may\s+(?:have|be)|(?<!not\s)(?:allowed|permitted|acceptable)"
    r"|(?:is|are)\s+(?:also\s+)?eligible|with\s+or\s+without\s+(?:prior|previous))\b",
    re.I,
)
# A clause that forbids earlier treatment: its pretreatment cues mean first-line ("prior
# chemotherapy has not been given", "… is not allowed").
_FORBIDDING_CLAUSE = re.compile(
    r"\b(?:not|never)\s+(?:be\s+|been\s+)?(?:allowed|permitted|performed|given|received"
    r"|administered)\b",
    re.I,
)


def _setting(texts: Sequence[str]) -> str | None:
    found = {
        match.lastgroup for text in texts for match in _SETTINGS.finditer(text) if match.lastgroup
    }
    if PERIOPERATIVE in found or {NEOADJUVANT, ADJUVANT} <= found:
        return PERIOPERATIVE
    for setting in (NEOADJUVANT, ADJUVANT, MAINTENANCE):
        if setting in found:
            return setting
    return None


def _line_from_cues(cues: set[str]) -> str | None:
    pretreated = cues & {"later", "second", "pretreated"}
    if "first" in cues:
        return None if pretreated else FIRST_LINE
    if "second" in cues:
        return SECOND_LINE
    return LATER_LINE if pretreated else None


def _line_cues(clauses: Iterable[str]) -> set[str]:
    cues: set[str] = set()
    for clause in clauses:
        found = {str(match.lastgroup) for match in _LINE_CUES.finditer(clause)}
        if found - {"first"} and _FORBIDDING_CLAUSE.search(clause):
            found = {"first"}
        elif _OPTIONAL_CLAUSE.search(clause):
            found &= {"first"}
        cues |= found
    return cues


def line_of_therapy(trial: TrialText) -> str | None:
    """One of `LINES_OF_THERAPY`, or None when the text does not say or says several."""
    headline = _texts(_titles(trial), trial.conditions, trial.keywords)
    if not any(_ONCOLOGY.search(text) for text in [*headline, *_texts(trial.mesh_terms)]):
        return None
    setting = _setting(_titles(trial))
    if setting:
        return setting
    cues = _line_cues(_clauses(headline))
    if cues:
        return _line_from_cues(cues)
    return _line_from_cues(_line_cues(_clauses([inclusion_criteria(trial.eligibility)])))


# ---------------------------------------------------------------------------------------------
# Combination partners

_DRUG_INTERVENTION_TYPES = frozenset({"DRUG", "BIOLOGICAL", "GENETIC", "COMBINATION_PRODUCT"})
_EXPERIMENTAL = "EXPERIMENTAL"
# Given alongside the therapy rather than combined with it.
_SUPPORTIVE = frozenset(
    {
        "filgrastim",
        "pegfilgrastim",
        "lenograstim",
        "g-csf",
        "mesna",
        "allopurinol",
        "rasburicase",
        "valacyclovir",
        "acyclovir",
        "aciclovir",
        "ondansetron",
        "granisetron",
        "palonosetron",
        "aprepitant",
        "rhuph-20",
        "hyaluronidase",
        "folic acid",
        "vitamin b12",
    }
)
_LYMPHODEPLETION = frozenset({"fludarabine", "cyclophosphamide", "bendamustine"})
_TYPE_PREFIX = re.compile(r"^\s*([A-Za-z _]+):\s*")


def _kind(intervention_type: str | None) -> str:
    return (intervention_type or "").strip().upper().replace(" ", "_")


def _drug_names(name: str) -> list[str]:
    return [str(found.name) for found in parse_name(name).components if found.name]


def _strip_type(name: str) -> tuple[str | None, str]:
    """'Drug: Osimertinib' → ('DRUG', 'Osimertinib'), the form of trial_arms.intervention_names."""
    match = _TYPE_PREFIX.match(name)
    if match and _kind(match.group(1)) in _DRUG_INTERVENTION_TYPES | {"OTHER", "PROCEDURE"}:
        return _kind(match.group(1)), name[match.end() :]
    return None, name


def _linked_interventions(trial: TrialText, label: str) -> list[tuple[str | None, str]]:
    types = {name: kind for kind, name in trial.interventions if name}
    linked: list[tuple[str | None, str]] = []
    for arm_label, raw in trial.arm_interventions:
        if arm_label != label:
            continue
        prefix_type, name = _strip_type(raw)
        linked.append((types.get(name, prefix_type), name))
    return linked


def _mentioned_interventions(trial: TrialText, text: str) -> list[tuple[str | None, str]]:
    folded = text.casefold()
    found: list[tuple[str | None, str]] = []
    for kind, name in trial.interventions:
        if not name:
            continue
        candidates = [name.casefold(), *_drug_names(name)]
        if any(re.search(rf"(?<!\w){re.escape(c)}(?!\w)", folded) for c in candidates if c):
            found.append((kind, name))
    return found


def _arm_interventions(
    trial: TrialText, label: str | None, description: str | None
) -> list[tuple[str | None, str]]:
    if trial.arm_interventions:
        return _linked_interventions(trial, label or "")
    if len(trial.arms) == 1:
        return [(kind, name) for kind, name in trial.interventions if name]
    return _mentioned_interventions(trial, f"{label or ''}\n{description or ''}")


def _label_drugs(label: str | None) -> set[str]:
    """Drugs an arm's label names by INN stem ("Milciclib plus gemcitabine"), for drugs that
    are not registered as interventions; one-word names only, so "Arm B: X" adds nothing."""
    names = _drug_names(label) if label else []
    return {name for name in names if " " not in name and classify(name) is not None}


def _arm_drugs(label: str | None, interventions: Iterable[tuple[str | None, str]]) -> set[str]:
    names = {
        drug
        for kind, name in interventions
        if _kind(kind) in _DRUG_INTERVENTION_TYPES
        for drug in _drug_names(name)
    }
    names |= _label_drugs(label)
    names -= _SUPPORTIVE
    has_cell_therapy = any(
        (found := classify(name)) is not None and found.modality == CELL_THERAPY for name in names
    )
    if has_cell_therapy:
        names -= _LYMPHODEPLETION
    return names


def combination_partners(trial: TrialText) -> tuple[str, ...]:
    """The normalized drug names of the experimental arms that combine two or more drugs."""
    partners: set[str] = set()
    for label, group_type, description in trial.arms:
        if _kind(group_type) != _EXPERIMENTAL:
            continue
        drugs = _arm_drugs(label, _arm_interventions(trial, label, description))
        if len(drugs) >= 2:
            partners |= drugs
    return tuple(sorted(partners))


# ---------------------------------------------------------------------------------------------
# Entry points


def extract_features(trial: TrialText) -> TrialFeatures:
    """All rule-based features of one trial."""
    areas = tumor_areas(trial)
    features = TrialFeatures(
        nct_id=trial.nct_id,
        tumor_areas=areas,
        biomarkers=biomarkers(trial),
        line_of_therapy=line_of_therapy(trial),
        combination_partners=combination_partners(trial),
        unresolved=not areas,
    )
    return replace(features, value_sources=sources_of(features, {}, EXTRACTED_BY))


def sources_of(
    features: TrialFeatures, known: dict[str, str], extractor: str
) -> tuple[tuple[str, str], ...]:
    """`known` sources kept, `extractor` for every other non-empty value, in field order."""
    return tuple(
        (name, known.get(name, extractor)) for name in FEATURE_FIELDS if getattr(features, name)
    )


def to_row(features: TrialFeatures) -> tuple[Any, ...]:
    """The `enriched.trial_features` row, in `TRIAL_FEATURE_COLUMNS` order."""
    values: dict[str, Any] = {
        "nct_id": features.nct_id,
        "tumor_areas": list(features.tumor_areas),
        "biomarkers": list(features.biomarkers),
        "line_of_therapy": features.line_of_therapy,
        "combination_partners": list(features.combination_partners),
        "extracted_by": features.extracted_by,
        "value_sources": dict(features.value_sources),
        "rules_version": features.rules_version,
        "unresolved": features.unresolved,
    }
    return tuple(values[column] for column in TRIAL_FEATURE_COLUMNS)


def features_hash(features: TrialFeatures) -> str:
    """sha256 over the row with its column names: equal features, equal hash."""
    document = [list(TRIAL_FEATURE_COLUMNS), list(to_row(features))]
    return hashlib.sha256(orjson.dumps(document)).hexdigest()
