"""Realistic synthetic PubMed articles (efetch XML), for the replay server, demos and benchmarks.

Each day is one file ``out/pubmed/<YYYY-MM-DD>.xml``: a ``<PubmedArticleSet>`` whose articles all
have ``<DateRevised>`` on that day, so E-utilities' ``datetype=mdat`` finds them on that day.

- Deterministic: one ``random.Random`` per day, seeded from (seed, day), and fixed pools.
- PMIDs are ``PMID_BASE`` (90,000,000) plus a serial number: far above every real PMID (about
  41 million in 2025) and below the 99,999,999 the PubMed client splits ranges up to.
  :func:`write_synthetic_pubmed_day` starts at ``BIG_DAY_FIRST_PMID`` (97,000,000) unless told
  otherwise, so a big day written beside a ``synth`` run does not reuse its PMIDs.
- Shapes follow the 255 real articles in ``shared/realdata/pubmed``: statuses MEDLINE (most),
  PubMed-not-MEDLINE, In-Process, In-Data-Review and Publisher (the last three without MeSH
  headings, with a recent entrez date); structured abstracts with labelled sections or plain
  ones, some without abstract, ``P<0.001`` and inline ``<i>`` markup; authors with
  affiliations (sometimes with an e-mail address or an ORCID) and now and then a
  ``CollectiveName``; MeSH headings with qualifiers; keywords, chemicals, grants, reference
  lists; a DOI in about nine articles out of ten; months as text or numbers, a few
  ``MedlineDate`` and ``Season`` dates; some non-English articles with a bracketed title and a
  ``VernacularTitle``.
- A fraction of the articles (``nct_fraction``, default 0.2) report a trial of the same run: its
  NCT id is in ``<DataBankList>`` (ClinicalTrials.gov) and in the abstract text.

Size of one ``<PubmedArticle>`` without indentation, in bytes (3,000 synthetic articles, seed 1):

==========  =====  =====  =====  ======  ======  ======  ======
percentile    p10    p25    p50     p75     p90     p99     max
==========  =====  =====  =====  ======  ======  ======  ======
real (255)  4,438  5,286  7,699  12,519  19,239  28,389  53,208
synthetic   4,695  5,452  6,816  11,271  17,836  34,688  58,419
==========  =====  =====  =====  ======  ======  ======  ======
"""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

from bioloupe_data.replay.synth import (
    _CITIES,
    _COUNTRIES,
    _DISEASES,
    _DRUGS,
    _FIRST_NAMES,
    _LAST_NAMES,
    _between,
    _chance,
    _Disease,
    _Drug,
    _pick,
    _skewed,
    _table,
    _Weighted,
)

PMID_BASE = 90_000_000
BIG_DAY_FIRST_PMID = 97_000_000
PMID_LIMIT = 100_000_000
MAX_ARTICLES = BIG_DAY_FIRST_PMID - PMID_BASE
DEFAULT_NCT_FRACTION = 0.2
_POOL_SEED = 20_250_101

_SET_HEAD = (
    '<?xml version="1.0" ?>\n'
    '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
    "<PubmedArticleSet>\n"
)
_SET_TAIL = "</PubmedArticleSet>\n"

# A trial for any reader: picks one cited NCT id with the day's random generator.
TrialPicker = Callable[[random.Random], str]


@dataclass(frozen=True, slots=True)
class PubmedSummary:
    articles: int
    citing: int
    files: int
    bytes: int


def write_pubmed_days(
    out: Path,
    first_day: date,
    days: int,
    per_day: int,
    seed: int,
    trials: Callable[[int], TrialPicker | None],
    nct_fraction: float = DEFAULT_NCT_FRACTION,
) -> PubmedSummary:
    """``per_day`` articles on each of ``days`` days from ``first_day``, PMIDs from PMID_BASE.

    ``trials(day_index)`` gives the picker of NCT ids articles of that day may cite (or None).
    """
    if days * per_day > MAX_ARTICLES:
        raise ValueError(f"at most {MAX_ARTICLES:,} synthetic articles fit their PMID range")
    totals = PubmedSummary(0, 0, 0, 0)
    for day_index in range(days):
        day = first_day + timedelta(days=day_index)
        rng = random.Random(f"pubmed:{seed}:{day_index}")
        first_pmid = PMID_BASE + day_index * per_day
        written = _write_day(out, day, rng, first_pmid, per_day, trials(day_index), nct_fraction)
        totals = _add(totals, written)
    return totals


def write_synthetic_pubmed_day(
    out: Path,
    day: date,
    count: int,
    seed: int = 0,
    *,
    first_pmid: int = BIG_DAY_FIRST_PMID,
    nct_ids: Sequence[str] = (),
    nct_fraction: float = DEFAULT_NCT_FRACTION,
) -> PubmedSummary:
    """``count`` articles revised on ``day`` in ``out/pubmed/<day>.xml`` (e.g. a day over
    9,999 records); a fraction cites one of ``nct_ids``, when given."""
    if count < 1 or first_pmid < PMID_BASE or first_pmid + count > PMID_LIMIT:
        raise ValueError(f"count must be at least 1 and PMIDs within {PMID_BASE}..{PMID_LIMIT}")
    rng = random.Random(f"pubmed-day:{seed}:{day.isoformat()}")
    ids = tuple(nct_ids)
    picker: TrialPicker | None = (lambda r: _pick(r, ids)) if ids else None
    return _write_day(Path(out), day, rng, first_pmid, count, picker, nct_fraction)


