"""Realistic synthetic ClinicalTrials.gov v2 oncology studies, for demos and benchmarks.

``write_synthetic`` writes ``out/ctgov/<YYYY-MM-DD>.json``, one API page object
``{"studies": [...]}`` per day, which the replay server serves like real data, and, when asked
(``pubmed_per_day``), PubMed articles citing some of these studies in
``out/pubmed/<YYYY-MM-DD>.xml`` (see ``synth_pubmed``).

- Deterministic: the same arguments give byte-identical files. Each day has its own
  ``random.Random`` seeded from (seed, day index), and the shared pools below come from a
  fixed seed, so nothing depends on the process (hash seed, previous calls).
- NCT ids are ``NCT9`` + 7 digits, a bijection of (day index, position): unique within one
  output and never equal to a real id (real ids start with ``NCT0``).
- Structure and variety follow the 544 real records in ``shared/realdata/ctgov``: optional
  modules and fields are absent at about the real rates; dates mix day and month precision and
  sometimes lack ``type``; locations lack status, state, zip, facility or geoPoint at about the
  real rates; country names include both spellings seen across snapshots; city names include
  non-ASCII and variant spellings; eligibility texts carry the API's markdown escapes
  (``\\<``, ``\\>``, ``\\*``, ``\\[``); some completed studies have a ``resultsSection``.

Size of one study as served (compact JSON, ``orjson.dumps``), in bytes, measured with
the sample of ``tests/test_synth.py`` (10 days x 500 studies, seed 1, ending 2025-03-31):

==========  =====  =====  ======  ======  ======  ======  ======  =======
percentile     p5    p10     p25     p50     p75     p90     p99      max
==========  =====  =====  ======  ======  ======  ======  ======  =======
real (544)  5,550  6,591   8,298  11,010  15,130  23,282  92,335  223,540
synthetic   6,666  7,301   8,556  10,259  13,417  21,611  72,259  189,129
==========  =====  =====  ======  ======  ======  ======  ======  =======

The "about 14 KB" median often quoted is the size of the real files on disk, which are indented
(``indent=2``); as served the real median is about 11 KB. The long tail comes from the number of
locations (up to 250), outcomes, text lengths and, above p95, results sections.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import gc
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson

if TYPE_CHECKING:
    from bioloupe_data.replay.synth_pubmed import PubmedSummary

ID_SPACE = 10_000_000
# Odd and not a multiple of 5, hence invertible modulo 10**7: ids stay unique but look scattered.
_ID_MULTIPLIER = 3_932_153
_ID_OFFSET = 1_234_567
_POOL_SEED = 20_240_611

Study = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SynthSummary:
    """``files`` and ``bytes`` count the study files; ``pubmed_*`` the article files.

    Summaries compare by their study part only, as they did before articles were written, so
    comparisons made by existing callers keep their meaning.
    """

    studies: int
    files: int
    bytes: int
    first_day: date
    last_day: date
    articles: int = field(default=0, compare=False)
    citing_articles: int = field(default=0, compare=False)
    pubmed_files: int = field(default=0, compare=False)
    pubmed_bytes: int = field(default=0, compare=False)


def write_synthetic(
    out: Path,
    days: int,
    per_day: int,
    seed: int = 0,
    end: date | None = None,
    *,
    pubmed_per_day: int | None = None,
    nct_fraction: float = 0.2,
    on_day: Callable[[date, int], None] | None = None,
) -> SynthSummary:
    """Write ``per_day`` studies for each of the ``days`` days ending at ``end`` (inclusive).
    ``on_day(day, bytes)`` is called as each day's studies are written.

    ``end`` defaults to yesterday (UTC). Every study's ``lastUpdatePostDate`` is its day and its
    ``versionHolder`` is the day after ``end``, as in a snapshot taken the next morning.
    ``pubmed_per_day`` PubMed articles (default: ``per_day``; 0 for none) are revised on each
    day too; about ``nct_fraction`` of them report a study updated on or before their day.
    """
    if pubmed_per_day is None:
        pubmed_per_day = per_day
    if days < 1 or per_day < 1 or pubmed_per_day < 0:
        raise ValueError("days and per_day must be at least 1, pubmed_per_day at least 0")
    if days * per_day > ID_SPACE:
        raise ValueError(f"at most {ID_SPACE:,} synthetic studies fit the NCT9xxxxxxx id space")
    if pubmed_per_day:
        _check_pubmed(days, pubmed_per_day, nct_fraction)
    # The studies are acyclic, so the cyclic garbage collector only costs time here (about a
    # third of the generation time when it keeps rescanning the growing day's list).
    with _gc_paused():
        summary = _write_days(Path(out), days, per_day, seed, end, on_day)
        if not pubmed_per_day:
            return summary
        return _with_pubmed(summary, Path(out), per_day, pubmed_per_day, seed, nct_fraction)


def write_synthetic_pubmed_day(
    out: Path,
    day: date,
    count: int,
    seed: int = 0,
    *,
    first_pmid: int | None = None,
    nct_ids: Sequence[str] = (),
    nct_fraction: float = 0.2,
) -> PubmedSummary:
    """``count`` synthetic PubMed articles revised on ``day`` (e.g. more than esearch lists);
    see ``synth_pubmed.write_synthetic_pubmed_day``."""
    from bioloupe_data.replay import synth_pubmed

    return synth_pubmed.write_synthetic_pubmed_day(
        Path(out),
        day,
        count,
        seed,
        first_pmid=synth_pubmed.BIG_DAY_FIRST_PMID if first_pmid is None else first_pmid,
        nct_ids=nct_ids,
        nct_fraction=nct_fraction,
    )


def _check_pubmed(days: int, pubmed_per_day: int, nct_fraction: float) -> None:
    from bioloupe_data.replay.synth_pubmed import MAX_ARTICLES

    if days * pubmed_per_day > MAX_ARTICLES:
        raise ValueError(f"at most {MAX_ARTICLES:,} synthetic articles fit their PMID range")
    if not 0 <= nct_fraction <= 1:
        raise ValueError("nct_fraction must be between 0 and 1")


def _with_pubmed(
    summary: SynthSummary,
    out: Path,
    per_day: int,
    pubmed_per_day: int,
    seed: int,
    nct_fraction: float,
) -> SynthSummary:
    from bioloupe_data.replay.synth_pubmed import write_pubmed_days

    def trials(day_index: int) -> Callable[[random.Random], str]:
        # Studies of days 0..day_index: serials below (day_index + 1) * per_day.
        known = (day_index + 1) * per_day
        return lambda rng: synthetic_nct_id(_between(rng, 0, known))

    days = (summary.last_day - summary.first_day).days + 1
    pubmed = write_pubmed_days(
        out, summary.first_day, days, pubmed_per_day, seed, trials, nct_fraction
    )
    return dataclasses.replace(
        summary,
        articles=pubmed.articles,
        citing_articles=pubmed.citing,
        pubmed_files=pubmed.files,
        pubmed_bytes=pubmed.bytes,
    )


def _write_days(
    out: Path,
    days: int,
    per_day: int,
    seed: int,
    end: date | None,
    on_day: Callable[[date, int], None] | None = None,
) -> SynthSummary:
    last_day = end or (datetime.now(UTC).date() - timedelta(days=1))
    first_day = last_day - timedelta(days=days - 1)
    version_holder = (last_day + timedelta(days=1)).isoformat()
    folder = out / "ctgov"
    folder.mkdir(parents=True, exist_ok=True)
    total_bytes = 0
    for day_index in range(days):
        day = first_day + timedelta(days=day_index)
        rng = random.Random(seed * 1_000_003 + day_index)
        studies = [
            synthetic_study(rng, synthetic_nct_id(day_index * per_day + n), day, version_holder)
            for n in range(per_day)
        ]
        body = orjson.dumps({"studies": studies})
        (folder / f"{day.isoformat()}.json").write_bytes(body)
        total_bytes += len(body)
        if on_day is not None:
            on_day(day, len(body))
    return SynthSummary(
        studies=days * per_day,
        files=days,
        bytes=total_bytes,
        first_day=first_day,
        last_day=last_day,
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def synthetic_nct_id(serial: int) -> str:
    if not 0 <= serial < ID_SPACE:
        raise ValueError(f"serial {serial} outside 0..{ID_SPACE - 1}")
    return f"NCT9{(serial * _ID_MULTIPLIER + _ID_OFFSET) % ID_SPACE:07d}"


def synthetic_study(rng: random.Random, nct_id: str, day: date, version_holder: str) -> Study:
    """One complete study whose ``lastUpdatePostDate`` is ``day``.

    Locations, contacts and references come from shared pools, so studies may share nested
    objects: serialize them, do not mutate them.
    """
    return _StudyBuilder(rng, nct_id, day, version_holder).build()


# --------------------------------------------------------------------------------------------
# Random helpers: random.choice/choices are the bulk of the cost, so these stay minimal.
# --------------------------------------------------------------------------------------------


def _pick(rng: random.Random, items: Sequence[T]) -> T:
    return items[int(rng.random() * len(items))]


class _Weighted(Generic[T]):
    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.items = [item for item, _ in pairs]
        self.cumulative = list(itertools.accumulate(weight for _, weight in pairs))

    def pick(self, rng: random.Random) -> T:
        point = rng.random() * self.cumulative[-1]
        return self.items[bisect.bisect_right(self.cumulative, point)]


def _between(rng: random.Random, low: int, high: int) -> int:
    """Like ``rng.randrange(low, high)``, several times faster."""
    return low + int(rng.random() * (high - low))


def _chance(rng: random.Random, probability: float) -> bool:
    return rng.random() < probability


def _skewed(rng: random.Random, median: float, sigma: float, cap: int) -> int:
    """Log-normal count: most values near ``median``, a long tail up to ``cap``."""
    return max(0, min(cap, round(rng.lognormvariate(0, sigma) * median)))


def _table(text: str) -> list[list[str]]:
    return [line.split("|") for line in text.strip().splitlines()]


def _month(day: date) -> str:
    return day.isoformat()[:7]


# --------------------------------------------------------------------------------------------
# Vocabulary. Weights are rough shares seen in the real records.
# --------------------------------------------------------------------------------------------

MeshTerm = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Disease:
    conditions: tuple[str, ...]
    keywords: tuple[str, ...]
    meshes: tuple[MeshTerm, ...]
    ancestors: tuple[MeshTerm, ...]
    branch: tuple[str, str]


def _mesh_terms(text: str) -> tuple[MeshTerm, ...]:
    """``"D002289 Carcinoma, Non-Small-Cell Lung; D008175 Lung Neoplasms"`` -> pairs."""
    pairs = (item.strip().split(" ", 1) for item in text.split(";"))
    return tuple((f"D{int(mesh_id[1:]):09d}", term) for mesh_id, term in pairs)


# One disease family per line (long lines read better here than wrapped fragments):
# conditions | keywords | meshes | ancestors | branch abbrev | branch name | weight
_DISEASE_TABLE = """
Non-small Cell Lung Cancer;NSCLC;Carcinoma, Non-Small-Cell Lung;Lung Cancer|EGFR mutation;ALK rearrangement;KRAS G12C;PD-L1;immunotherapy|D002289 Carcinoma, Non-Small-Cell Lung;D008175 Lung Neoplasms|D002283 Carcinoma, Bronchogenic;D001984 Bronchial Neoplasms;D012142 Respiratory Tract Neoplasms;D013899 Thoracic Neoplasms;D009371 Neoplasms by Site;D009369 Neoplasms;D008171 Lung Diseases;D012140 Respiratory Tract Diseases|BC08|Respiratory Tract (Lung and Bronchial) Diseases|16
Small Cell Lung Cancer;Extensive-stage Small Cell Lung Cancer|SCLC;DLL3;chemo-immunotherapy;extensive stage|D055752 Small Cell Lung Carcinoma;D008175 Lung Neoplasms|D002283 Carcinoma, Bronchogenic;D012142 Respiratory Tract Neoplasms;D009371 Neoplasms by Site;D009369 Neoplasms;D008171 Lung Diseases|BC08|Respiratory Tract (Lung and Bronchial) Diseases|4
Breast Cancer;HER2-positive Breast Cancer;Triple Negative Breast Cancer;Hormone Receptor Positive Breast Carcinoma;Metastatic Breast Cancer|HER2;HR-positive;CDK4/6 inhibitor;TNBC;BRCA;neoadjuvant;ESR1|D001943 Breast Neoplasms;D064726 Triple Negative Breast Neoplasms|D009371 Neoplasms by Site;D009369 Neoplasms;D001941 Breast Diseases;D012871 Skin Diseases|BC17|Skin and Connective Tissue Diseases|14
Colorectal Cancer;Metastatic Colorectal Cancer;Rectal Cancer;Colon Cancer|MSI-H;dMMR;KRAS;BRAF V600E;liver metastases;ctDNA|D015179 Colorectal Neoplasms;D012004 Rectal Neoplasms|D007414 Intestinal Neoplasms;D005770 Gastrointestinal Neoplasms;D004067 Digestive System Neoplasms;D009371 Neoplasms by Site;D009369 Neoplasms;D004066 Digestive System Diseases;D005767 Gastrointestinal Diseases|BC06|Digestive System Diseases|8
Prostate Cancer;Metastatic Castration-resistant Prostate Cancer;mCRPC|androgen receptor;PSMA;PARP inhibitor;castration resistant;ADT|D011471 Prostatic Neoplasms|D005834 Genital Neoplasms, Male;D014565 Urogenital Neoplasms;D009371 Neoplasms by Site;D009369 Neoplasms;D011469 Prostatic Diseases|BC13|Urinary Tract, Sexual Organs, and Pregnancy Conditions|6
Melanoma;Metastatic Melanoma;Uveal Melanoma;Cutaneous Melanoma|BRAF;anti-PD-1;adjuvant;tumor-infiltrating lymphocytes|D008545 Melanoma|D018358 Neuroendocrine Tumors;D009380 Neoplasms, Nerve Tissue;D009370 Neoplasms by Histologic Type;D009369 Neoplasms;D018326 Nevi and Melanomas|BC17|Skin and Connective Tissue Diseases|4
Acute Myeloid Leukemia;AML;Relapsed/Refractory AML;Myelodysplastic Syndromes|FLT3;IDH1;venetoclax;azacitidine;stem cell transplantation|D015470 Leukemia, Myeloid, Acute;D007951 Leukemia, Myeloid|D007938 Leukemia;D009370 Neoplasms by Histologic Type;D009369 Neoplasms;D001855 Bone Marrow Diseases;D006402 Hematologic Diseases|BC15|Blood and Lymph Conditions|6
Multiple Myeloma;Relapsed Refractory Multiple Myeloma;Plasma Cell Neoplasm|BCMA;CAR-T;bispecific antibody;daratumumab;lenalidomide|D009101 Multiple Myeloma;D054219 Neoplasms, Plasma Cell|D010265 Paraproteinemias;D001796 Blood Protein Disorders;D006402 Hematologic Diseases;D007160 Immunoproliferative Disorders;D009370 Neoplasms by Histologic Type;D009369 Neoplasms|BC15|Blood and Lymph Conditions|5
Diffuse Large B-cell Lymphoma;Follicular Lymphoma;Chronic Lymphocytic Leukemia;Mantle Cell Lymphoma;Hodgkin Lymphoma|CD19;CD20;BTK inhibitor;CAR T-cell therapy;R-CHOP|D016403 Lymphoma, Large B-Cell, Diffuse;D008223 Lymphoma;D015451 Leukemia, Lymphocytic, Chronic, B-Cell|D016393 Lymphoma, B-Cell;D008206 Lymphatic Diseases;D008232 Lymphoproliferative Disorders;D007160 Immunoproliferative Disorders;D007154 Immune System Diseases;D009370 Neoplasms by Histologic Type;D009369 Neoplasms|BC15|Blood and Lymph Conditions|7
Ovarian Cancer;Endometrial Cancer;Cervical Cancer;Fallopian Tube Cancer;Primary Peritoneal Carcinoma|platinum-resistant;HRD;BRCA1;BRCA2;maintenance therapy;FRα|D010051 Ovarian Neoplasms;D016889 Endometrial Neoplasms;D002583 Uterine Cervical Neoplasms|D005833 Genital Neoplasms, Female;D014565 Urogenital Neoplasms;D004701 Endocrine Gland Neoplasms;D009371 Neoplasms by Site;D009369 Neoplasms;D010049 Ovarian Diseases|BC13|Urinary Tract, Sexual Organs, and Pregnancy Conditions|7
Gastric Cancer;Gastroesophageal Junction Adenocarcinoma;Esophageal Squamous Cell Carcinoma;Esophageal Cancer|Claudin 18.2;HER2;PD-L1 CPS;perioperative chemotherapy;FLOT|D013274 Stomach Neoplasms;D004938 Esophageal Neoplasms|D005770 Gastrointestinal Neoplasms;D004067 Digestive System Neoplasms;D009371 Neoplasms by Site;D009369 Neoplasms;D013272 Stomach Diseases;D004066 Digestive System Diseases|BC06|Digestive System Diseases|5
Hepatocellular Carcinoma;Pancreatic Ductal Adenocarcinoma;Biliary Tract Cancer;Cholangiocarcinoma;Pancreatic Cancer|HCC;TACE;FGFR2 fusion;IDH1;unresectable;Child-Pugh A|D006528 Carcinoma, Hepatocellular;D010190 Pancreatic Neoplasms;D018281 Cholangiocarcinoma|D000230 Adenocarcinoma;D002277 Carcinoma;D009375 Neoplasms, Glandular and Epithelial;D009370 Neoplasms by Histologic Type;D009369 Neoplasms;D008113 Liver Neoplasms;D004067 Digestive System Neoplasms;D008107 Liver Diseases|BC06|Digestive System Diseases|5
Head and Neck Squamous Cell Carcinoma;Nasopharyngeal Carcinoma;Oral Cancer;Thyroid Cancer|HPV;EBV DNA;cetuximab;chemoradiotherapy;recurrent/metastatic|D077195 Squamous Cell Carcinoma of Head and Neck;D077274 Nasopharyngeal Carcinoma|D002294 Carcinoma, Squamous Cell;D002277 Carcinoma;D009375 Neoplasms, Glandular and Epithelial;D009370 Neoplasms by Histologic Type;D009369 Neoplasms;D006258 Head and Neck Neoplasms;D009371 Neoplasms by Site|BC09|Ear, Nose, and Throat Diseases|3
Glioblastoma;Glioma;Brain Metastases;IDH-mutant Astrocytoma|temozolomide;MGMT;tumor treating fields;radiotherapy|D005909 Glioblastoma;D005910 Glioma|D001932 Brain Neoplasms;D002551 Central Nervous System Neoplasms;D009423 Nervous System Neoplasms;D009371 Neoplasms by Site;D009369 Neoplasms;D001927 Brain Diseases;D002493 Central Nervous System Diseases|BC10|Nervous System Diseases|3
Renal Cell Carcinoma;Urothelial Carcinoma;Bladder Cancer;Muscle-invasive Bladder Cancer|clear cell;FGFR3;Nectin-4;BCG-unresponsive;cystectomy|D002292 Carcinoma, Renal Cell;D001749 Urinary Bladder Neoplasms|D000230 Adenocarcinoma;D002277 Carcinoma;D007680 Kidney Neoplasms;D014571 Urologic Neoplasms;D014565 Urogenital Neoplasms;D009371 Neoplasms by Site;D009369 Neoplasms|BC13|Urinary Tract, Sexual Organs, and Pregnancy Conditions|4
Soft Tissue Sarcoma;Osteosarcoma;Ewing Sarcoma;Gastrointestinal Stromal Tumor|GIST;KIT;doxorubicin;pediatric;leiomyosarcoma|D012509 Sarcoma;D012516 Osteosarcoma|D018204 Neoplasms, Connective and Soft Tissue;D009370 Neoplasms by Histologic Type;D009369 Neoplasms|BC04|Neoplasms|2
Solid Tumor;Advanced Solid Tumors;Neuroendocrine Tumors;Mesothelioma|first-in-human;dose escalation;NTRK fusion;tumor agnostic;antibody-drug conjugate|D009369 Neoplasms;D018358 Neuroendocrine Tumors|D009370 Neoplasms by Histologic Type;D018326 Nevi and Melanomas|BC04|Neoplasms|6
"""  # noqa: E501


def _diseases() -> _Weighted[_Disease]:
    rows = []
    for conditions, keywords, meshes, ancestors, abbrev, branch, weight in _table(_DISEASE_TABLE):
        disease = _Disease(
            conditions=tuple(conditions.split(";")),
            keywords=tuple(keywords.split(";")),
            meshes=_mesh_terms(meshes),
            ancestors=_mesh_terms(ancestors),
            branch=(abbrev, branch),
        )
        rows.append((disease, float(weight)))
    return _Weighted(rows)


_DISEASES = _diseases()


@dataclass(frozen=True, slots=True)
class _Drug:
    name: str
    kind: str
    other_names: tuple[str, ...]
    mesh: MeshTerm | None


# name | intervention type | other names (code names, brands) | MeSH id and term, if any
_DRUG_TABLE = """
Pembrolizumab|BIOLOGICAL|MK-3475;Keytruda|D582435 pembrolizumab
Nivolumab|BIOLOGICAL|BMS-936558;ONO-4538;Opdivo|D077594 Nivolumab
Atezolizumab|DRUG|MPDL3280A;RO5541267;Tecentriq|
Durvalumab|BIOLOGICAL|MEDI4736;Imfinzi|
Ipilimumab|BIOLOGICAL|MDX-010;Yervoy|D074324 Ipilimumab
Osimertinib|DRUG|AZD9291;Tagrisso|
Gefitinib|DRUG|ZD1839;Iressa|D077156 Gefitinib
Alectinib|DRUG|CH5424802;RO5424802;Alecensa|
Lorlatinib|DRUG|PF-06463922;Lorbrena|
Sotorasib|DRUG|AMG 510;Lumakras|
Adagrasib|DRUG|MRTX849;Krazati|
Olaparib|DRUG|AZD2281;KU-0059436;Lynparza|
Niraparib|DRUG|MK-4827;Zejula|
Palbociclib|DRUG|PD-0332991;Ibrance|
Ribociclib|DRUG|LEE011;Kisqali|
Abemaciclib|DRUG|LY2835219;Verzenio|
Trastuzumab|BIOLOGICAL|Herceptin|D068878 Trastuzumab
Trastuzumab deruxtecan|DRUG|DS-8201a;T-DXd;Enhertu|
Sacituzumab govitecan|DRUG|IMMU-132;Trodelvy|
Datopotamab deruxtecan|DRUG|DS-1062a;Dato-DXd|
Enfortumab vedotin|DRUG|ASG-22ME;Padcev|
Bevacizumab|BIOLOGICAL|Avastin|D068258 Bevacizumab
Cetuximab|BIOLOGICAL|Erbitux;IMC-C225|D068818 Cetuximab
Lenvatinib|DRUG|E7080;Lenvima|
Cabozantinib|DRUG|XL184;Cabometyx|
Enzalutamide|DRUG|MDV3100;Xtandi|
Abiraterone acetate|DRUG|Zytiga|D068677 Abiraterone Acetate
Venetoclax|DRUG|ABT-199;GDC-0199;Venclexta|
Ibrutinib|DRUG|PCI-32765;Imbruvica|
Zanubrutinib|DRUG|BGB-3111;Brukinsa|
Daratumumab|BIOLOGICAL|JNJ-54767414;Darzalex|
Lenalidomide|DRUG|CC-5013;Revlimid|D077269 Lenalidomide
Bortezomib|DRUG|PS-341;Velcade|D069286 Bortezomib
Teclistamab|BIOLOGICAL|JNJ-64007957;Tecvayli|
Blinatumomab|BIOLOGICAL|MT103;Blincyto|
Axicabtagene ciloleucel|BIOLOGICAL|KTE-C19;Yescarta|
Tislelizumab|BIOLOGICAL|BGB-A317|
Camrelizumab|BIOLOGICAL|SHR-1210|
Sintilimab|BIOLOGICAL|IBI308|
Toripalimab|BIOLOGICAL|JS001|
Amivantamab|BIOLOGICAL|JNJ-61186372;Rybrevant|
Dostarlimab|BIOLOGICAL|TSR-042;Jemperli|
Tucatinib|DRUG|ONT-380;Tukysa|
Pertuzumab|BIOLOGICAL|Perjeta;RO4368451|
Capivasertib|DRUG|AZD5363;Truqap|
Selpercatinib|DRUG|LOXO-292;Retevmo|
Dabrafenib|DRUG|GSK2118436;Tafinlar|
Trametinib|DRUG|GSK1120212;Mekinist|
Azacitidine|DRUG|Vidaza|D001374 Azacitidine
Temozolomide|DRUG|Temodar|D077204 Temozolomide
Carboplatin|DRUG|Paraplatin|D016190 Carboplatin
Cisplatin|DRUG||D002945 Cisplatin
Paclitaxel|DRUG|Taxol|D017239 Paclitaxel
Nab-paclitaxel|DRUG|Abraxane;albumin-bound paclitaxel|
Docetaxel|DRUG|Taxotere|D077143 Docetaxel
Pemetrexed|DRUG|LY231514;Alimta|D068437 Pemetrexed
Gemcitabine|DRUG|Gemzar|D003841 Deoxycytidine
Capecitabine|DRUG|Xeloda|D069287 Capecitabine
Oxaliplatin|DRUG|Eloxatin|D077150 Oxaliplatin
Irinotecan|DRUG|CPT-11;Camptosar|D077146 Irinotecan
Fluorouracil|DRUG|5-FU|D005472 Fluorouracil
Cyclophosphamide|DRUG|Cytoxan|D003520 Cyclophosphamide
Doxorubicin|DRUG|Adriamycin|D004317 Doxorubicin
Fulvestrant|DRUG|Faslodex|D077267 Fulvestrant
Letrozole|DRUG|Femara|D077289 Letrozole
MK-2870|DRUG|sacituzumab tirumotecan;sac-TMT|
ABBV-400|DRUG|telisotuzumab adizutecan|
RMC-6236|DRUG|daraxonrasib|
JDQ443|DRUG||
SHR-A1811|DRUG|trastuzumab rezetecan|
BL-B01D1|DRUG||
IBI343|BIOLOGICAL||
AZD0901|DRUG|CMG901|
Placebo|DRUG|Matching placebo|
"""


def _drugs() -> tuple[_Drug, ...]:
    drugs = []
    for name, kind, other_names, mesh in _table(_DRUG_TABLE):
        drugs.append(
            _Drug(
                name=name,
                kind=kind,
                other_names=tuple(filter(None, other_names.split(";"))),
                mesh=_mesh_terms(mesh)[0] if mesh else None,
            )
        )
    return tuple(drugs)


_DRUGS = _drugs()
_NON_DRUG_INTERVENTIONS = tuple(
    (kind, name)
    for kind, name in _table("""