def _write_day(
    out: Path,
    day: date,
    rng: random.Random,
    first_pmid: int,
    count: int,
    trials: TrialPicker | None,
    nct_fraction: float,
) -> PubmedSummary:
    folder = out / "pubmed"
    folder.mkdir(parents=True, exist_ok=True)
    articles = []
    citing = 0
    for pmid in range(first_pmid, first_pmid + count):
        nct_id = trials(rng) if trials is not None and _chance(rng, nct_fraction) else None
        citing += nct_id is not None
        articles.append(synthetic_article(rng, pmid, day, nct_id))
    body = (_SET_HEAD + "\n".join(articles) + "\n" + _SET_TAIL).encode("utf-8")
    (folder / f"{day.isoformat()}.xml").write_bytes(body)
    return PubmedSummary(articles=count, citing=citing, files=1, bytes=len(body))


def _add(left: PubmedSummary, right: PubmedSummary) -> PubmedSummary:
    return PubmedSummary(
        articles=left.articles + right.articles,
        citing=left.citing + right.citing,
        files=left.files + right.files,
        bytes=left.bytes + right.bytes,
    )


def synthetic_article(rng: random.Random, pmid: int, day: date, nct_id: str | None) -> str:
    """One ``<PubmedArticle>`` revised on ``day``; it reports trial ``nct_id`` when given."""
    return _ArticleBuilder(rng, pmid, day, nct_id).build()


# --------------------------------------------------------------------------------------------
# Vocabulary. Weights are rough shares seen in the real articles.
# --------------------------------------------------------------------------------------------