PROCEDURE|Surgical resection
PROCEDURE|Lobectomy
PROCEDURE|Sentinel lymph node biopsy
PROCEDURE|Biospecimen Collection
PROCEDURE|Allogeneic hematopoietic stem cell transplantation
RADIATION|Stereotactic body radiation therapy
RADIATION|Intensity-modulated radiation therapy
RADIATION|Whole-brain radiotherapy
RADIATION|Proton beam therapy
DEVICE|Scalp cooling system
DEVICE|Tumor treating fields (Optune)
DEVICE|Wearable activity tracker
DIAGNOSTIC_TEST|Circulating tumor DNA assay
DIAGNOSTIC_TEST|PSMA PET-CT
BEHAVIORAL|Supervised exercise program
BEHAVIORAL|Smoking cessation counseling
OTHER|Quality-of-Life Assessment
OTHER|Questionnaire Administration
OTHER|Best supportive care
GENETIC|Next-generation sequencing
""")
)

# sponsor class | name
_SPONSOR_TABLE = """
INDUSTRY|Merck Sharp & Dohme LLC
INDUSTRY|AstraZeneca
INDUSTRY|Hoffmann-La Roche
INDUSTRY|Bristol-Myers Squibb
INDUSTRY|Pfizer
INDUSTRY|Novartis Pharmaceuticals
INDUSTRY|Eli Lilly and Company
INDUSTRY|Daiichi Sankyo
INDUSTRY|Amgen
INDUSTRY|Gilead Sciences
INDUSTRY|BeiGene
INDUSTRY|Jiangsu HengRui Medicine Co., Ltd.
INDUSTRY|Genentech, Inc.
INDUSTRY|Janssen Research & Development, LLC
INDUSTRY|Takeda
INDUSTRY|Bayer
INDUSTRY|Seagen Inc.
INDUSTRY|AbbVie
INDUSTRY|Regeneron Pharmaceuticals
INDUSTRY|Innovent Biologics (Suzhou) Co. Ltd.
INDUSTRY|Sichuan Kelun Pharmaceutical Research Institute Co., Ltd.
INDUSTRY|Boehringer Ingelheim
INDUSTRY|Servier
INDUSTRY|Exelixis
INDUSTRY|Revolution Medicines, Inc.
OTHER|M.D. Anderson Cancer Center
OTHER|Memorial Sloan Kettering Cancer Center
OTHER|Dana-Farber Cancer Institute
OTHER|Gustave Roussy, Cancer Campus, Grand Paris
OTHER|Sun Yat-sen University
OTHER|Fudan University
OTHER|Samsung Medical Center
OTHER|Seoul National University Hospital
OTHER|Institut Curie
OTHER|Charité – Universitätsmedizin Berlin
OTHER|Hospices Civils de Lyon
OTHER|Peking Union Medical College Hospital
OTHER|Tata Memorial Hospital
OTHER|Hacettepe University
OTHER|Istanbul University - Cerrahpasa
OTHER|University of Oxford
OTHER|Mayo Clinic
OTHER|Fred Hutchinson Cancer Center
OTHER|Centre Léon Bérard
OTHER|Vall d'Hebron Institute of Oncology
OTHER|Karolinska Institutet
OTHER|Tianjin Medical University Cancer Institute and Hospital
OTHER|Universitätsklinikum Köln
OTHER|Fondazione IRCCS Istituto Nazionale dei Tumori, Milano
NETWORK|Alliance for Clinical Trials in Oncology
NETWORK|ECOG-ACRIN Cancer Research Group
NETWORK|NRG Oncology
NETWORK|SWOG Cancer Research Network
NETWORK|Children's Oncology Group
NETWORK|European Organisation for Research and Treatment of Cancer - EORTC
NETWORK|Canadian Cancer Trials Group
NETWORK|Grupo Español de Investigación en Cáncer de Mama
OTHER_GOV|Assistance Publique - Hôpitaux de Paris
OTHER_GOV|National Health Research Institutes, Taiwan
OTHER_GOV|National Cancer Centre, Singapore
NIH|National Cancer Institute (NCI)
FED|VA Office of Research and Development
INDIV|Hiroshi Tanaka
UNKNOWN|Shanghai Chest Hospital
UNKNOWN|Henan Cancer Hospital
"""


def _sponsors_by_class() -> dict[str, tuple[str, ...]]:
    by_class: dict[str, list[str]] = {}
    for klass, name in _table(_SPONSOR_TABLE):
        by_class.setdefault(klass, []).append(name)
    return {klass: tuple(names) for klass, names in by_class.items()}


_SPONSORS = _sponsors_by_class()
_LEAD_CLASSES = _Weighted(
    [("OTHER", 56), ("INDUSTRY", 37), ("NETWORK", 3), ("OTHER_GOV", 1.5), ("NIH", 1.5),
     ("FED", 0.5), ("INDIV", 0.5)]
)  # fmt: skip
_COLLABORATOR_CLASSES = _Weighted(
    [("OTHER", 42), ("INDUSTRY", 23), ("UNKNOWN", 10), ("NIH", 12), ("OTHER_GOV", 5), ("FED", 3),
     ("NETWORK", 5)]
)  # fmt: skip
_COLLABORATOR_COUNTS = _Weighted([(0, 62), (1, 22), (2, 8), (3, 5), (4, 3)])
_RESPONSIBLE_PARTIES = _Weighted(
    [("SPONSOR", 67), ("PRINCIPAL_INVESTIGATOR", 27), ("SPONSOR_INVESTIGATOR", 6)]
)
_STATUSES = _Weighted(
    [("COMPLETED", 30), ("RECRUITING", 35), ("NOT_YET_RECRUITING", 11), ("UNKNOWN", 6),
     ("ACTIVE_NOT_RECRUITING", 8), ("TERMINATED", 4), ("WITHDRAWN", 2),
     ("ENROLLING_BY_INVITATION", 2), ("SUSPENDED", 1)]
)  # fmt: skip
_FINISHED_STATUSES = frozenset({"COMPLETED", "TERMINATED", "WITHDRAWN", "UNKNOWN"})
_RECRUITING_STATUSES = frozenset({"RECRUITING", "NOT_YET_RECRUITING"})
_WHY_STOPPED = (
    "Business decision, not related to safety.",
    "Low Enrollment",
    "Enrollment too low",
    "Strategic business decision (unrelated to safety)",
    "Sponsor/Investigator Decision",
    "Terminated due to poor accrual",
    "loss of funding",
    "The study drug was not available.",
    "Data Safety Monitoring Board (DSMB) recommendation per Charter stopping rules.",
    "Decided not to proceed with the study at this time.",
)
_PHASES = _Weighted(
    [(("PHASE2",), 26), (("PHASE1", "PHASE2"), 14), (("PHASE1",), 17), (("PHASE3",), 14),
     (("NA",), 20), (("PHASE2", "PHASE3"), 4), (("PHASE4",), 3), (("EARLY_PHASE1",), 2)]
)  # fmt: skip
_ARM_TYPES = (
    "ACTIVE_COMPARATOR",
    "PLACEBO_COMPARATOR",
    "OTHER",
    "NO_INTERVENTION",
    "SHAM_COMPARATOR",
    "EXPERIMENTAL",
)
_ARM_COUNTS = _Weighted([(1, 40), (2, 42), (3, 10), (4, 5), (6, 3)])
_PURPOSES = _Weighted(
    [("TREATMENT", 80), ("SUPPORTIVE_CARE", 5), ("DIAGNOSTIC", 3), ("PREVENTION", 3),
     ("OTHER", 3), ("HEALTH_SERVICES_RESEARCH", 2), ("BASIC_SCIENCE", 2), ("SCREENING", 2)]
)  # fmt: skip
_MASKINGS = _Weighted(
    [("NONE", 70), ("SINGLE", 10), ("DOUBLE", 9), ("TRIPLE", 4), ("QUADRUPLE", 7)]
)
_MASKED_ROLES = {
    "SINGLE": ["OUTCOMES_ASSESSOR"],
    "DOUBLE": ["PARTICIPANT", "INVESTIGATOR"],
    "TRIPLE": ["PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR"],
    "QUADRUPLE": ["PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR", "OUTCOMES_ASSESSOR"],
}
_OBSERVATIONAL_MODELS = ("COHORT", "COHORT", "CASE_ONLY", "CASE_CONTROL", "OTHER")
_TIME_PERSPECTIVES = ("PROSPECTIVE", "PROSPECTIVE", "RETROSPECTIVE", "CROSS_SECTIONAL", "OTHER")
_SECONDARY_ID_TYPES = ("OTHER", "REGISTRY", "EUDRACT_NUMBER", "NIH", "CTIS", "OTHER_GRANT")
_LOCATION_STATUSES = _Weighted(
    [("RECRUITING", 80), ("NOT_YET_RECRUITING", 14), ("ACTIVE_NOT_RECRUITING", 3),
     ("COMPLETED", 2), ("WITHDRAWN", 1)]
)  # fmt: skip
_MINIMUM_AGES = ("18 Years",) * 8 + ("20 Years", "19 Years", "12 Years", "1 Year")
_MAXIMUM_AGES = ("75 Years", "70 Years", "80 Years", "65 Years", "85 Years", "99 Years")

_FIRST_NAMES = (
    "James", "Maria", "Wei", "Yuki", "Ji-Hoon", "Sophie", "Luca", "Ahmet", "Anna", "David",
    "Priya", "Carlos", "Elena", "Hiroshi", "Fatma", "Lars", "Olga", "Michael", "Xin", "Zoë",
    "Sinéad", "Björn", "Chloé", "Mehmet",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Garcia", "Wang", "Tanaka", "Kim", "Dubois", "Rossi", "Yılmaz", "Kowalski",
    "Müller", "Patel", "Fernández", "Ivanova", "Nakamura", "Öztürk", "Andersson", "Chen",
    "Johnson", "Li", "Lefèvre", "Nguyen", "O'Brien", "Schmidt", "Novák",
)  # fmt: skip
_DEGREES = ("MD", "MD, PhD", "PhD", "MD, MSc", "Prof.", "", "")

# country | weight | city | state | zip | lat | lon (empty: absent)
_GEOGRAPHY_TABLE = """
United States|30|Boston|Massachusetts|02215|42.35843|-71.05977
United States|30|New York|New York|10065|40.71427|-74.00597
United States|30|Houston|Texas|77030|29.76328|-95.36327
United States|30|Los Angeles|California|90095|34.05223|-118.24368
United States|30|Chicago|Illinois|60611|41.85003|-87.65005
United States|30|Saint Louis|Missouri|63110|38.62727|-90.19789
United States|30|St Louis|Missouri|63110|38.62727|-90.19789
United States|30|St. Louis|Missouri|63110|38.62727|-90.19789
United States|30|Seattle|Washington|98109|47.60621|-122.33207
United States|30|Rochester|Minnesota|55905|44.02163|-92.4699
United States|30|Nashville|Tennessee|37232|36.16589|-86.78444
United States|30|Philadelphia|Pennsylvania|19104|39.95233|-75.16379
United States|30|Miami|Florida|33136|25.77427|-80.19366
United States|30|Columbus|Ohio|43210|39.96118|-82.99879
United States|30|Aurora|Colorado|80045|39.72943|-104.83192
China|12|Beijing|Beijing Municipality|100021|39.9075|116.39723
China|12|Shanghai|Shanghai Municipality|200032|31.22222|121.45806
China|12|Guangzhou|Guangdong|510060|23.11667|113.25
China|12|Tianjin|Tianjin Municipality|300060|39.14222|117.17667
China|12|Hangzhou|Zhejiang|310022|30.29365|120.16142
China|12|Chengdu|Sichuan|610041|30.66667|104.06667
France|7|Villejuif||94805|48.7939|2.35992
France|7|Lyon||69008|45.74846|4.84671
France|7|Paris||75005|48.85341|2.3488
France|7|Besançon||25030|47.24878|6.01815
France|7|Créteil||94010|48.79266|2.46569
France|7|Nîmes||30029|43.83378|4.35962
Germany|5|Köln||50937|50.93333|6.95
Germany|5|München||81377|48.13743|11.57549
Germany|5|Berlin||10117|52.52437|13.41053
Germany|5|Heidelberg||69120|49.40768|8.69079
Italy|4|Milano|Lombardia|20133|45.46427|9.18951
Italy|4|Roma||00168|41.89193|12.51133
Italy|4|Napoli||80131|40.85216|14.26811
Spain|4|Barcelona||08035|41.38879|2.15899
Spain|4|Madrid||28041|40.4165|-3.70256
Spain|4|A Coruña||15006|43.37135|-8.396
Spain|4|Córdoba||14004|37.89155|-4.77275
Korea, Republic of|3.5|Seoul||03080|37.566|126.9784
Korea, Republic of|3.5|Seongnam-si|Gyeonggi-do|13620|37.43861|127.13778
Korea, Republic of|3.5|Goyang-si|Gyeonggi-do|10408|37.65639|126.835
South Korea|1|Seoul||06351|37.566|126.9784
South Korea|1|Seoul,|||37.566|126.9784
Japan|4|Chuo-ku|Tokyo|104-0045|35.67|139.77
Japan|4|Kashiwa|Chiba|277-8577|35.86224|139.97732
Japan|4|Osaka|||34.69374|135.50218
Turkey (Türkiye)|2|İstanbul||34093|41.01384|28.94966
Turkey (Türkiye)|2|Ankara||06100|39.91987|32.85427
Turkey (Türkiye)|2|İzmir|||38.41273|27.13838
Turkey|0.7|Istanbul|||41.01384|28.94966
United Kingdom|3|London||SW3 6JJ|51.50853|-0.12574
United Kingdom|3|Manchester||M20 4BX|53.48095|-2.23743
United Kingdom|3|Oxford||OX3 7LE|51.75222|-1.25596
Canada|2.5|Toronto|Ontario|M5G 2M9|43.70011|-79.4163
Canada|2.5|Montréal|Quebec|H2X 3E4|45.50884|-73.58781
Australia|2.5|Melbourne|Victoria|3000|-37.814|144.96332
Australia|2.5|Sydney|New South Wales|2050|-33.86785|151.20732
Poland|1.5|Kraków||31-115|50.06143|19.93658
Poland|1.5|Łódź||93-513|51.75|19.46667
Poland|1.5|Gdańsk||80-214|54.35205|18.64637
Brazil|1.5|São Paulo|SP|01246-000|-23.5475|-46.63611
Brazil|1.5|Porto Alegre|RS|90035-903|-30.03306|-51.23
Czechia|1|Brno||656 53|49.19522|16.60796
Czechia|1|Plzeň||304 60|49.74747|13.37759
Colombia|0.7|Bogotá|||4.60971|-74.08175
Colombia|0.7|Medellín|||6.25184|-75.56359
Sweden|0.8|Göteborg||413 45|57.70716|11.96679
Sweden|0.8|Malmö|||55.60587|13.00073
Israel|1|Tel Aviv||6423906|32.08088|34.78057
Taiwan|1|Taipei||100|25.04776|121.53185
Russian Federation|0.8|Moscow||115478|55.75222|37.61556
"""


@dataclass(frozen=True, slots=True)
class _City:
    country: str
    name: str
    state: str
    zip_code: str
    lat: float
    lon: float


def _cities_by_country() -> dict[str, tuple[_City, ...]]:
    cities: dict[str, list[_City]] = {}
    for country, _weight, name, state, zip_code, lat, lon in _table(_GEOGRAPHY_TABLE):
        city = _City(country, name, state, zip_code, float(lat), float(lon))
        cities.setdefault(country, []).append(city)
    return {country: tuple(rows) for country, rows in cities.items()}


_CITIES = _cities_by_country()
_COUNTRIES = _Weighted(
    list({row[0]: (row[0], float(row[1])) for row in _table(_GEOGRAPHY_TABLE)}.values())
)
_FACILITY_PATTERNS = (
    "{city} University Hospital",
    "{city} Cancer Center",
    "Research Site",
    "Local Institution - {n:04d}",
    "Novartis Investigative Site",
    "Hôpital Universitaire de {city}",
    "{city} General Hospital",
    "Site {n}",
    "Regional Oncology Institute of {city}",
    "{city} Comprehensive Cancer Center",
)

_SUMMARY_OPENERS = (
    "The purpose of this study is to evaluate the efficacy and safety of {drug} in participants "
    "with {condition}.",
    "This study will assess whether {drug} in combination with {partner} improves outcomes "
    "compared with {partner} alone in patients with {condition}.",
    "This study will determine the recommended dose of {drug} and describe its safety profile in "
    "adults with {condition}.",
    "Researchers want to learn whether adding {drug} to standard treatment helps people with "
    "{condition} live longer without their cancer getting worse.",
    "This registry collects clinical data from patients with {condition} treated in routine "
    "practice.",
)
_SENTENCES = (
    "Participants will be randomly assigned to one of the treatment arms in a 1:1 ratio.",
    "Treatment will continue until disease progression, unacceptable toxicity, or withdrawal of "
    "consent.",
    "Tumor assessments will be performed every 6 weeks for the first year and every 12 weeks "
    "thereafter.",
    "The primary endpoint is progression-free survival assessed by blinded independent central "
    "review per RECIST 1.1.",
    "Safety will be monitored throughout the study by an independent data monitoring committee.",
    "Blood samples will be collected for pharmacokinetic and exploratory biomarker analyses.",
    "Patients who discontinue treatment will be followed for survival every 12 weeks.",
    "Circulating tumor DNA will be analysed at baseline and at the time of progression.",
    "The dose-escalation part follows a Bayesian optimal interval design.",
    "Health-related quality of life will be assessed with the EORTC QLQ-C30 questionnaire.",
    "Archival or fresh tumor tissue is required for central testing of PD-L1 expression.",
    "Dose modifications are permitted according to the protocol-specified toxicity criteria.",
    "The study consists of a screening period of up to 28 days, a treatment period and a "
    "follow-up period.",
    "Adverse events will be graded according to NCI CTCAE version 5.0.",
    "An interim analysis for futility is planned after 50% of the expected events.",
    "Stratification factors include ECOG performance status, region and prior lines of therapy.",
    "Eligible patients must not have received prior systemic therapy for metastatic disease.",
    "The study drug is administered intravenously on Day 1 of each 21-day cycle.",
    "Oral study treatment is taken once daily, continuously, in 28-day cycles.",
    "Crossover to the experimental arm is allowed after confirmed radiographic progression.",
    "Exploratory objectives include the correlation of tumor mutational burden with response.",
    "Imaging will include contrast-enhanced CT or MRI of the chest, abdomen and pelvis.",
    "Patients with treated, stable brain metastases may be enrolled.",
    "Results will be compared with a matched historical control cohort.",
    "Approximately 40 sites in Europe, Asia and North America will take part.",
    "The sample size provides 90% power to detect a hazard ratio of 0.70 at a two-sided alpha "
    "of 0.05.",
)
_INCLUSION = (
    "Histologically or cytologically confirmed {condition}",
    "Age \\>= 18 years at the time of signing informed consent",
    "Eastern Cooperative Oncology Group (ECOG) performance status of 0 or 1",
    "At least one measurable lesion per RECIST v1.1",
    "Adequate organ function, including absolute neutrophil count \\>= 1.5 × 10^9/L, platelets "
    "\\>= 100 × 10^9/L and hemoglobin \\>= 9 g/dL",
    "Creatinine clearance \\>= 50 mL/min (Cockcroft-Gault)",
    "Total bilirubin \\<= 1.5 × upper limit of normal (ULN)",
    "Life expectancy of at least 12 weeks",
    "Documented disease progression after at least one prior line of systemic therapy",
    "Women of childbearing potential must have a negative pregnancy test within 7 days before "
    "the first dose",
    "Availability of archival tumor tissue \\[formalin-fixed, paraffin-embedded\\]",
    "Willing and able to comply with the protocol, including scheduled visits and tests",
    "Recovered from toxicities of prior therapy to grade \\<= 1 (except alopecia)",
    "Signed informed consent form",
)
_EXCLUSION = (
    "Prior treatment with {drug} or another agent with the same mechanism of action",
    "Active autoimmune disease requiring systemic treatment in the past 2 years",
    "Symptomatic or untreated central nervous system metastases",
    "History of interstitial lung disease or pneumonitis requiring steroids",
    "QTcF \\> 470 ms on screening electrocardiogram",
    "Active hepatitis B, hepatitis C or known HIV infection \\* (patients with controlled HIV "
    "may be eligible)",
    "Major surgery within 4 weeks before randomization",
    "Another malignancy within 3 years, except adequately treated non-melanoma skin cancer",
    "Pregnant or breastfeeding women",
    "Uncontrolled intercurrent illness, including active infection or unstable angina",
    "Left ventricular ejection fraction \\< 50%",
    "Known hypersensitivity to any component of the study treatment",
    "Participation in another interventional study within 28 days",
    "Live vaccine within 30 days before the first dose",
)
# measure | description | time frame
_PRIMARY_MEASURES = _table("""
Progression-free Survival (PFS)|PFS is defined as the time from randomization to the first documented disease progression per RECIST 1.1 or death from any cause, whichever occurs first.|Up to approximately 36 months
Overall Survival (OS)|OS is defined as the time from randomization to death due to any cause.|Up to approximately 60 months
Objective Response Rate (ORR)|ORR is the percentage of participants with a confirmed complete or partial response per RECIST 1.1 as assessed by the investigator.|Up to approximately 24 months
Number of Participants With Dose-limiting Toxicities (DLTs)|DLTs are evaluated during the first cycle according to the protocol-defined criteria.|Cycle 1 (21 days)
Pathological Complete Response (pCR) Rate|pCR is defined as the absence of invasive cancer in the breast and axillary lymph nodes (ypT0/Tis ypN0).|At surgery, approximately 24 weeks
Event-free Survival (EFS)|EFS is the time from randomization to disease progression precluding surgery, recurrence, or death.|Up to 5 years
""")  # noqa: E501
_SECONDARY_MEASURES = _table("""
Duration of Response (DOR)|DOR is the time from first documented response to disease progression or death.|Up to approximately 36 months
Disease Control Rate (DCR)|Percentage of participants with complete response, partial response or stable disease for at least 6 weeks.|Up to approximately 24 months
Number of Participants With Adverse Events (AEs)|An AE is any untoward medical occurrence in a participant administered a study treatment, graded by NCI CTCAE v5.0.|Up to 90 days after the last dose
Maximum Plasma Concentration (Cmax)|Cmax of the study drug determined by non-compartmental analysis.|Cycle 1 Day 1 and Cycle 3 Day 1 (each cycle is 21 days)
Area Under the Concentration-time Curve (AUC)|AUC from time zero to the end of the dosing interval.|Pre-dose and up to 24 hours post-dose on Cycle 1 Day 1
Change From Baseline in EORTC QLQ-C30 Global Health Status|The QLQ-C30 global health status scale ranges from 0 to 100; higher scores indicate better quality of life.|Baseline and every 6 weeks up to 2 years
Time to Deterioration in Pain|Pain is assessed with the Brief Pain Inventory-Short Form; deterioration is an increase of \\>= 2 points.|Up to 2 years
Percentage of Participants With Anti-drug Antibodies|Immunogenicity assessed with a validated assay.|Up to 2 years
Intracranial Objective Response Rate|Response of brain lesions per RANO-BM criteria.|Up to approximately 24 months
Overall Survival Rate at 2 Years|Kaplan-Meier estimate of the proportion of participants alive 24 months after randomization.|24 months
""")  # noqa: E501
# MedDRA preferred term | organ system
_ADVERSE_EVENTS = _table("""
Neutropenia|Blood and lymphatic system disorders
Anaemia|Blood and lymphatic system disorders
Thrombocytopenia|Blood and lymphatic system disorders
Febrile neutropenia|Blood and lymphatic system disorders
Diarrhoea|Gastrointestinal disorders
Nausea|Gastrointestinal disorders
Vomiting|Gastrointestinal disorders
Stomatitis|Gastrointestinal disorders
Constipation|Gastrointestinal disorders
Fatigue|General disorders and administration site conditions
Pyrexia|General disorders and administration site conditions
Pneumonia|Infections and infestations
Sepsis|Infections and infestations
Urinary tract infection|Infections and infestations
Decreased appetite|Metabolism and nutrition disorders
Hypokalaemia|Metabolism and nutrition disorders
Alanine aminotransferase increased|Investigations
Aspartate aminotransferase increased|Investigations
Weight decreased|Investigations
Pneumonitis|Respiratory, thoracic and mediastinal disorders
Dyspnoea|Respiratory, thoracic and mediastinal disorders
Cough|Respiratory, thoracic and mediastinal disorders
Rash|Skin and subcutaneous tissue disorders
Alopecia|Skin and subcutaneous tissue disorders
Pruritus|Skin and subcutaneous tissue disorders
Hypothyroidism|Endocrine disorders
Peripheral sensory neuropathy|Nervous system disorders
Headache|Nervous system disorders
Arthralgia|Musculoskeletal and connective tissue disorders
Pulmonary embolism|Vascular disorders
Hypertension|Vascular disorders
Deep vein thrombosis|Vascular disorders
Lymphocyte count decreased|Investigations
Blood creatinine increased|Investigations
Infusion related reaction|Injury, poisoning and procedural complications
Hyperglycaemia|Metabolism and nutrition disorders
Hyponatraemia|Metabolism and nutrition disorders
Abdominal pain|Gastrointestinal disorders
Dysgeusia|Nervous system disorders
Dizziness|Nervous system disorders
Insomnia|Psychiatric disorders
Back pain|Musculoskeletal and connective tissue disorders
Myalgia|Musculoskeletal and connective tissue disorders
Oedema peripheral|General disorders and administration site conditions
Asthenia|General disorders and administration site conditions
Epistaxis|Respiratory, thoracic and mediastinal disorders
Palmar-plantar erythrodysaesthesia syndrome|Skin and subcutaneous tissue disorders
Dry skin|Skin and subcutaneous tissue disorders
Acute kidney injury|Renal and urinary disorders
Atrial fibrillation|Cardiac disorders
""")
_CITATION_JOURNALS = (
    "N Engl J Med",
    "Lancet Oncol",
    "J Clin Oncol",
    "Ann Oncol",
    "JAMA Oncol",
    "Clin Cancer Res",
    "Cancer",
    "Br J Cancer",
)


# --------------------------------------------------------------------------------------------
# Shared pools: built once from a fixed seed, then picked from per study (cheap per study).
# --------------------------------------------------------------------------------------------


def _text(rng: random.Random, sentences: int) -> str:
    return " ".join(rng.choices(_SENTENCES, k=sentences))


def _person(rng: random.Random) -> str:
    name = f"{_pick(rng, _FIRST_NAMES)} {_pick(rng, _LAST_NAMES)}"
    degree = _pick(rng, _DEGREES)
    return f"{name}, {degree}" if degree else name


def _contact(rng: random.Random, role: str = "CONTACT") -> Study:
    contact: Study = {"name": _person(rng), "role": role}
    if _chance(rng, 0.85):
        contact["phone"] = f"+1 {_between(rng, 200, 999)}-{_between(rng, 200, 999)}-" + str(
            _between(rng, 1000, 9999)
        )
    if _chance(rng, 0.8):
        contact["email"] = f"trials{_between(rng, 1, 999)}@example.org"
    return contact


def _location(rng: random.Random, city: _City, recruiting: bool) -> Study:
    location: Study = {}
    if _chance(rng, 0.985):
        pattern = _pick(rng, _FACILITY_PATTERNS)
        location["facility"] = pattern.format(city=city.name.rstrip(","), n=_between(rng, 1, 999))
    has_status = recruiting and _chance(rng, 0.95)
    if has_status:
        location["status"] = _LOCATION_STATUSES.pick(rng)
    location["city"] = city.name
    if city.state and (city.country == "United States" or _chance(rng, 0.5)):
        location["state"] = city.state
    if city.zip_code and _chance(rng, 0.85):
        location["zip"] = city.zip_code
    location["country"] = city.country
    if has_status and _chance(rng, 0.6):
        location["contacts"] = [_contact(rng), _contact(rng, "PRINCIPAL_INVESTIGATOR")]
    if _chance(rng, 0.99):
        location["geoPoint"] = {"lat": city.lat, "lon": city.lon}
    return location


@functools.cache
def _location_pool(country: str, recruiting: bool) -> tuple[Study, ...]:
    rng = random.Random(f"{_POOL_SEED}:{country}:{recruiting}")
    cities = _CITIES[country]
    return tuple(_location(rng, _pick(rng, cities), recruiting) for _ in range(64))


def _reference(rng: random.Random) -> Study:
    reference: Study = {}
    if _chance(rng, 0.94):
        reference["pmid"] = str(_between(rng, 10_000_000, 40_000_000))
    reference["type"] = _REFERENCE_TYPES.pick(rng)
    year = _between(rng, 2005, 2026)
    reference["citation"] = (
        f"{_pick(rng, _LAST_NAMES)} {_pick(rng, 'ABCDJKLMS')}, {_pick(rng, _LAST_NAMES)} "
        f"{_pick(rng, 'ABCDJKLMS')}, et al. {_text(rng, 1)[:-1]}. {_pick(rng, _CITATION_JOURNALS)}."
        f" {year};{_between(rng, 1, 400)}({_between(rng, 1, 24)}):{_between(rng, 1, 2000)}-"
        f"{_between(rng, 2000, 3000)}. doi: 10.1000/{_between(rng, 10_000, 99_999)}."
    )
    return reference


_REFERENCE_TYPES = _Weighted([("BACKGROUND", 73), ("RESULT", 18), ("DERIVED", 9)])


@functools.cache
def _reference_pool() -> tuple[Study, ...]:
    rng = random.Random(f"{_POOL_SEED}:references")
    return tuple(_reference(rng) for _ in range(1024))


@functools.cache
def _person_pool() -> tuple[str, ...]:
    rng = random.Random(f"{_POOL_SEED}:people")
    return tuple(_person(rng) for _ in range(512))


# --------------------------------------------------------------------------------------------
# One study
# --------------------------------------------------------------------------------------------


def _type_label(intervention_type: str) -> str:
    """``DIAGNOSTIC_TEST`` -> ``Diagnostic Test``, as in armGroups' interventionNames."""
    return intervention_type.replace("_", " ").title()