_STATUSES = _Weighted(
    [("MEDLINE", 84), ("PubMed-not-MEDLINE", 4), ("In-Data-Review", 5), ("In-Process", 4),
     ("Publisher", 3)]
)  # fmt: skip
_INDEXED = frozenset({"MEDLINE"})
# Days between the entrez date and the revision, per status.
_ENTREZ_AGES = {
    "MEDLINE": (20, 900),
    "PubMed-not-MEDLINE": (10, 1500),
    "In-Data-Review": (1, 60),
    "In-Process": (1, 45),
    "Publisher": (0, 8),
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SEASONS = ("Winter", "Spring", "Summer", "Fall")

# title | ISO abbreviation (= MedlineTA) | print ISSN | electronic ISSN | NLM id | country | DOI
# prefix | weight
_JOURNAL_TABLE = """
The New England journal of medicine|N Engl J Med|0028-4793|1533-4406|0255562|United States|10.1056|3
The Lancet. Oncology|Lancet Oncol|1470-2045|1474-5488|100957246|England|10.1016|3
Journal of clinical oncology : official journal of the American Society of Clinical Oncology|J Clin Oncol|0732-183X|1527-7755|8309333|United States|10.1200|5
Annals of oncology : official journal of the European Society for Medical Oncology|Ann Oncol|0923-7534|1569-8041|9007735|England|10.1016|3
JAMA oncology|JAMA Oncol|2374-2437|2374-2445|101652861|United States|10.1001|2
Clinical cancer research : an official journal of the American Association for Cancer Research|Clin Cancer Res|1078-0432|1557-3265|9502500|United States|10.1158|4
Cancer|Cancer|0008-543X|1097-0142|0374236|United States|10.1002|4
British journal of cancer|Br J Cancer|0007-0920|1532-1827|0370635|England|10.1038|3
Frontiers in oncology|Front Oncol||2234-943X|101568867|Switzerland|10.3389|8
Cancers|Cancers (Basel)||2072-6694|101526829|Switzerland|10.3390|8
BMC cancer|BMC Cancer||1471-2407|100967800|England|10.1186|6
Oncology letters|Oncol Lett|1792-1074|1792-1082|101531236|Greece|10.3892|4
Lung cancer (Amsterdam, Netherlands)|Lung Cancer|0169-5002|1872-8332|8800805|Ireland|10.1016|3
Breast cancer research and treatment|Breast Cancer Res Treat|0167-6806|1573-7217|8111104|Netherlands|10.1007|3
Blood|Blood|0006-4971|1528-0020|7603509|United States|10.1182|3
"""  # noqa: E501


@dataclass(frozen=True, slots=True)
class _Journal:
    title: str
    abbreviation: str
    print_issn: str
    electronic_issn: str
    nlm_id: str
    country: str
    doi_prefix: str


def _journals() -> _Weighted[_Journal]:
    rows = [
        (_Journal(*row[:7]), float(row[7])) for row in _table(_JOURNAL_TABLE)
    ]  # fmt: skip
    return _Weighted(rows)


_JOURNALS = _journals()
# language | journal title | ISO abbreviation | NLM id | country | share of non-English articles
_FOREIGN_TABLE = """
chi|Zhonghua zhong liu za zhi [Chinese journal of oncology]|Zhonghua Zhong Liu Za Zhi|7910681|China|4
ger|Der Onkologe|Onkologe|9514048|Germany|2
fre|Bulletin du cancer|Bull Cancer|0072416|France|3
jpn|Gan to kagaku ryoho. Cancer & chemotherapy|Gan To Kagaku Ryoho|7810034|Japan|3
spa|Revista clinica espanola|Rev Clin Esp|8608576|Spain|2
"""  # noqa: E501
_FOREIGN = _Weighted([(tuple(row[:5]), float(row[5])) for row in _table(_FOREIGN_TABLE)])
_VERNACULAR_PREFIXES = {
    "chi": "",
    "ger": "Wirksamkeit und Sicherheit von ",
    "fre": "Efficacité et tolérance du ",
    "jpn": "",
    "spa": "Eficacia y seguridad de ",
}

_KINDS = _Weighted(
    [("trial", 33), ("cohort", 25), ("review", 14), ("case", 8), ("meta", 7), ("lab", 13)]
)
_TITLES = {
    "trial": (
        "{Drug} versus {partner} in {condition}: a randomised, open-label, phase {phase} trial.",
        "{Drug} plus {partner} as first-line treatment for {condition}: results of the phase "
        "{phase} {acronym} trial.",
        "Efficacy and safety of {drug} in patients with previously treated {condition}: a "
        "multicentre, single-arm, phase {phase} study.",
        "Overall survival with {drug} in {condition} ({acronym}): final analysis of a "
        "double-blind, placebo-controlled, phase {phase} trial.",
    ),
    "cohort": (
        "Real-world outcomes of {drug} in {condition}: a retrospective multicenter cohort study.",
        "Prognostic value of {keyword} in patients with {condition} treated with {drug}.",
        "Patterns of care and survival in {condition}: a population-based analysis.",
    ),
    "review": (
        "{Drug} in {condition}: current evidence and future directions.",
        "Advances in the treatment of {condition}: a narrative review.",
        "Targeting {keyword} in {condition}: where do we stand?",
    ),
    "case": (
        "Durable response to {drug} in {condition}: a case report and review of the literature.",
        "Severe immune-related toxicity after {drug} in {condition}: a case report.",
    ),
    "meta": (
        "Efficacy and safety of {drug} in {condition}: a systematic review and meta-analysis of "
        "randomized controlled trials.",
        "{keyword} and survival in {condition}: a meta-analysis.",
    ),
    "lab": (
        "{keyword} promotes resistance to {drug} in {condition} cells.",
        "Targeting {keyword} enhances the antitumor activity of {drug} in preclinical models of "
        "{condition}.",
    ),
}
_BACKGROUNDS = (
    "Patients with {condition} have a poor prognosis after progression on standard therapy.",
    "{Drug} has shown promising activity in early-phase studies of {condition}.",
    "The role of {keyword} as a predictive biomarker in {condition} remains unclear.",
    "Treatment options for {condition} are limited and outcomes remain unsatisfactory.",
)
_METHODS = {
    "trial": (
        "In this phase {phase} trial, we randomly assigned {n} patients with {condition} in a 1:1 "
        "ratio to receive {drug} or {partner}. The primary end point was progression-free "
        "survival.",
        "Eligible patients received {drug} every 3 weeks until disease progression or "
        "unacceptable toxicity. The primary end point was the objective response rate.",
    ),
    "cohort": (
        "We retrospectively reviewed {n} consecutive patients with {condition} treated with "
        "{drug} at {sites} institutions between {start_year} and {end_year}.",
        "Data on {n} patients were extracted from a national registry and analysed with Cox "
        "proportional hazards models.",
    ),
    "review": (
        "We searched PubMed and conference proceedings for studies of {drug} in {condition}.",
    ),
    "case": ("We describe a patient with {condition} who received {drug}.",),
    "meta": (
        "PubMed, Embase and the Cochrane Library were searched up to {end_year}; {sites} "
        "randomized trials with {n} patients were included.",
    ),
    "lab": (
        "<i>{keyword}</i> expression was silenced in {condition} cell lines and xenograft models "
        "were treated with {drug}.",
    ),
}
_RESULTS = (
    "Median progression-free survival was {pfs_a} months with {drug} and {pfs_b} months with "
    "{partner} (hazard ratio, {hr}; 95% CI, {hr_low} to {hr_high}; P{p}).",
    "The objective response rate was {orr}% (95% CI, {orr_low} to {orr_high}), and the median "
    "duration of response was {dor} months.",
    "Grade 3 or higher treatment-related adverse events occurred in {ae}% of patients; the most "
    "common were neutropenia, fatigue and diarrhoea.",
    "Median overall survival was {os} months (95% CI, {os_low} to {os_high}).",
    "High <i>{keyword}</i> expression was associated with shorter overall survival (HR {hr}, "
    "P{p}).",
)
_CONCLUSIONS = (
    "{Drug} improved outcomes in patients with {condition} with a manageable safety profile.",
    "These findings support further evaluation of {drug} in {condition}.",
    "{keyword} may help select patients with {condition} who benefit from {drug}.",
)
_STRUCTURES = _Weighted(
    [
        ((("BACKGROUND", "BACKGROUND"), ("METHODS", "METHODS"), ("RESULTS", "RESULTS"),
          ("CONCLUSIONS", "CONCLUSIONS")), 45),
        ((("PURPOSE", "OBJECTIVE"), ("PATIENTS AND METHODS", "METHODS"), ("RESULTS", "RESULTS"),
          ("CONCLUSION", "CONCLUSIONS")), 20),
        ((("OBJECTIVE", "OBJECTIVE"), ("METHODS", "METHODS"), ("RESULTS", "RESULTS"),
          ("CONCLUSIONS", "CONCLUSIONS")), 15),
        ((("INTRODUCTION", "BACKGROUND"), ("MATERIALS AND METHODS", "METHODS"),
          ("RESULTS", "RESULTS"), ("CONCLUSION", "CONCLUSIONS")), 10),
        ((("Background", "BACKGROUND"), ("Methods", "METHODS"), ("Results", "RESULTS"),
          ("Conclusions", "CONCLUSIONS")), 10),
    ]
)  # fmt: skip
_REGISTRATIONS = (
    "(Funded by {sponsor}; {acronym} ClinicalTrials.gov number, {nct}.)",
    "This trial is registered with ClinicalTrials.gov, {nct}.",
    "ClinicalTrials.gov identifier: {nct}.",
)
_SPONSORS = ("Merck Sharp & Dohme", "AstraZeneca", "the National Cancer Institute", "Roche",
             "Bristol Myers Squibb", "BeiGene", "Daiichi Sankyo", "Pfizer")  # fmt: skip
_COPYRIGHTS = (
    "Copyright © {year} Elsevier Ltd. All rights reserved.",
    "© {year}. The Author(s).",
    "© {year} The Authors. Published by Wiley Periodicals LLC.",
    "Copyright © {year} Massachusetts Medical Society.",
)
_COI = (
    "Competing interests: None declared.",
    "The authors declare no conflict of interest.",
    "Declaration of competing interest: the authors report consulting fees from "
    "pharmaceutical companies outside the submitted work.",
)
_DEPARTMENTS = ("Medical Oncology", "Thoracic Oncology", "Hematology", "Radiation Oncology",
                "Pathology", "Biostatistics", "Surgical Oncology",
                "Translational Research")  # fmt: skip
_INSTITUTIONS = ("{city} University Hospital", "{city} Cancer Center", "University of {city}",
                 "{city} Comprehensive Cancer Center", "Institute of Oncology, {city}",
                 "{city} General Hospital")  # fmt: skip
_COLLECTIVES = ("{acronym} Investigators", "{acronym} Study Group",
                "{country} Cooperative Oncology Group", "{acronym} Trial Consortium")  # fmt: skip
_GRANTS = (("P30 CA008748", "CA", "NCI NIH HHS", "United States"),
           ("R01 CA222345", "CA", "NCI NIH HHS", "United States"),
           ("C1234/A5678", "", "Cancer Research UK", "United Kingdom"),
           ("81972000", "", "National Natural Science Foundation of China", "China"))  # fmt: skip

# MeSH: descriptor UI and name, then qualifier UIs and names.
_QUALIFIER_TABLE = """
Q000188|drug therapy
Q000235|genetics
Q000473|pathology
Q000627|therapeutic use
Q000009|adverse effects
Q000401|mortality
Q000378|metabolism
Q000175|diagnosis
Q000601|surgery
Q000037|antagonists & inhibitors
"""
_QUALIFIERS = tuple((ui, name) for ui, name in _table(_QUALIFIER_TABLE))
_CHECK_TAGS = (("D006801", "Humans"), ("D005260", "Female"), ("D008297", "Male"),
               ("D000368", "Aged"), ("D008875", "Middle Aged"), ("D000328", "Adult"),
               ("D000369", "Aged, 80 and over"))  # fmt: skip
_METHOD_HEADINGS = {
    "trial": (("D016896", "Treatment Outcome"), ("D000077982", "Progression-Free Survival"),
              ("D000971", "Antineoplastic Combined Chemotherapy Protocols")),
    "cohort": (("D012189", "Retrospective Studies"), ("D011379", "Prognosis"),
               ("D053208", "Kaplan-Meier Estimate")),
    "review": (("D014408", "Biomarkers, Tumor"), ("D000082082", "Immune Checkpoint Inhibitors")),
    "case": (("D009367", "Neoplasm Staging"),),
    "meta": (("D015996", "Survival Rate"), ("D016896", "Treatment Outcome")),
    "lab": (("D000818", "Animals"), ("D045744", "Cell Line, Tumor"),
            ("D019008", "Drug Resistance, Neoplasm"), ("D049109", "Cell Proliferation")),
}  # fmt: skip
_PUBLICATION_TYPES = {
    "trial": (("D016449", "Randomized Controlled Trial"), ("D017428", "Clinical Trial, Phase III"),
              ("D017427", "Clinical Trial, Phase II"), ("D016448", "Multicenter Study")),
    "cohort": (("D064888", "Observational Study"), ("D016448", "Multicenter Study")),
    "review": (("D016454", "Review"),),
    "case": (("D002363", "Case Reports"), ("D016454", "Review")),
    "meta": (("D017418", "Meta-Analysis"), ("D000078182", "Systematic Review")),
    "lab": (("D013485", "Research Support, Non-U.S. Gov't"),),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Person:
    last: str
    fore: str
    initials: str


def _person(rng: random.Random) -> _Person:
    first = _pick(rng, _FIRST_NAMES)
    middle = _pick(rng, "ABCDEHJKLMRSTW") if _chance(rng, 0.3) else ""
    fore = f"{first} {middle}" if middle else first
    initials = "".join(part[0] for part in first.replace("-", " ").split()) + middle
    return _Person(_pick(rng, _LAST_NAMES), fore, initials)


@functools.cache
def _affiliation_pool() -> tuple[str, ...]:
    rng = random.Random(f"{_POOL_SEED}:affiliations")
    pool = []
    for _ in range(256):
        country = _COUNTRIES.pick(rng)
        city = _pick(rng, _CITIES[country]).name.rstrip(",")
        institution = _pick(rng, _INSTITUTIONS).format(city=city)
        pool.append(f"Department of {_pick(rng, _DEPARTMENTS)}, {institution}, {city}, {country}.")
    return tuple(pool)


@functools.cache
def _reference_pool() -> tuple[str, ...]:
    rng = random.Random(f"{_POOL_SEED}:references")
    pool = []
    for _ in range(1024):
        journal = _JOURNALS.pick(rng)
        year = _between(rng, 1995, 2025)
        citation = (
            f"{journal.abbreviation}. {year} {_pick(rng, _MONTHS)};{_between(rng, 1, 400)}"
            f"({_between(rng, 1, 24)}):{_between(rng, 1, 2000)}-{_between(rng, 2000, 3000)}."
        )
        ids = f'<ArticleId IdType="pubmed">{_between(rng, 8_000_000, 41_000_000)}</ArticleId>'
        if _chance(rng, 0.5):
            ids += f'<ArticleId IdType="doi">{journal.doi_prefix}/ref.{_between(rng, 1, 99_999)}'
            ids += "</ArticleId>"
        pool.append(
            f"<Reference><Citation>{escape(citation)}</Citation>"
            f"<ArticleIdList>{ids}</ArticleIdList></Reference>"
        )
    return tuple(pool)


def _mesh_ui(mesh_id: str) -> str:
    """``D000077594`` stays; older descriptors read ``D002289`` in PubMed."""
    number = int(mesh_id[1:])
    return f"D{number:06d}" if number < 1_000_000 else f"D{number:09d}"


def _chemical_ui(drug: _Drug) -> str:
    if drug.mesh is not None:
        return _mesh_ui(drug.mesh[0])
    return f"C{zlib.crc32(drug.name.encode()) % 1_000_000:06d}"


def _lower_first(text: str) -> str:
    """``Esophageal Cancer`` -> ``esophageal cancer``; ``NSCLC``, ``HER2-positive``, ``B-cell``
    and ``MK-2870`` keep their capitals."""
    return " ".join(
        word if word[1:2] in ("-", "/") or not word[1:].islower() else word.lower()
        for word in text.split(" ")
    )


def _xml_date(tag: str, day: date, attributes: str = "") -> str:
    return (
        f"<{tag}{attributes}><Year>{day.year}</Year><Month>{day.month:02d}</Month>"
        f"<Day>{day.day:02d}</Day></{tag}>"
    )


def _history_date(status: str, day: date, clock: bool) -> str:
    time = "<Hour>6</Hour><Minute>0</Minute>" if clock else ""
    return (
        f'<PubMedPubDate PubStatus="{status}"><Year>{day.year}</Year><Month>{day.month}</Month>'
        f"<Day>{day.day}</Day>{time}</PubMedPubDate>"
    )


# --------------------------------------------------------------------------------------------
# One article
# --------------------------------------------------------------------------------------------


class _ArticleBuilder:
    def __init__(self, rng: random.Random, pmid: int, day: date, nct_id: str | None) -> None:
        self.rng = rng
        self.pmid = pmid
        self.day = day
        self.nct_id = nct_id
        self.status = _STATUSES.pick(rng)
        self.kind = "trial" if nct_id else _KINDS.pick(rng)
        low, high = _ENTREZ_AGES[self.status]
        self.entrez = day - timedelta(days=_between(rng, low, high + 1))
        self.disease: _Disease = _DISEASES.pick(rng)
        self.drug: _Drug = _pick(rng, _DRUGS[:-1])  # not the placebo
        self.partner: _Drug = _pick(rng, _DRUGS[:-1])
        self.journal = _JOURNALS.pick(rng)
        self.foreign = _FOREIGN.pick(rng) if _chance(rng, 0.05) else None
        self.doi = (
            f"{self.journal.doi_prefix}/bl.{pmid % 1_000_000:06d}" if _chance(rng, 0.9) else None
        )
        self.acronym = f"{_pick(rng, 'ACDEIKLMPRST')}{_pick(rng, 'AEIOU')}" + (
            f"{_pick(rng, 'BCDLMNRST')}{_between(rng, 1, 400)}".upper()
        )
        self.words = self._words()

    def _words(self) -> dict[str, str]:
        rng = self.rng
        condition = _lower_first(_pick(rng, self.disease.conditions))
        hr = rng.uniform(0.45, 0.95)
        return {
            "drug": _lower_first(self.drug.name),
            "Drug": self.drug.name,
            "partner": _lower_first(self.partner.name),
            "condition": condition,
            "keyword": _pick(rng, self.disease.keywords),
            "acronym": self.acronym,
            "phase": _pick(rng, ("1", "2", "3", "3", "1b/2")),
            "n": str(_between(rng, 24, 900)),
            "sites": str(_between(rng, 3, 60)),
            "start_year": str(self.entrez.year - _between(rng, 4, 10)),
            "end_year": str(self.entrez.year - 1),
            "pfs_a": f"{rng.uniform(5, 14):.1f}",
            "pfs_b": f"{rng.uniform(2, 7):.1f}",
            "hr": f"{hr:.2f}",
            "hr_low": f"{hr - 0.15:.2f}",
            "hr_high": f"{hr + 0.12:.2f}",
            "p": _pick(rng, ("<0.001", "=0.002", "=0.01", "=0.03", "<0.0001")),
            "orr": str(_between(rng, 12, 75)),
            "orr_low": str(_between(rng, 5, 12)),
            "orr_high": str(_between(rng, 75, 90)),
            "dor": f"{rng.uniform(4, 20):.1f}",
            "ae": str(_between(rng, 8, 60)),
            "os": f"{rng.uniform(9, 40):.1f}",
            "os_low": f"{rng.uniform(6, 9):.1f}",
            "os_high": f"{rng.uniform(40, 50):.1f}",
            "sponsor": _pick(rng, _SPONSORS),
            "nct": self.nct_id or "",
        }

    def _fill(self, template: str) -> str:
        """A template with escaped values; templates may carry inline markup (``<i>``)."""
        return template.format_map({key: escape(value) for key, value in self.words.items()})

    def build(self) -> str:
        return f"<PubmedArticle>{self._medline_citation()}{self._pubmed_data()}</PubmedArticle>"

    # MedlineCitation ------------------------------------------------------------------------

    def _medline_citation(self) -> str:
        rng = self.rng
        indexed = self.status in _INDEXED
        method = ' IndexingMethod="Automated"' if indexed and _chance(rng, 0.3) else ""
        parts = [
            f'<MedlineCitation Status="{self.status}" Owner="NLM"{method}>',
            f'<PMID Version="1">{self.pmid}</PMID>',
        ]
        if indexed:
            parts.append(_xml_date("DateCompleted", self._completed()))
        parts.append(_xml_date("DateRevised", self.day))
        parts.append(self._article())
        parts.append(self._journal_info())
        if indexed:
            parts.append(self._chemicals())
            parts.append("<CitationSubset>IM</CitationSubset>")
            parts.append(self._mesh_headings())
        if _chance(rng, 0.45):
            parts.append(self._keywords())
        if _chance(rng, 0.2):
            parts.append(f"<CoiStatement>{escape(_pick(rng, _COI))}</CoiStatement>")
        parts.append("</MedlineCitation>")
        return "".join(parts)

    def _completed(self) -> date:
        age = (self.day - self.entrez).days
        return self.entrez + timedelta(days=_between(self.rng, min(14, age), age + 1))

    def _article(self) -> str:
        rng = self.rng
        electronic = self.journal.print_issn == "" or _chance(rng, 0.6)
        model = "Electronic" if self.journal.print_issn == "" else (
            "Print-Electronic" if electronic else "Print")  # fmt: skip
        parts = [f'<Article PubModel="{model}">', self._journal(), self._title()]
        first_page = _between(rng, 1, 3000)
        parts.append(
            f"<Pagination><MedlinePgn>{first_page}-{first_page + _between(rng, 3, 14)}"
            "</MedlinePgn></Pagination>"
        )
        if self.doi:
            parts.append(f'<ELocationID EIdType="doi" ValidYN="Y">{self.doi}</ELocationID>')
        if self.nct_id or not _chance(rng, 0.08):
            parts.append(self._abstract())
        if not _chance(rng, 0.005):
            parts.append(self._authors())
        parts.append(f"<Language>{self.foreign[0] if self.foreign else 'eng'}</Language>")
        if self.nct_id:
            parts.append(
                '<DataBankList CompleteYN="Y"><DataBank><DataBankName>ClinicalTrials.gov'
                f"</DataBankName><AccessionNumberList><AccessionNumber>{self.nct_id}"
                "</AccessionNumber></AccessionNumberList></DataBank></DataBankList>"
            )
        if _chance(rng, 0.15):
            parts.append(self._grants())
        parts.append(self._publication_types())
        if self.foreign and _chance(rng, 0.6):
            vernacular = _VERNACULAR_PREFIXES[self.foreign[0]] + self.drug.name
            parts.append(f"<VernacularTitle>{escape(vernacular)}.</VernacularTitle>")
        if electronic:
            published = self.entrez - timedelta(days=_between(rng, 0, 4))
            parts.append(_xml_date("ArticleDate", published, ' DateType="Electronic"'))
        parts.append("</Article>")
        return "".join(parts)

    def _journal(self) -> str:
        rng = self.rng
        journal = self.journal
        title, abbreviation = journal.title, journal.abbreviation
        issn = (
            f'<ISSN IssnType="Print">{journal.print_issn}</ISSN>'
            if journal.print_issn and _chance(rng, 0.5)
            else f'<ISSN IssnType="Electronic">{journal.electronic_issn}</ISSN>'
        )
        if self.foreign:
            title, abbreviation = self.foreign[1], self.foreign[2]
            issn = ""
        issue = self.entrez + timedelta(days=_between(rng, 0, 120))
        return (
            f'<Journal>{issn}<JournalIssue CitedMedium="{"Internet" if issn else "Print"}">'
            f"<Volume>{_between(rng, 1, 400)}</Volume><Issue>{_between(rng, 1, 24)}</Issue>"
            f"{self._pub_date(issue)}</JournalIssue><Title>{escape(title)}</Title>"
            f"<ISOAbbreviation>{escape(abbreviation)}</ISOAbbreviation></Journal>"
        )

    def _pub_date(self, issue: date) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.04:
            months = f"{_MONTHS[issue.month - 1]}-{_MONTHS[issue.month % 12]}"
            return f"<PubDate><MedlineDate>{issue.year} {months}</MedlineDate></PubDate>"
        if roll < 0.05:
            season = _SEASONS[(issue.month % 12) // 3]
            return f"<PubDate><Year>{issue.year}</Year><Season>{season}</Season></PubDate>"
        month = _MONTHS[issue.month - 1] if roll < 0.7 else f"{issue.month:02d}"
        day = f"<Day>{issue.day:02d}</Day>" if _chance(rng, 0.4) else ""
        return f"<PubDate><Year>{issue.year}</Year><Month>{month}</Month>{day}</PubDate>"

    def _title(self) -> str:
        title = self._fill(_pick(self.rng, _TITLES[self.kind]))
        title = title[0].upper() + title[1:]
        if self.foreign:
            title = f"[{title.rstrip('.?')}]."
        return f"<ArticleTitle>{title}</ArticleTitle>"

    def _abstract(self) -> str:
        rng = self.rng
        sections = [
            self._fill(_pick(rng, _BACKGROUNDS)),
            self._fill(_pick(rng, _METHODS[self.kind])),
            " ".join(self._fill(s) for s in rng.sample(_RESULTS, _between(rng, 1, 4))),
            self._fill(_pick(rng, _CONCLUSIONS)),
        ]
        if self.nct_id:
            sections[-1] += " " + self._fill(_pick(rng, _REGISTRATIONS))
        if self.kind in ("trial", "cohort", "meta") and _chance(rng, 0.75):
            labels = _STRUCTURES.pick(rng)
            texts = "".join(
                f'<AbstractText Label="{label}" NlmCategory="{category}">{text}</AbstractText>'
                for (label, category), text in zip(labels, sections, strict=True)
            )
        else:
            texts = f"<AbstractText>{' '.join(sections)}</AbstractText>"
        if _chance(rng, 0.4):
            notice = _pick(rng, _COPYRIGHTS).format(year=self.entrez.year)
            texts += f"<CopyrightInformation>{escape(notice)}</CopyrightInformation>"
        return f"<Abstract>{texts}</Abstract>"

    def _authors(self) -> str:
        rng = self.rng
        count = max(1, _skewed(rng, 6, 0.7, 60))
        authors = [self._author() for _ in range(count)]
        if _chance(rng, 0.04):
            template = _pick(rng, _COLLECTIVES)
            name = template.format(acronym=self.acronym, country=_COUNTRIES.pick(rng))
            authors.append(
                f'<Author ValidYN="Y"><CollectiveName>{escape(name)}</CollectiveName></Author>'
            )
        return f'<AuthorList CompleteYN="Y">{"".join(authors)}</AuthorList>'

    def _author(self) -> str:
        rng = self.rng
        person = _person(rng)
        parts = [
            f'<Author ValidYN="Y"><LastName>{escape(person.last)}</LastName>',
            f"<ForeName>{escape(person.fore)}</ForeName><Initials>{person.initials}</Initials>",
        ]
        if _chance(rng, 0.12):
            digits = f"{_between(rng, 0, 10**15):015d}"
            orcid = f"0000-{digits[:4]}-{digits[4:8]}-{digits[8:12]}"
            parts.append(f'<Identifier Source="ORCID">{orcid}</Identifier>')
        for _ in range(_pick(rng, (0, 1, 1, 1, 1, 1, 2))):
            affiliation = _pick(rng, _affiliation_pool())
            if _chance(rng, 0.08):
                address = f"{person.last.lower()}{_between(rng, 1, 99)}@example.org"
                affiliation += f" Electronic address: {address}."
            parts.append(
                f"<AffiliationInfo><Affiliation>{escape(affiliation)}</Affiliation>"
                "</AffiliationInfo>"
            )
        parts.append("</Author>")
        return "".join(parts)

    def _grants(self) -> str:
        grants = []
        for grant_id, acronym, agency, country in self.rng.sample(_GRANTS, 2):
            acronym_xml = f"<Acronym>{acronym}</Acronym>" if acronym else ""
            grants.append(
                f"<Grant><GrantID>{grant_id}</GrantID>{acronym_xml}<Agency>{escape(agency)}"
                f"</Agency><Country>{country}</Country></Grant>"
            )
        return f'<GrantList CompleteYN="Y">{"".join(grants)}</GrantList>'

    def _publication_types(self) -> str:
        rng = self.rng
        types = [("D016428", "Journal Article")]
        extra = _PUBLICATION_TYPES[self.kind]
        types += rng.sample(extra, _between(rng, 1, len(extra) + 1))
        if _chance(rng, 0.25):
            types.append(("D013485", "Research Support, Non-U.S. Gov't"))
        if self.foreign and _chance(rng, 0.5):
            types.append(("D004740", "English Abstract"))
        unique = sorted(dict(types).items(), key=lambda item: item[1])
        return (
            "<PublicationTypeList>"
            + "".join(
                f'<PublicationType UI="{ui}">{escape(name)}</PublicationType>'
                for ui, name in unique
            )
            + "</PublicationTypeList>"
        )

    def _journal_info(self) -> str:
        journal = self.journal
        country, abbreviation, nlm_id = journal.country, journal.abbreviation, journal.nlm_id
        if self.foreign:
            abbreviation, nlm_id, country = self.foreign[2], self.foreign[3], self.foreign[4]
        linking = journal.print_issn or journal.electronic_issn
        return (
            f"<MedlineJournalInfo><Country>{country}</Country><MedlineTA>{escape(abbreviation)}"
            f"</MedlineTA><NlmUniqueID>{nlm_id}</NlmUniqueID><ISSNLinking>{linking}"
            "</ISSNLinking></MedlineJournalInfo>"
        )

    def _chemicals(self) -> str:
        if _chance(self.rng, 0.4):
            return ""
        chemicals = []
        for drug in dict.fromkeys((self.drug, self.partner)):
            registry = f"{zlib.crc32(drug.name.encode('utf-8')) % 10**10:010d}"
            chemicals.append(
                f"<Chemical><RegistryNumber>{registry}</RegistryNumber><NameOfSubstance "
                f'UI="{_chemical_ui(drug)}">{escape(drug.name)}</NameOfSubstance></Chemical>'
            )
        return f"<ChemicalList>{''.join(chemicals)}</ChemicalList>"

    def _mesh_headings(self) -> str:
        rng = self.rng
        headings: dict[str, tuple[str, str, bool, list[tuple[str, str]]]] = {}
        for mesh_id, name in self.disease.meshes[: _between(rng, 1, 3)]:
            qualifiers = rng.sample(_QUALIFIERS, _between(rng, 1, 3))
            headings[name] = (_mesh_ui(mesh_id), name, True, qualifiers)
        if self.drug.mesh is not None:
            qualifiers = [("Q000627", "therapeutic use")] + (
                [("Q000009", "adverse effects")] if _chance(rng, 0.5) else []
            )
            headings[self.drug.mesh[1]] = (_mesh_ui(self.drug.mesh[0]), self.drug.mesh[1], False,
                                           qualifiers)  # fmt: skip
        for ui, name in _METHOD_HEADINGS[self.kind]:
            headings[name] = (ui, name, False, [])
        if self.kind != "lab":
            for ui, name in rng.sample(_CHECK_TAGS, _between(rng, 1, len(_CHECK_TAGS) + 1)):
                headings[name] = (ui, name, False, [])
        body = "".join(
            self._mesh_heading(*headings[name]) for name in sorted(headings, key=str.lower)
        )
        return f"<MeshHeadingList>{body}</MeshHeadingList>"

    def _mesh_heading(
        self, ui: str, name: str, major: bool, qualifiers: list[tuple[str, str]]
    ) -> str:
        qualifier_xml = "".join(
            f'<QualifierName UI="{q_ui}" MajorTopicYN="{"Y" if major else "N"}">'
            f"{escape(q_name)}</QualifierName>"
            for q_ui, q_name in sorted(qualifiers, key=lambda q: q[1])
        )
        topic = "Y" if major and not qualifiers else "N"
        return (
            f'<MeshHeading><DescriptorName UI="{ui}" MajorTopicYN="{topic}">{escape(name)}'
            f"</DescriptorName>{qualifier_xml}</MeshHeading>"
        )

    def _keywords(self) -> str:
        rng = self.rng
        words = {self.drug.name, *rng.sample(self.disease.keywords, 2)}
        words.add(_pick(rng, self.disease.conditions))
        body = "".join(
            f'<Keyword MajorTopicYN="N">{escape(word)}</Keyword>' for word in sorted(words)
        )
        return f'<KeywordList Owner="NOTNLM">{body}</KeywordList>'

    # PubmedData -----------------------------------------------------------------------------

    def _pubmed_data(self) -> str:
        rng = self.rng
        history = []
        if _chance(rng, 0.55):
            received = self.entrez - timedelta(days=_between(rng, 60, 240))
            history.append(_history_date("received", received, clock=False))
            if _chance(rng, 0.6):
                revised = received + timedelta(days=_between(rng, 20, 50))
                history.append(_history_date("revised", revised, clock=False))
            accepted = self.entrez - timedelta(days=_between(rng, 5, 40))
            history.append(_history_date("accepted", accepted, clock=False))
        medline = self._completed() + timedelta(days=1) if self.status in _INDEXED else None
        history.append(_history_date("pubmed", self.entrez, clock=True))
        history.append(_history_date("medline", medline or self.entrez, clock=True))
        history.append(_history_date("entrez", self.entrez, clock=True))
        status = (
            "aheadofprint"
            if self.status == "Publisher"
            else ("epublish" if self.journal.print_issn == "" else "ppublish")
        )
        return (
            f"<PubmedData><History>{''.join(history)}</History>"
            f"<PublicationStatus>{status}</PublicationStatus>{self._article_ids()}"
            f"{self._references()}</PubmedData>"
        )

    def _article_ids(self) -> str:
        rng = self.rng
        ids = [f'<ArticleId IdType="pubmed">{self.pmid}</ArticleId>']
        if self.doi:
            ids.append(f'<ArticleId IdType="doi">{self.doi}</ArticleId>')
        if _chance(rng, 0.35):
            ids.append(f'<ArticleId IdType="pii">S{_between(rng, 10**9, 10**10)}</ArticleId>')
        if _chance(rng, 0.3):
            pmc = f"PMC{_between(rng, 9_000_000, 12_000_000)}"
            ids.append(f'<ArticleId IdType="pmc">{pmc}</ArticleId>')
        return f"<ArticleIdList>{''.join(ids)}</ArticleIdList>"

    def _references(self) -> str:
        rng = self.rng
        if not _chance(rng, 0.32):
            return ""
        pool = _reference_pool()
        start = _between(rng, 0, len(pool))
        count = _skewed(rng, 40, 0.7, 250) + 1
        references = (pool[(start + n * 7) % len(pool)] for n in range(count))
        return f"<ReferenceList>{''.join(references)}</ReferenceList>"