def _location_count(rng: random.Random) -> int:
    bucket = rng.random()
    if bucket < 0.60:
        return 1
    if bucket < 0.84:
        return _between(rng, 2, 6)
    if bucket < 0.94:
        return _between(rng, 6, 21)
    if bucket < 0.985:
        return _between(rng, 21, 71)
    return _between(rng, 71, 251)


class _StudyBuilder:
    """Builds one study; every method draws from the same rng in a fixed order."""

    def __init__(self, rng: random.Random, nct_id: str, day: date, version_holder: str) -> None:
        self.rng = rng
        self.nct_id = nct_id
        self.day = day
        self.version_holder = version_holder
        self.disease = _DISEASES.pick(rng)
        self.condition = _pick(rng, self.disease.conditions)
        self.observational = _chance(rng, 0.2)
        self.status = _STATUSES.pick(rng)
        self.lead_class = _LEAD_CLASSES.pick(rng)
        self.lead_sponsor = _pick(rng, _SPONSORS[self.lead_class])
        self.drugs = rng.sample(_DRUGS, k=_pick(rng, (1, 1, 1, 2, 2, 3)))
        self.has_results = self.status in ("COMPLETED", "TERMINATED") and _chance(rng, 0.18)
        self.phase_text = "Phase 3" if _chance(rng, 0.3) else "Phase 2"

    def build(self) -> Study:
        protocol: Study = {
            "identificationModule": self.identification(),
            "statusModule": self.status_module(),
            "sponsorCollaboratorsModule": self.sponsors(),
        }
        self._maybe(protocol, "oversightModule", self.oversight, 0.98)
        protocol["descriptionModule"] = self.description()
        protocol["conditionsModule"] = self.conditions()
        protocol["designModule"] = self.design()
        self._maybe(protocol, "armsInterventionsModule", self.arms_interventions, 0.96)
        self._maybe(protocol, "outcomesModule", self.outcomes, 0.995)
        protocol["eligibilityModule"] = self.eligibility()
        self._maybe(protocol, "contactsLocationsModule", self.contacts_locations, 0.985)
        self._maybe(protocol, "referencesModule", self.references, 0.27)
        self._maybe(protocol, "ipdSharingStatementModule", self.ipd_sharing, 0.67)
        study: Study = {"protocolSection": protocol}
        if self.has_results:
            study["resultsSection"] = _ResultsBuilder(self.rng, protocol).build()
        study["derivedSection"] = self.derived()
        study["hasResults"] = self.has_results
        return study

    def _maybe(self, target: Study, key: str, build: Any, probability: float) -> None:
        if _chance(self.rng, probability):
            target[key] = build()

    def identification(self) -> Study:
        rng = self.rng
        prefix = "".join(word[0] for word in self.lead_sponsor.split()[:3]).upper()
        module: Study = {
            "nctId": self.nct_id,
            "orgStudyIdInfo": {"id": f"{prefix}-{_between(rng, 100, 99999)}"},
        }
        if _chance(rng, 0.13):
            module["secondaryIdInfos"] = [
                {
                    "id": f"{self.day.year - _between(rng, 0, 6)}-{_between(rng, 100000, 999999)}",
                    "type": _pick(rng, _SECONDARY_ID_TYPES),
                }
                for _ in range(_pick(rng, (1, 1, 2)))
            ]
        module["organization"] = {"fullName": self.lead_sponsor, "class": self.lead_class}
        drug = self.drugs[0].name
        module["briefTitle"] = f"A Study of {drug} in Participants With {self.condition}"
        if _chance(rng, 0.99):
            design = _pick(rng, ("Randomized", "Open-label", "Multicenter", "Single-arm"))
            module["officialTitle"] = (
                f"A {self.phase_text}, {design} Study of {drug} Versus Standard of Care in "
                f"Participants With Previously Treated {self.condition} "
                f"({_pick(rng, self.disease.keywords)})"
            )
        if _chance(rng, 0.27):
            module["acronym"] = f"{drug[:4].upper()}-{_pick(rng, ('LUNG', 'ONE', 'GO', 'X'))}"
        return module

    def status_module(self) -> Study:
        rng = self.rng
        day = self.day
        submitted = day - timedelta(days=int(rng.expovariate(1 / 700)) + 3)
        first_posted = min(day, submitted + timedelta(days=_between(rng, 1, 9)))
        started = submitted + timedelta(days=_between(rng, -60, 120))
        started_actual = self.status != "NOT_YET_RECRUITING" and started <= day
        completion = started + timedelta(days=_between(rng, 300, 2600))
        completion_actual = self.status in _FINISHED_STATUSES and completion <= day
        module: Study = {
            "statusVerifiedDate": _month(day - timedelta(days=_between(rng, 0, 60))),
            "overallStatus": self.status,
        }
        if self.status == "UNKNOWN":
            module["lastKnownStatus"] = _pick(
                rng, ("RECRUITING", "NOT_YET_RECRUITING", "ACTIVE_NOT_RECRUITING")
            )
        if self.status in ("TERMINATED", "WITHDRAWN", "SUSPENDED"):
            module["whyStopped"] = _pick(rng, _WHY_STOPPED)
        module["expandedAccessInfo"] = {"hasExpandedAccess": _chance(rng, 0.02)}
        module["startDateStruct"] = self._date_struct(started, started_actual, untyped=0.1)
        if _chance(rng, 0.99):
            primary = completion - timedelta(days=_between(rng, 0, 365))
            module["primaryCompletionDateStruct"] = self._date_struct(primary, completion_actual)
        module["completionDateStruct"] = self._date_struct(completion, completion_actual, 0.004)
        module["studyFirstSubmitDate"] = submitted.isoformat()
        module["studyFirstSubmitQcDate"] = submitted.isoformat()
        module["studyFirstPostDateStruct"] = {
            "date": first_posted.isoformat(),
            "type": "ACTUAL" if _chance(rng, 0.86) else "ESTIMATED",
        }
        if self.has_results:
            results_day = day - timedelta(days=_between(rng, 0, 400))
            module["resultsFirstSubmitDate"] = (results_day - timedelta(days=30)).isoformat()
            module["resultsFirstSubmitQcDate"] = results_day.isoformat()
            module["resultsFirstPostDateStruct"] = {
                "date": results_day.isoformat(),
                "type": "ACTUAL",
            }
        module["lastUpdateSubmitDate"] = (day - timedelta(days=_between(rng, 0, 4))).isoformat()
        module["lastUpdatePostDateStruct"] = {"date": day.isoformat(), "type": "ACTUAL"}
        return module

    def _date_struct(self, when: date, actual: bool, untyped: float = 0.0) -> Study:
        rng = self.rng
        struct: Study = {"date": _month(when) if _chance(rng, 0.3) else when.isoformat()}
        if rng.random() >= untyped:
            struct["type"] = "ACTUAL" if actual else "ESTIMATED"
        return struct

    def sponsors(self) -> Study:
        rng = self.rng
        module: Study = {}
        if _chance(rng, 0.99):
            responsible = _RESPONSIBLE_PARTIES.pick(rng)
            party: Study = {"type": responsible}
            if responsible != "SPONSOR":
                party["investigatorFullName"] = _pick(rng, _person_pool())
                party["investigatorTitle"] = _pick(
                    rng, ("Professor", "Principal Investigator", "Chief of Oncology", "MD")
                )
                party["investigatorAffiliation"] = self.lead_sponsor
            module["responsibleParty"] = party
        module["leadSponsor"] = {"name": self.lead_sponsor, "class": self.lead_class}
        count = _COLLABORATOR_COUNTS.pick(rng)
        if count:
            module["collaborators"] = [self._collaborator() for _ in range(count)]
        return module

    def _collaborator(self) -> Study:
        klass = _COLLABORATOR_CLASSES.pick(self.rng)
        return {"name": _pick(self.rng, _SPONSORS[klass]), "class": klass}

    def oversight(self) -> Study:
        rng = self.rng
        if _chance(rng, 0.005):
            return {}
        module: Study = {"oversightHasDmc": _chance(rng, 0.4)}
        if _chance(rng, 0.88):
            module["isFdaRegulatedDrug"] = _chance(rng, 0.4)
            module["isFdaRegulatedDevice"] = False
        if _chance(rng, 0.2):
            module["isUsExport"] = _chance(rng, 0.3)
        return module

    def description(self) -> Study:
        rng = self.rng
        partner = self.drugs[-1].name.lower() if len(self.drugs) > 1 else "standard chemotherapy"
        opener = _pick(rng, _SUMMARY_OPENERS).format(
            drug=self.drugs[0].name.lower(), partner=partner, condition=self.condition.lower()
        )
        module: Study = {"briefSummary": f"{opener} {_text(rng, _skewed(rng, 2, 0.9, 25))}"}
        if _chance(rng, 0.73):
            paragraphs = _skewed(rng, 2, 1.1, 40) + 1
            module["detailedDescription"] = "\n\n".join(
                _text(rng, _between(rng, 2, 7)) for _ in range(paragraphs)
            )
        return module

    def conditions(self) -> Study:
        rng = self.rng
        extra = _pick(rng, (0, 0, 0, 0, 0, 0, 1, 1, 2, 3))
        conditions = self.disease.conditions
        names = [self.condition, *rng.sample(conditions, k=min(extra, len(conditions)))]
        module: Study = {"conditions": list(dict.fromkeys(names))}
        if _chance(rng, 0.6):
            keywords = self.disease.keywords
            module["keywords"] = rng.sample(keywords, k=_between(rng, 1, len(keywords) + 1)) + [
                drug.name for drug in self.drugs if _chance(rng, 0.3)
            ]
        return module

    def design(self) -> Study:
        rng = self.rng
        if self.observational:
            module: Study = {"studyType": "OBSERVATIONAL"}
            if _chance(rng, 0.9):
                module["patientRegistry"] = _chance(rng, 0.2)
            module["designInfo"] = {
                "observationalModel": _pick(rng, _OBSERVATIONAL_MODELS),
                "timePerspective": _pick(rng, _TIME_PERSPECTIVES),
            }
            if _chance(rng, 0.2):
                module["bioSpec"] = {
                    "retention": "SAMPLES_WITH_DNA",
                    "description": "Tumor tissue and blood samples",
                }
        else:
            module = {
                "studyType": "INTERVENTIONAL",
                "phases": list(_PHASES.pick(rng)),
                "designInfo": self._interventional_design(),
            }
        if _chance(rng, 0.996):
            enrollment: Study = {"count": round(rng.lognormvariate(4.2, 1.1))}
            if _chance(rng, 0.996):
                enrollment["type"] = "ACTUAL" if self.status in _FINISHED_STATUSES else "ESTIMATED"
            module["enrollmentInfo"] = enrollment
        return module

    def _interventional_design(self) -> Study:
        rng = self.rng
        randomized = _chance(rng, 0.5)
        masking = _MASKINGS.pick(rng) if randomized else "NONE"
        masking_info: Study = {"masking": masking}
        if masking != "NONE":
            masking_info["whoMasked"] = _MASKED_ROLES[masking]
        if randomized:
            allocation, model = "RANDOMIZED", "PARALLEL"
        else:
            allocation = _pick(rng, ("NA", "NA", "NON_RANDOMIZED"))
            model = _pick(rng, ("SINGLE_GROUP", "SINGLE_GROUP", "SEQUENTIAL", "CROSSOVER"))
        return {
            "allocation": allocation,
            "interventionModel": model,
            "primaryPurpose": _PURPOSES.pick(rng),
            "maskingInfo": masking_info,
        }

    def arms_interventions(self) -> Study:
        rng = self.rng
        interventions = [self._drug_intervention(drug) for drug in self.drugs]
        if _chance(rng, 0.25):
            kind, name = _pick(rng, _NON_DRUG_INTERVENTIONS)
            interventions.append(
                {"type": kind, "name": name, "description": _text(rng, _between(rng, 1, 3))}
            )
        arm_count = 1 if self.observational else _ARM_COUNTS.pick(rng)
        arms = [self._arm(index, interventions) for index in range(arm_count)]
        for intervention in interventions:
            if _chance(rng, 0.96):
                label = f"{_type_label(intervention['type'])}: {intervention['name']}"
                intervention["armGroupLabels"] = [
                    arm["label"] for arm in arms if label in arm["interventionNames"]
                ]
        module: Study = {}
        if _chance(rng, 0.95):
            module["armGroups"] = arms
        module["interventions"] = interventions
        return module

    def _drug_intervention(self, drug: _Drug) -> Study:
        rng = self.rng
        dose = f"{_pick(rng, (200, 400, 80, 10, 1.5, 600))} {_pick(rng, ('mg', 'mg/m2', 'mg/kg'))}"
        route = _pick(rng, ("intravenously every 3 weeks", "orally once daily", "IV Q2W"))
        intervention: Study = {
            "type": drug.kind,
            "name": drug.name,
            "description": f"{drug.name} {dose} administered {route}. "
            + _text(rng, _between(rng, 0, 3)),
        }
        if drug.other_names and _chance(rng, 0.5):
            intervention["otherNames"] = list(drug.other_names)
        return intervention

    def _arm(self, index: int, interventions: list[Study]) -> Study:
        rng = self.rng
        chosen = interventions if index == 0 else [_pick(rng, interventions)]
        arm: Study = {"label": f"Arm {chr(65 + index)}: {chosen[0]['name']}"}
        if not self.observational:
            arm["type"] = "EXPERIMENTAL" if index == 0 else _pick(rng, _ARM_TYPES)
        arm["description"] = _text(rng, _between(rng, 1, 4))
        arm["interventionNames"] = [f"{_type_label(i['type'])}: {i['name']}" for i in chosen]
        return arm

    def outcomes(self) -> Study:
        rng = self.rng
        primary = [self._outcome(_PRIMARY_MEASURES) for _ in range(_pick(rng, (1, 1, 1, 2, 3)))]
        module: Study = {"primaryOutcomes": primary}
        # Trials that post results tend to be large sponsor trials with many endpoints.
        secondary = _skewed(rng, 10 if self.has_results else 5, 1.0, 80)
        if secondary and _chance(rng, 0.8):
            module["secondaryOutcomes"] = [
                self._outcome(_SECONDARY_MEASURES) for _ in range(secondary)
            ]
        if _chance(rng, 0.12):
            module["otherOutcomes"] = [
                self._outcome(_SECONDARY_MEASURES) for _ in range(_between(rng, 1, 5))
            ]
        return module

    def _outcome(self, pool: list[list[str]]) -> Study:
        measure, description, time_frame = _pick(self.rng, pool)
        outcome: Study = {"measure": measure}
        if _chance(self.rng, 0.92):
            detail = _skewed(self.rng, 1, 1.0, 12) if _chance(self.rng, 0.4) else 0
            outcome["description"] = f"{description} {_text(self.rng, detail)}".rstrip()
        outcome["timeFrame"] = time_frame
        return outcome

    def eligibility(self) -> Study:
        rng = self.rng
        inclusion = rng.sample(_INCLUSION, k=_between(rng, 3, 11))
        exclusion = rng.sample(_EXCLUSION, k=_between(rng, 3, 11))
        criteria = (
            "Inclusion Criteria:\n\n"
            + "\n".join(f"* {line}" for line in inclusion)
            + "\n\nExclusion Criteria:\n\n"
            + "\n".join(f"* {line}" for line in exclusion)
        ).format(condition=self.condition.lower(), drug=self.drugs[0].name.lower())
        if _chance(rng, 0.45):
            criteria += "\n\nNote: " + _text(rng, _skewed(rng, 9, 1.3, 120))
        module: Study = {"eligibilityCriteria": criteria}
        if _chance(rng, 0.95):
            module["healthyVolunteers"] = False
        module["sex"] = _pick(rng, ("ALL",) * 18 + ("FEMALE", "MALE"))
        if _chance(rng, 0.96):
            module["minimumAge"] = _pick(rng, _MINIMUM_AGES)
        if _chance(rng, 0.55):
            module["maximumAge"] = _pick(rng, _MAXIMUM_AGES)
        module["stdAges"] = ["ADULT", "OLDER_ADULT"] if _chance(rng, 0.85) else ["ADULT"]
        if self.observational:
            module["studyPopulation"] = (
                f"Patients with {self.condition.lower()} treated at the participating centers. "
                + _text(rng, 1)
            )
            module["samplingMethod"] = _pick(rng, ("NON_PROBABILITY_SAMPLE", "PROBABILITY_SAMPLE"))
        return module

    def contacts_locations(self) -> Study:
        rng = self.rng
        module: Study = {}
        recruiting = self.status in _RECRUITING_STATUSES
        if recruiting and _chance(rng, 0.8):
            module["centralContacts"] = [_contact(rng) for _ in range(_pick(rng, (1, 2)))]
        if _chance(rng, 0.7):
            module["overallOfficials"] = [
                {
                    "name": _pick(rng, _person_pool()),
                    "affiliation": self.lead_sponsor,
                    "role": _pick(rng, ("PRINCIPAL_INVESTIGATOR", "STUDY_DIRECTOR", "STUDY_CHAIR")),
                }
                for _ in range(_pick(rng, (1, 1, 1, 2)))
            ]
        if _chance(rng, 0.93):
            module["locations"] = self._locations(recruiting)
        return module

    def _locations(self, recruiting: bool) -> list[Study]:
        rng = self.rng
        count = _location_count(rng)
        countries = [_COUNTRIES.pick(rng) for _ in range(1 if count < 3 else 4)]
        pools = [_location_pool(country, recruiting) for country in countries]
        return [_pick(rng, _pick(rng, pools)) for _ in range(count)]

    def references(self) -> Study:
        rng = self.rng
        pool = _reference_pool()
        module: Study = {
            "references": [_pick(rng, pool) for _ in range(_skewed(rng, 3, 1.0, 50) + 1)]
        }
        if _chance(rng, 0.1):
            module["seeAlsoLinks"] = [
                {"label": "Study information", "url": f"https://example.org/trials/{self.nct_id}"}
            ]
        return module

    def ipd_sharing(self) -> Study:
        sharing = _pick(self.rng, ("NO",) * 15 + ("YES",) * 3 + ("UNDECIDED",) * 2)
        module: Study = {"ipdSharing": sharing}
        if sharing == "YES":
            module["description"] = (
                "Qualified researchers may request access to individual patient level data "
                "through the sponsor's data sharing portal."
            )
            module["infoTypes"] = ["STUDY_PROTOCOL", "SAP", "CSR"]
        return module

    def derived(self) -> Study:
        section: Study = {"miscInfoModule": {"versionHolder": self.version_holder}}
        if _chance(self.rng, 0.82):
            disease = self.disease
            browse = _browse_module(
                disease.meshes, disease.ancestors, disease.branch, "All Conditions"
            )
            if _chance(self.rng, 0.03):
                del browse["meshes"]
            section["conditionBrowseModule"] = browse
        drug_meshes = tuple(drug.mesh for drug in self.drugs if drug.mesh is not None)
        if drug_meshes:
            section["interventionBrowseModule"] = _browse_module(
                drug_meshes,
                (("D000000970", "Antineoplastic Agents"),),
                ("ANeo", "Antineoplastic Agents"),
                "All Drugs and Chemicals",
            )
        return section


def _browse_module(
    meshes: tuple[MeshTerm, ...],
    ancestors: tuple[MeshTerm, ...],
    branch: tuple[str, str],
    all_label: str,
) -> Study:
    leaves = [
        {"id": _leaf_id(mesh_id), "name": term, "asFound": term, "relevance": "HIGH"}
        for mesh_id, term in meshes
    ]
    leaves += [
        {"id": _leaf_id(mesh_id), "name": term, "relevance": "LOW"} for mesh_id, term in ancestors
    ]
    return {
        "meshes": [{"id": mesh_id, "term": term} for mesh_id, term in meshes],
        "ancestors": [{"id": mesh_id, "term": term} for mesh_id, term in ancestors],
        "browseLeaves": leaves,
        "browseBranches": [
            {"abbrev": branch[0], "name": branch[1]},
            {"abbrev": "All", "name": all_label},
        ],
    }


def _leaf_id(mesh_id: str) -> str:
    return f"M{int(mesh_id[1:]) % 30000}"


# Baseline measures with categories, as most results sections report them.
_BASELINE_CATEGORIES = (
    ("Race (NIH/OMB)", ("American Indian or Alaska Native", "Asian",
                        "Native Hawaiian or Other Pacific Islander", "Black or African American",
                        "White", "More than one race", "Unknown or Not Reported")),
    ("Ethnicity (NIH/OMB)", ("Hispanic or Latino", "Not Hispanic or Latino",
                             "Unknown or Not Reported")),
    ("ECOG Performance Status", ("0", "1", "2")),
    ("Region of Enrollment", ("United States", "China", "France", "Korea, Republic of", "Japan",
                              "Spain", "Germany")),
)  # fmt: skip
_RESPONSE_CATEGORIES = ("Complete Response", "Partial Response", "Stable Disease",
                        "Progressive Disease", "Not Evaluable")  # fmt: skip
_TIME_POINTS = ((None,), (None,), ("Week 12", "Week 24"), ("Cycle 1 Day 1", "Cycle 1 Day 8",
                "Cycle 3 Day 1"), ("Month 6", "Month 12", "Month 24", "Month 36"))  # fmt: skip
_DROP_REASONS = ("Adverse Event", "Death", "Physician Decision", "Progressive Disease",
                 "Withdrawal by Subject", "Lost to Follow-up")  # fmt: skip


class _ResultsBuilder:
    """A results section consistent with the protocol's arms and outcomes."""

    def __init__(self, rng: random.Random, protocol: Study) -> None:
        self.rng = rng
        arms = protocol.get("armsInterventionsModule", {}).get("armGroups") or [{"label": "All"}]
        self.arm_titles = [arm["label"] for arm in arms]
        outcomes = protocol.get("outcomesModule", {})
        self.outcomes = [("PRIMARY", o) for o in outcomes.get("primaryOutcomes", [])] + [
            ("SECONDARY", o) for o in outcomes.get("secondaryOutcomes", [])
        ]
        self.started = [_between(rng, 10, 300) for _ in self.arm_titles]
        self.sponsor = protocol["sponsorCollaboratorsModule"]["leadSponsor"]

    def build(self) -> Study:
        return {
            "participantFlowModule": self.participant_flow(),
            "baselineCharacteristicsModule": self.baseline(),
            "outcomeMeasuresModule": {
                "outcomeMeasures": [self.outcome_measure(kind, o) for kind, o in self.outcomes]
            },
            "adverseEventsModule": self.adverse_events(),
            "moreInfoModule": {
                "certainAgreement": {"piSponsorEmployee": self.sponsor["class"] == "INDUSTRY"},
                "pointOfContact": {
                    "title": "Clinical Trials Disclosure",
                    "organization": self.sponsor["name"],
                    "email": "disclosure@example.org",
                },
            },
        }

    def _groups(self, prefix: str) -> list[Study]:
        return [
            {"id": f"{prefix}{index:03d}", "title": title, "description": _text(self.rng, 1)}
            for index, title in enumerate(self.arm_titles)
        ]

    def _per_group(self, prefix: str, key: str, values: Sequence[object]) -> list[Study]:
        return [
            {"groupId": f"{prefix}{index:03d}", key: str(value)}
            for index, value in enumerate(values)
        ]

    def _split(self, totals: Sequence[int]) -> list[int]:
        return [_between(self.rng, 0, total + 1) for total in totals]

    def participant_flow(self) -> Study:
        completed = self._split(self.started)
        dropped = [s - c for s, c in zip(self.started, completed, strict=True)]
        milestones = (("STARTED", self.started), ("COMPLETED", completed),
                      ("NOT COMPLETED", dropped))  # fmt: skip
        reasons = self.rng.sample(_DROP_REASONS, k=_between(self.rng, 1, len(_DROP_REASONS) + 1))
        return {
            "groups": [
                {"id": f"FG{index:03d}", "title": title}
                for index, title in enumerate(self.arm_titles)
            ],
            "periods": [
                {
                    "title": "Overall Study",
                    "milestones": [
                        {"type": kind, "achievements": self._per_group("FG", "numSubjects", n)}
                        for kind, n in milestones
                    ],
                    "dropWithdraws": [
                        {"type": reason, "reasons": self._per_group("FG", "numSubjects", n)}
                        for reason, n in ((r, self._split(dropped)) for r in reasons)
                    ],
                }
            ],
        }

    def baseline(self) -> Study:
        rng = self.rng
        ages = [
            {
                "groupId": f"BG{index:03d}",
                "value": str(_between(rng, 50, 70)),
                "lowerLimit": str(_between(rng, 18, 40)),
                "upperLimit": str(_between(rng, 75, 90)),
            }
            for index in range(len(self.arm_titles))
        ]
        measures: list[Study] = [
            {
                "title": "Age, Continuous",
                "paramType": "MEDIAN",
                "dispersionType": "FULL_RANGE",
                "unitOfMeasure": "years",
                "classes": [{"categories": [{"measurements": ages}]}],
            },
            self._count_measure("Sex: Female, Male", ("Female", "Male")),
        ]
        measures += [
            self._count_measure(title, categories)
            for title, categories in _BASELINE_CATEGORIES
            if _chance(rng, 0.7)
        ]
        return {
            "groups": self._groups("BG"),
            "denoms": [
                {"units": "Participants", "counts": self._per_group("BG", "value", self.started)}
            ],
            "measures": measures,
        }

    def _count_measure(self, title: str, categories: Sequence[str]) -> Study:
        return {
            "title": title,
            "paramType": "COUNT_OF_PARTICIPANTS",
            "unitOfMeasure": "Participants",
            "classes": [
                {
                    "categories": [
                        {"title": name, "measurements": self._per_group("BG", "value", counts)}
                        for name, counts in ((c, self._split(self.started)) for c in categories)
                    ]
                }
            ],
        }

    def outcome_measure(self, kind: str, outcome: Study) -> Study:
        rng = self.rng
        by_response = _chance(rng, 0.35)
        categories = _RESPONSE_CATEGORIES if by_response else (None,)
        return {
            "type": kind,
            "title": outcome["measure"],
            "description": outcome.get("description", ""),
            "populationDescription": "All randomized participants. " + _text(rng, 1),
            "reportingStatus": "POSTED",
            "paramType": "COUNT_OF_PARTICIPANTS" if by_response else "MEDIAN",
            **({} if by_response else {"dispersionType": "95% Confidence Interval"}),
            "unitOfMeasure": "Participants" if by_response else "months",
            "timeFrame": outcome["timeFrame"],
            "groups": self._groups("OG"),
            "denoms": [
                {"units": "Participants", "counts": self._per_group("OG", "value", self.started)}
            ],
            "classes": [
                self._outcome_class(time_point, categories)
                for time_point in _pick(rng, _TIME_POINTS)
            ],
        }

    def _outcome_class(self, time_point: str | None, categories: Sequence[str | None]) -> Study:
        outcome_class: Study = {"title": time_point} if time_point else {}
        outcome_class["categories"] = [self._outcome_category(title) for title in categories]
        return outcome_class

    def _outcome_category(self, title: str | None) -> Study:
        if title is not None:
            counts = self._split(self.started)
            return {"title": title, "measurements": self._per_group("OG", "value", counts)}
        rng = self.rng
        return {
            "measurements": [
                {
                    "groupId": f"OG{index:03d}",
                    "value": f"{rng.uniform(1, 30):.1f}",
                    "lowerLimit": f"{rng.uniform(0.5, 1):.1f}",
                    "upperLimit": f"{rng.uniform(30, 45):.1f}",
                }
                for index in range(len(self.arm_titles))
            ]
        }

    def adverse_events(self) -> Study:
        rng = self.rng
        groups = self._groups("EG")
        for group, at_risk in zip(groups, self.started, strict=True):
            group["seriousNumAffected"] = _between(rng, 0, at_risk // 2 + 1)
            group["seriousNumAtRisk"] = at_risk
            group["otherNumAffected"] = _between(rng, at_risk // 2, at_risk + 1)
            group["otherNumAtRisk"] = at_risk
        return {
            "frequencyThreshold": "5",
            "timeFrame": "From first dose up to 30 days after the last dose",
            "eventGroups": groups,
            "seriousEvents": self._events(_skewed(rng, 10, 0.9, len(_ADVERSE_EVENTS))),
            "otherEvents": self._events(_skewed(rng, 18, 0.7, len(_ADVERSE_EVENTS))),
        }

    def _events(self, count: int) -> list[Study]:
        return [
            {
                "term": term,
                "organSystem": organ_system,
                "sourceVocabulary": "MedDRA 26.0",
                "assessmentType": "SYSTEMATIC_ASSESSMENT",
                "stats": [
                    self._event_stats(index, at_risk) for index, at_risk in enumerate(self.started)
                ],
            }
            for term, organ_system in self.rng.sample(_ADVERSE_EVENTS, k=count)
        ]

    def _event_stats(self, index: int, at_risk: int) -> Study:
        affected = _between(self.rng, 0, at_risk // 3 + 1)
        return {
            "groupId": f"EG{index:03d}",
            "numEvents": affected + _between(self.rng, 0, 3),
            "numAffected": affected,
            "numAtRisk": at_risk,
        }
