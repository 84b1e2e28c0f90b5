"""Canonical drug entities from ClinicalTrials.gov interventions, and drug classes by INN stem.

Pure functions, no dagster import. Three parts:

* Normalization (`normalize_name`, `parse_name`): case, unicode, doses, routes, dosage forms,
  salt forms and study-design words are removed; combinations are split into components;
  placebo/control entries, generic classes ("chemotherapy", "PD-1 inhibitor") and tests or
  procedures are excluded with a reason. A name that is one code is written `prefix-number`
  (`XY123`, `XY 123` and `xy-123` all become `xy-123`).
* Clustering (`drug_entities`): names that co-occur in one single-drug intervention (its name, a
  parenthetical in the name, its other names) are joined by union-find. A cluster is one
  `DrugEntity`, named by its most INN-like member and keyed by `unique_keys`.
* Classification (`classify`): USAN/INN stems only, never a list of drug names, so an unseen INN
  is classified like a known one. 'small molecule' is a modality and 'kinase inhibitor', 'PARP
  inhibitor', … are mechanisms; `DrugClass.label` is the mechanism for small molecules and
  peptides (their stem names the pharmacology) and the modality for everything else.

Decisions:

* Intervention types: DRUG and BIOLOGICAL are drugs unless excluded; GENETIC and
  COMBINATION_PRODUCT only when the name has a drug stem or is a code (CT.gov files tests,
  devices and programmes under them); RADIATION only when the name carries a radionuclide with
  its mass number (a radiopharmaceutical), never for external-beam therapy.
* Joining is conservative, because one wrong join merges two drugs for good while a missed join
  only leaves a synonym out: other names join the intervention's name only when the name is a
  single drug, other names that list several drugs or a regimen are not synonyms, two names
  with different INN stems are never joined (not within one intervention, nor transitively),
  and clusters are built in sorted order so the result does not depend on input order.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = [
    "DrugClass",
    "DrugEntity",
    "Intervention",
    "Normalized",
    "ParsedName",
    "classify",
    "drug_entities",
    "interventions_from_study",
    "normalize_name",
    "parse_name",
    "slug",
    "unique_keys",
]

# Modalities.
MONOCLONAL_ANTIBODY = "monoclonal antibody"
ANTIBODY_DRUG_CONJUGATE = "antibody-drug conjugate"
BISPECIFIC_ANTIBODY = "bispecific antibody"
SMALL_MOLECULE = "small molecule"
RADIOLIGAND = "radioligand"
CELL_THERAPY = "cell therapy"
GENE_THERAPY = "gene therapy"
VACCINE = "vaccine"
PEPTIDE = "peptide"
OLIGONUCLEOTIDE = "oligonucleotide"
FUSION_PROTEIN = "fusion protein"
CYTOKINE = "cytokine"
ENZYME = "enzyme"

_LABEL_BY_MECHANISM = frozenset({SMALL_MOLECULE, PEPTIDE})

DRUG_TYPES = frozenset({"DRUG", "BIOLOGICAL"})
EVIDENCE_TYPES = frozenset({"GENETIC", "COMBINATION_PRODUCT"})
RADIATION_TYPE = "RADIATION"

SLUG_MAX_LENGTH = 120
_DIGEST_LENGTH = 8


@dataclass(frozen=True)
class Intervention:
    """One ClinicalTrials.gov intervention (`trial_interventions` row)."""

    type: str
    name: str
    other_names: Sequence[str] = ()


@dataclass(frozen=True)
class DrugEntity:
    key: str
    name: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class Normalized:
    """A normalized name, or `name=None` with the reason it is not a drug."""

    raw: str
    name: str | None
    reason: str | None = None
    branded: bool = False


@dataclass(frozen=True)
class ParsedName:
    """An intervention name: its combination components (excluded ones keep their reason) and
    the drug names found in its parentheses."""

    components: tuple[Normalized, ...]
    aliases: tuple[Normalized, ...]


@dataclass(frozen=True)
class DrugClass:
    modality: str
    mechanism: str | None
    target: str | None
    stem: str
    confidence: str  # 'high' (specific official stem), 'medium' (broad or informal), 'low'

    @property
    def label(self) -> str:
        if self.modality in _LABEL_BY_MECHANISM and self.mechanism:
            return self.mechanism
        return self.modality


# --------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------

BRAND_MARK = "®"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_MARKS = str.maketrans({"®": " ® ", "™": " ® ", "℠": " ® ", "©": " "})
_GREEK = str.maketrans(
    {"α": "alfa", "β": "beta", "γ": "gamma", "δ": "delta", "κ": "kappa", "λ": "lambda", "μ": "u"}
)
_DASHES = re.compile(r"[\u2010-\u2015\u2212\ufe63\uff0d]")
_TM_WORD = re.compile(r"\btm\b")
_APOSTROPHES = re.compile(r"['‘’`´]")

_UNIT = r"(?:mg|mcg|µg|ug|ng|g|kg|ml|iu|miu|units?|u|mmol|µmol|umol|%|gy|cgy|mbq|gbq|mci|pfu|vp)"
_PER = r"(?:m2|m²|kg|day|d|dose|week|wk|h|hr|ml|cycle)"
_NUMBER = r"\d+(?:[.,]\d+)?"
_DOSE = re.compile(
    rf"(?<![\w-]){_NUMBER}(?:\s*(?:-|to|/)\s*{_NUMBER})*\s*{_UNIT}(?:\s*/\s*{_PER})*(?![a-z0-9])"
)
_RATIO = re.compile(r"(?<!\w)\d+\s*:\s*\d[\d,]*")
_SCIENTIFIC = re.compile(r"(?<![\w-])\d+(?:\.\d+)?\s*[x×*]\s*10\s*\^?\s*\d+")
_PHRASES = re.compile(r"\bmode of administration\b|\bfixed combination of\b|\bstudy drug\b")

_BRACKETED = re.compile(r"[(\[{]([^()\[\]{}]*)[)\]}]")
_STRAY_BRACKET = re.compile(r"[()\[\]{}]")
_CD_MARKER_PLUS = re.compile(r"\b(cd\d{1,3})\+")
_TRAILING_PLUS = re.compile(r"(?<=[a-z0-9])\+(?=\s|$|[,;])")
_COMBINATION_SEPARATOR = re.compile(
    r"\s+(?:with\s+or\s+without|in\s+combination\s+with|combined\s+with|followed\s+by"
    r"|plus|and|or|versus|vs\.?)\s+"
    r"|\s*[+/,;&]\s*|\.\s+"
)
_LIST_SEPARATOR = re.compile(r"\s*[,;]\s*|\.\s+")
_LIST_SEPARATOR_WITH_CONJUNCTIONS = re.compile(
    r"\s*[,;]\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+|\.\s+"
)
_REGIMEN_MARKERS = re.compile(r"\+|/|\bplus\b|\bcombined with\b|\bfollowed by\b")

_PUNCTUATION = re.compile(r"[^\w\s-]|_")
_FREE_HYPHEN = re.compile(r"\s+-\s+")
_LOOSE_HYPHEN = re.compile(r"(?<=\w)-\s+|\s+-(?=\w)")
_CODE = re.compile(r"([a-z]{1,6})[\s-]?(\d[a-z0-9]*(?:-[a-z0-9]+)*)")
_ATC_CODE = re.compile(r"[a-v]\d{2}[a-z]{2}\d{2}")

_ROUTE_AND_FORM = _words(
    """
    tablet tablets tab tabs capsule capsules cap caps injection injections injectable inj infusion
    infusions solution suspension emulsion powder lyophilized lyophilised concentrate vial vials
    syrup elixir cream ointment gel patch spray drops granules sachet film-coated coated
    extended-release sustained-release delayed-release modified-release controlled-release er sr
    xr xl dpi mdi oral orally po iv intravenous intravenously sc subcutaneous subcutaneously im
    intramuscular intramuscularly topical inhaled inhalation sublingual transdermal rectal
    intravesical intratumoral intraperitoneal epidural transforaminal caudal perineural
    """
)
_DOSING = _words(
    """
    dose doses dosing dosage escalation expansion level qd bid tid qid qod qw q2w q3w q4w qm daily
    weekly once twice high low mid medium reduced standard-dose high-dose low-dose reduced-dose
    fixed-dose day days cycle cycles mg mcg ml
    """
)
_STUDY_CONTEXT = _words(
    """
    group arm cohort adjuvant neoadjuvant maintenance induction consolidation salvage monotherapy
    recombinant generic investigational product cryopreserved combination for and or the
    """
)
_NOISE = _ROUTE_AND_FORM | _DOSING | _STUDY_CONTEXT
_SALTS = _words(
    """
    hydrochloride hcl dihydrochloride monohydrochloride hydrobromide mesylate mesilate mesylat
    dimesylate besylate besilate tosylate tosilate ditosylate esylate edisylate napsylate sodium
    disodium potassium calcium magnesium maleate dimaleate malate fumarate citrate succinate
    tartrate bitartrate acetate sulfate sulphate bisulfate phosphate diphosphate lactate gluconate
    bromide chloride dichloride iodide nitrate hydrate monohydrate dihydrate trihydrate
    hemihydrate sesquihydrate anhydrous meglumine tromethamine trometamol olamine free base salt
    propionate dipropionate
    """
)
_PLACEBO_WORDS = _words("placebo placebos sham vehicle saline dummy")
_PLACEBO_PHRASES = re.compile(r"\bsodium chloride\b|\bno (?:intervention|treatment)\b")
_GENERIC_WORDS = _words(
    """
    chemotherapy chemotherapies chemo immunotherapy immunotherapies radiotherapy radiation
    irradiation radiochemotherapy chemoradiotherapy chemoradiation therapy therapies therapeutic
    treatment treatments regimen regimens care standard soc best supportive usual physician
    physicians investigator investigators choice conventional medicine medicines medication
    medications drug drugs agent agents other others study herbal traditional antibiotic
    antibiotics pharmacological systemic targeted target intrathecal cytotoxic doublet triplet
    platinum-based based immune checkpoint inhibitor inhibitors blocker blockers agonist agonists
    antagonist antagonists angiogenesis anti-angiogenic antiangiogenic tyrosine kinase tki tkis
    ici icis hormone hormonal endocrine antibody antibodies monoclonal biologic biological
    biologics control none intervention observation active surveillance patient patients mrd of
    with without plus only alone according per protocol as clinical practice routine single
    multiple first-line second-line line approved local institutional guidelines cell cells car
    car-t cart car-nk tcr-t til nk t chimeric antigen receptor autologous allogeneic donor
    modified engineered phase part stage period in at by to from determined corticosteroid
    corticosteroids steroid steroids
    """
)
_GENERIC_TOKEN = re.compile(
    r"(?:anti-?)?(?:pd-?l?1|ctla-?4|vegfr?|egfr|her2|alk|ros1|braf|mek|parp|cdk4|lag-?3|tigit)"
    r"(?:-(?:tki|tkis|inhibitors?|antibody|antibodies|mab|mabs))?"
)
_CLASS_WORDS = _words(
    """
    inhibitor inhibitors agonist agonists antagonist antagonists blocker blockers modulator
    modulators analogue analogues analog analogs activator activators
    """
)
_NON_DRUG_WORDS = _words(
    """
    sample samples sampling test tests testing biopsy biopsies sequencing analysis analyses
    imaging scan scans assessment assessments questionnaire survey procedure surgery surgical
    resection device devices transplant transplantation exercise counseling counselling education
    diet program programme training massage acupuncture collection blood plasma urine evaluation
    monitoring phenotyping cytometry ultrasound mri ecg interview system implant stent catheter
    brace
    """
)

PLACEBO_REASON = "placebo or control"
GENERIC_REASON = "generic therapy class, not a named drug"
PROCEDURE_REASON = "test, procedure or device, not a drug"
ATC_REASON = "ATC classification code"


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text.translate(_MARKS)).casefold().translate(_GREEK)
    text = _TM_WORD.sub(f" {BRAND_MARK} ", _DASHES.sub("-", text))
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


def _remove_doses(text: str) -> str:
    for pattern in (_SCIENTIFIC, _DOSE, _RATIO, _PHRASES):
        text = pattern.sub(" ", text)
    return text


def _extract_brackets(text: str) -> tuple[str, list[str]]:
    inner: list[str] = []
    while match := _BRACKETED.search(text):
        inner.append(match.group(1))
        text = f"{text[: match.start()]} {text[match.end() :]}"
    return _STRAY_BRACKET.sub(" ", text), inner


def _prepare(raw: str) -> str:
    text = _remove_doses(_fold(raw))
    text = _CD_MARKER_PLUS.sub(r"\1 ", text)
    return _TRAILING_PLUS.sub("", text)


def _tokens(fragment: str) -> list[str]:
    text = _PUNCTUATION.sub(" ", _APOSTROPHES.sub("", fragment.replace(BRAND_MARK, " ")))
    text = _LOOSE_HYPHEN.sub("-", _FREE_HYPHEN.sub(" ", text))
    return [token.strip("-") for token in text.split() if token.strip("-")]


def _is_generic(token: str) -> bool:
    return (
        token in _GENERIC_WORDS
        or token.isdigit()
        or bool(_GENERIC_TOKEN.fullmatch(token))
        or (token.startswith("anti-") and "car" not in token)
    )


def _exclusion(tokens: list[str]) -> str | None:
    if len(tokens) == 1 and _ATC_CODE.fullmatch(tokens[0]):
        return ATC_REASON
    if all(_is_generic(token) for token in tokens):
        return GENERIC_REASON
    has_stem = any(map(_word_class, tokens))
    if tokens[-1].rsplit("-", 1)[-1] in _CLASS_WORDS and not has_stem:
        return GENERIC_REASON  # a class descriptor such as "… receptor antagonist"
    if _NON_DRUG_WORDS.intersection(tokens) and not has_stem:
        return PROCEDURE_REASON
    return None


def _is_placebo(tokens: list[str]) -> bool:
    return bool(_PLACEBO_WORDS.intersection(tokens) or _PLACEBO_PHRASES.search(" ".join(tokens)))


def _before_purpose(tokens: list[str]) -> list[str]:
    """Drop a purpose clause: "X for injection", "X for squamous cell carcinoma" → "X"."""
    return tokens[: tokens.index("for", 1)] if "for" in tokens[1:] else tokens


def _strip_salts(tokens: list[str]) -> list[str]:
    while len(tokens) > 1 and tokens[-1] in _SALTS:
        tokens = tokens[:-1]
    return tokens


def _canonical_code(name: str) -> str:
    match = _CODE.fullmatch(name)
    return f"{match[1]}-{match[2]}" if match else name


def _fragment(fragment: str) -> Normalized | None:
    """Normalize one name fragment; None when nothing is left of it (only doses or routes)."""
    raw = fragment.replace(BRAND_MARK, "").strip()
    all_tokens = _tokens(fragment)
    if _is_placebo(all_tokens):
        return Normalized(raw, None, PLACEBO_REASON)
    head = _before_purpose(all_tokens)
    tokens = _strip_salts([token for token in head if token not in _NOISE])
    if not tokens:
        generic = bool(head) and all(_is_generic(token) for token in head)
        return Normalized(raw, None, GENERIC_REASON) if generic else None
    reason = _exclusion(tokens)
    if reason:
        return Normalized(raw, None, reason)
    return Normalized(raw, _canonical_code(" ".join(tokens)), branded=BRAND_MARK in fragment)


def normalize_name(raw: str) -> Normalized:
    """Normalize one drug name (no combination splitting; parenthetical text is dropped)."""
    outer, _ = _extract_brackets(_prepare(raw))
    return _fragment(outer) or Normalized(raw, None, "no drug name left after normalization")


def parse_name(raw: str) -> ParsedName:
    """Split an intervention name into combination components and parenthetical aliases."""
    outer, inner = _extract_brackets(_prepare(raw))
    components = _fragments(_COMBINATION_SEPARATOR.split(outer))
    aliases = [alias for text in inner for alias in _list_names(text)]
    return ParsedName(tuple(components), tuple(aliases))


def _fragments(parts: Iterable[str]) -> list[Normalized]:
    return [found for part in parts if (found := _fragment(part)) is not None]


def _list_names(text: str) -> list[Normalized]:
    """Drug names in a list of synonyms ("A, B and C"); excluded entries are dropped."""
    separator = _LIST_SEPARATOR_WITH_CONJUNCTIONS if re.search(r"[,;]", text) else _LIST_SEPARATOR
    return [found for found in _fragments(separator.split(text)) if found.name]


def _other_names(raw: str) -> list[Normalized]:
    text = _prepare(raw)
    if _REGIMEN_MARKERS.search(text):
        return []  # describes a regimen, not another name of the drug
    return _list_names(_STRAY_BRACKET.sub(",", text))


# --------------------------------------------------------------------------------------------
# Classification by stem
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stem:
    suffix: str
    modality: str
    mechanism: str | None = None
    target: str | None = None
    confidence: str = "high"


def _small(
    suffix: str, mechanism: str, target: str | None = None, confidence: str = "high"
) -> _Stem:
    return _Stem(suffix, SMALL_MOLECULE, mechanism, target, confidence)


_KINASE = "kinase inhibitor"
_ALKYLATING = "alkylating agent"
_NUCLEOSIDE = "nucleoside antimetabolite"
_ANTIFOLATE = "antifolate"
_GNRH_ANTAGONIST = "GnRH antagonist"
_AROMATASE = "aromatase inhibitor"
_CORTICOSTEROID = "corticosteroid"

STEMS: tuple[_Stem, ...] = (
    # Kinase inhibitors; sub-stems name the target.
    _small("tinib", _KINASE),
    _small("anib", _KINASE, "VEGFR (angiogenesis)", "medium"),
    _small("rafenib", "BRAF inhibitor", "BRAF"),
    _small("metinib", "MEK inhibitor", "MEK"),
    _small("brutinib", "BTK inhibitor", "BTK"),
    _small("citinib", "JAK inhibitor", "JAK"),
    _small("lisib", "PI3K inhibitor", "PI3K"),
    _small("sertib", _KINASE, "serine/threonine kinase"),
    _small("staurin", _KINASE, None, "medium"),
    # -ciclib covers all CDK inhibitors; the approved ones are CDK4/6.
    _small("ciclib", "CDK4/6 inhibitor", "CDK4/6", "medium"),
    _small("rasib", "RAS inhibitor", "KRAS"),
    _small("parib", "PARP inhibitor", "PARP"),
    _small("degib", "hedgehog pathway inhibitor", "SMO"),
    _small("zomib", "proteasome inhibitor", "proteasome"),
    _small("clax", "BCL-2 inhibitor", "BCL-2"),
    _small("sidenib", "IDH inhibitor", "IDH", "medium"),
    _small("menib", "menin inhibitor", "menin", "medium"),
    _small("rolimus", "mTOR inhibitor", "mTOR"),
    _small("crolimus", "calcineurin inhibitor", "calcineurin", "medium"),
    _small("domide", "cereblon modulator", "cereblon", "medium"),
    _small("stat", "enzyme inhibitor", None, "low"),
    _small("dostat", "IDO inhibitor", "IDO1"),
    _small("inostat", "HDAC inhibitor", "HDAC"),
    _small("metostat", "EZH2 inhibitor", "EZH2", "medium"),
    _small("demstat", "LSD1 inhibitor", "LSD1", "medium"),
    # Hormonal therapy.
    _small("lutamide", "androgen receptor antagonist", "AR"),
    _small("terone", "antiandrogen", None, "medium"),
    _small("strant", "estrogen receptor degrader", "ER"),
    _small("ifen", "selective estrogen receptor modulator", "ER", "medium"),
    _small("ifene", "selective estrogen receptor modulator", "ER", "medium"),
    _small("rozole", _AROMATASE, "aromatase"),
    _small("mestane", _AROMATASE, "aromatase"),
    _small("golix", _GNRH_ANTAGONIST, "GnRH receptor"),
    _Stem("relix", PEPTIDE, _GNRH_ANTAGONIST, "GnRH receptor"),
    _Stem("relin", PEPTIDE, "GnRH agonist", "GnRH receptor", "medium"),
    _Stem("reotide", PEPTIDE, "somatostatin analogue", "SSTR"),
    # Cytotoxics.
    _small("platin", "platinum compound"),
    _small("taxel", "taxane", "tubulin"),
    _small("pilone", "epothilone", "tubulin"),
    _small("bulin", "microtubule inhibitor", "tubulin", "medium"),
    _small("rubicin", "anthracycline", "topoisomerase II"),
    _small("antrone", "topoisomerase II inhibitor", "topoisomerase II", "medium"),
    _small("poside", "topoisomerase II inhibitor", "topoisomerase II"),
    _small("tecan", "topoisomerase I inhibitor", "topoisomerase I"),
    _small("citabine", _NUCLEOSIDE),
    _small("arabine", _NUCLEOSIDE),
    _small("ribine", _NUCLEOSIDE),
    _small("citidine", _NUCLEOSIDE),
    _small("uridine", _NUCLEOSIDE),
    _small("uracil", "antimetabolite", None, "medium"),
    _small("trexed", _ANTIFOLATE),
    _small("trexate", _ANTIFOLATE),
    _small("mustine", _ALKYLATING),
    _small("fosfamide", _ALKYLATING),
    _small("phosphamide", _ALKYLATING),
    _small("sulfan", _ALKYLATING),
    _small("tepa", _ALKYLATING, None, "medium"),
    _small("zolomide", _ALKYLATING),
    _small("bazine", _ALKYLATING, None, "medium"),
    _small("mycin", "antitumour antibiotic", None, "low"),
    _small("tinoin", "retinoid", "RAR", "medium"),
    _small("arotene", "retinoid", "RXR", "medium"),
    # Supportive care.
    _small("dronic", "bisphosphonate"),
    _small("dronate", "bisphosphonate"),
    _small("methasone", _CORTICOSTEROID),
    _small("nisone", _CORTICOSTEROID),
    _small("nisolone", _CORTICOSTEROID),
    _small("cortisone", _CORTICOSTEROID),
    _small("casone", _CORTICOSTEROID),
    _small("metasone", _CORTICOSTEROID),
    _small("imod", "immunomodulator", None, "low"),
    # Antibodies of the 2021 INN scheme (-mab has its own infix analysis).
    _Stem("tug", MONOCLONAL_ANTIBODY, None, None, "medium"),
    _Stem("bart", MONOCLONAL_ANTIBODY, None, None, "medium"),
    _Stem("mig", BISPECIFIC_ANTIBODY, None, None, "medium"),
    _Stem("ment", MONOCLONAL_ANTIBODY, "antibody fragment", None, "low"),
    # Other biologics.
    _Stem("cept", FUSION_PROTEIN, "receptor fusion protein"),
    _Stem("fusp", FUSION_PROTEIN, "immunotherapeutic fusion protein"),
    _Stem("kin", CYTOKINE, "interleukin", None, "medium"),
    _Stem("leukin", CYTOKINE, "interleukin"),
    _Stem("ermin", CYTOKINE, "growth factor", None, "medium"),
    _Stem("grastim", CYTOKINE, "granulocyte colony-stimulating factor", "G-CSF receptor"),
    _Stem("gramostim", CYTOKINE, "GM-CSF", "GM-CSF receptor"),
    _Stem("poetin", CYTOKINE, "erythropoietin", "EPO receptor"),
    _Stem("ase", ENZYME, None, None, "medium"),
    _Stem("tide", PEPTIDE, None, None, "medium"),
    _Stem("pimut", VACCINE, "peptide vaccine"),
    _Stem("motide", VACCINE, "peptide vaccine", None, "medium"),
    _Stem("rsen", OLIGONUCLEOTIDE, "antisense oligonucleotide"),
    _Stem("siran", OLIGONUCLEOTIDE, "small interfering RNA"),
    # -cel only with its cell-type infix: brand names end in a bare "-cel" too.
    _Stem("leucel", CELL_THERAPY, "leukocytes"),
    _Stem("temcel", CELL_THERAPY, "stem cells"),
    _Stem("strocel", CELL_THERAPY, "stromal cells", None, "medium"),
    _Stem("dencel", CELL_THERAPY, "dendritic cells", None, "medium"),
    _Stem("tucel", CELL_THERAPY, "tumour cells", None, "medium"),
    _Stem("gene", GENE_THERAPY, None, None, "medium"),
    _Stem("vec", GENE_THERAPY, "viral vector"),
    _Stem("repvec", GENE_THERAPY, "oncolytic virus"),
)
_STEMS_LONGEST_FIRST = tuple(sorted(STEMS, key=lambda stem: -len(stem.suffix)))


def _min_prefix(suffix: str) -> int:
    """Letters a word needs before a stem: short stems also end everyday words."""
    if len(suffix) <= 4:
        return 3
    return 2 if len(suffix) <= 6 else 1


# Everyday words that end in a stem.
_ENGLISH_WORDS = _words(
    """
    increase decrease release disease database purchase showcase staircase briefcase suitcase
    napkin pumpkin bumpkin lambskin sheepskin buckskin peptide polypeptide dipeptide
    nucleotide oligonucleotide oncogene transgene thermostat rheostat hemostat concept intercept
    treatment management supplement assessment enrollment measurement environment equipment
    experiment instrument improvement development replacement adjustment placement involvement
    department requirement statement agreement employment impairment fragment sediment document
    pigment segment element argument ointment complement implement payment movement alignment
    commitment appointment government investment recruitment debridement engagement enhancement
    """
)
_NOT_STEM_ENDINGS = ("globulin",)

# -mab infixes: source (-xi- chimeric, -zu- humanized, -u- human, -o- mouse, …) and target class.
_SOURCE_INFIXES = ("xizumab", "ximab", "zumab", "umab", "omab", "amab", "emab", "imab", "mab")
_TARGET_INFIXES: tuple[tuple[str, str], ...] = tuple(
    sorted(
        (
            ("lim", "immunomodulating"),
            ("li", "immunomodulating"),
            ("l", "immunomodulating"),  # -l(i)- before a vowel
            ("tum", "tumour-targeting"),
            ("tuz", "tumour-targeting"),
            ("tu", "tumour-targeting"),
            ("ta", "tumour-targeting"),
            ("cir", "circulatory-system-targeting"),
            ("ci", "circulatory-system-targeting"),
            ("kin", "interleukin-targeting"),
            ("ki", "interleukin-targeting"),
            ("os", "bone-targeting"),
            ("gros", "growth-factor-targeting"),
            ("gro", "growth-factor-targeting"),
            ("ner", "nervous-system-targeting"),
            ("neu", "nervous-system-targeting"),
            ("ne", "nervous-system-targeting"),
            ("vir", "antiviral"),
            ("vi", "antiviral"),
            ("bac", "antibacterial"),
            ("ba", "antibacterial"),
            ("fung", "antifungal"),
            ("toxa", "toxin-targeting"),
            ("tox", "toxin-targeting"),
            ("les", "inflammatory-lesion-targeting"),
            ("ami", "amyloid-targeting"),
        ),
        key=lambda pair: -len(pair[0]),
    )
)

# ADC second words, by payload suffix.
_PAYLOADS: tuple[tuple[str, str], ...] = (
    ("dotin", "auristatin payload"),
    ("tansine", "maytansinoid payload"),
    ("tecan", "topoisomerase I inhibitor payload"),
    ("micin", "calicheamicin payload"),
    ("irine", "pyrrolobenzodiazepine payload"),
    ("carmazine", "duocarmycin payload"),
    ("dotox", "immunotoxin"),
)

# Therapeutic and imaging radionuclides: (symbol, element, mass numbers).
_NUCLIDES: tuple[tuple[str, str, str], ...] = (
    ("lu", "lutetium", "177"),
    ("y", "yttrium", "90"),
    ("ac", "actinium", "225"),
    ("ra", "radium", "223|224"),
    ("th", "thorium", "227"),
    ("pb", "lead", "212|203"),
    ("bi", "bismuth", "213"),
    ("at", "astatine", "211"),
    ("i", "iodine", "131|125|124|123"),
    ("sm", "samarium", "153"),
    ("sr", "strontium", "89"),
    ("ho", "holmium", "166"),
    ("re", "rhenium", "186|188"),
    ("tb", "terbium", "161"),
    ("cu", "copper", "64|67"),
    ("ga", "gallium", "68"),
    ("f", "fluorine", "18"),
    ("tc", "technetium", "99m"),
    ("in", "indium", "111"),
    ("zr", "zirconium", "89"),
)
_RADIONUCLIDE = re.compile(
    "|".join(
        rf"\b(?:{symbol}|{element})\s*-?\s*(?:{mass})\b|\b(?:{mass})\s*-?\s*(?:{symbol}|{element})\b"
        for symbol, element, mass in _NUCLIDES
    )
)
_CAR_GENE = "cabtagene"  # first word of CAR-T INNs ("<x>cabtagene <y>leucel")
_VINCA = re.compile(r"vin[a-z]{3,}ine")
_TRAILING_LETTER = re.compile(r"(?<=[a-z]{4})-[a-z]$")
_CELL_THERAPY = re.compile(
    r"\bcar[\s-]?(?:t|nk|m)\b|\bcart\d*\b|\bcar\d+|\bcar\b|\bchimeric antigen receptor\b"
    r"|\b(?:t|nk|til|cik|dendritic|stem|tcr-t|car-t)[\s-]cells?\b"
)
_CAR = re.compile(r"\bcar|\bchimeric antigen receptor\b")
_VACCINE = re.compile(r"\bvaccines?\b")
_INTERFERON = re.compile(r"\b(?:peg)?interferons?\b")
_BISPECIFIC = re.compile(r"\bbispecific\b")


def classify(name: str) -> DrugClass | None:
    """The class a drug's name implies by its INN/USAN stem, or None when no rule applies."""
    folded = _remove_doses(_fold(name))
    if _RADIONUCLIDE.search(folded):
        return _radioligand(folded)
    normalized = normalize_name(name)
    if normalized.reason == PLACEBO_REASON:
        return None
    # A generic entry is no entity, but its words may still name a class ("CAR-T cells").
    text = normalized.name or " ".join(_tokens(folded))
    words = text.split()
    found = _conjugate(words) or _keyword_class(text) or _rightmost_word_class(words)
    if found and found.modality == CELL_THERAPY and any(w.endswith(_CAR_GENE) for w in words):
        return replace(found, mechanism="CAR-T")
    return found


def _radioligand(text: str) -> DrugClass:
    antibody = any(_is_antibody_word(word) for word in _tokens(text))
    mechanism = "radioimmunoconjugate" if antibody else "targeted radionuclide therapy"
    target = "PSMA" if re.search(r"\bpsma\b", text) else None
    return DrugClass(RADIOLIGAND, mechanism, target, "radionuclide", "high")


def _conjugate(words: list[str]) -> DrugClass | None:
    if not any(_is_antibody_word(word) for word in words):
        return None
    for word in words:
        for suffix, payload in _PAYLOADS:
            if word.endswith(suffix) and len(word) >= len(suffix) + 2:
                return DrugClass(ANTIBODY_DRUG_CONJUGATE, payload, None, f"-mab -{suffix}", "high")
    if any(_BISPECIFIC.search(word) for word in words):
        return DrugClass(BISPECIFIC_ANTIBODY, None, None, "bispecific", "medium")
    return None


def _keyword_class(name: str) -> DrugClass | None:
    if _VACCINE.search(name):
        return DrugClass(VACCINE, None, None, "vaccine", "medium")
    if _CELL_THERAPY.search(name):
        mechanism = "CAR-T" if _CAR.search(name) else None
        return DrugClass(CELL_THERAPY, mechanism, None, "cells", "medium")
    if _INTERFERON.search(name):
        return DrugClass(CYTOKINE, "interferon", None, "interferon", "high")
    return None


def _rightmost_word_class(words: list[str]) -> DrugClass | None:
    # Right to left: the last word carries the stem ("<x>cabtagene <y>leucel"); modifiers such
    # as "pegol" or "alfa" carry none.
    for word in reversed(words):
        found = _word_class(word)
        if found:
            return found
    return None


def _is_antibody_word(word: str) -> bool:
    found = _word_class(word)
    return found is not None and found.modality in (MONOCLONAL_ANTIBODY, BISPECIFIC_ANTIBODY)


@lru_cache(maxsize=65536)
def _word_class(word: str) -> DrugClass | None:
    if any(char.isdigit() for char in word):
        return None  # code names carry no stem
    found = _stem_class(_TRAILING_LETTER.sub("", word))
    if found is None and "-" in word:
        found = _stem_class(word.rsplit("-", 1)[1])
    return found


def _stem_class(word: str) -> DrugClass | None:
    if word in _ENGLISH_WORDS:
        return None
    if word.endswith(_NOT_STEM_ENDINGS):
        return None
    if word.endswith("mab") and len(word) >= len("mab") + _min_prefix("mab"):
        return _antibody(word)
    for stem in _STEMS_LONGEST_FIRST:
        if word.endswith(stem.suffix) and len(word) >= len(stem.suffix) + _min_prefix(stem.suffix):
            return DrugClass(
                stem.modality, stem.mechanism, stem.target, f"-{stem.suffix}", stem.confidence
            )
    if _VINCA.fullmatch(word):
        return DrugClass(SMALL_MOLECULE, "vinca alkaloid", "tubulin", "vin-…-ine", "medium")
    return None


def _antibody(word: str) -> DrugClass:
    for source in _SOURCE_INFIXES:
        if not word.endswith(source):
            continue
        body = word[: -len(source)]
        for infix, mechanism in _TARGET_INFIXES:
            if body.endswith(infix) and len(body) >= len(infix) + 2:
                return DrugClass(MONOCLONAL_ANTIBODY, mechanism, None, f"-{infix}{source}", "high")
    return DrugClass(MONOCLONAL_ANTIBODY, None, None, "-mab", "medium")


def _stem_words(name: str) -> frozenset[str]:
    """The words of a name that carry an INN stem: what makes two names different drugs."""
    return frozenset(word for word in name.split() if _word_class(word) is not None)


def _is_inn(name: str) -> bool:
    """Every word carries a stem: an INN, not a phrase that mentions one."""
    return all(_word_class(word) for word in name.split())


def _is_code(name: str) -> bool:
    return (
        re.fullmatch(r"[a-z0-9-]+", name) is not None
        and re.search(r"\d", name) is not None
        and re.search(r"[a-z]", name) is not None
    )


# --------------------------------------------------------------------------------------------
# Slugs
# --------------------------------------------------------------------------------------------


def _digest(text: str, salt: int = 0) -> str:
    payload = f"{text}\x00{salt}" if salt else text
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_LENGTH]


def _with_suffix(base: str, suffix: str) -> str:
    return f"{base[: SLUG_MAX_LENGTH - len(suffix) - 1].rstrip('-')}-{suffix}"


def slug(name: str) -> str:
    """A Dagster-partition-safe key for a name: `[a-z0-9-]`, at most 120 characters, no leading,
    trailing or doubled hyphen; names with no ASCII letter or digit get `drug-<hash>`."""
    ascii_text = unicodedata.normalize("NFKD", _fold(name)).encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if not base:
        return f"drug-{_digest(name)}"
    if len(base) > SLUG_MAX_LENGTH:
        return _with_suffix(base, _digest(name))
    return base


def unique_keys(names: Iterable[str]) -> dict[str, str]:
    """Distinct slugs for distinct names. When names share a slug, the name that is its own slug
    (else the first in sorted order) keeps it and the others get `-<hash of the name>`."""
    by_slug: dict[str, list[str]] = defaultdict(list)
    for name in sorted(set(names)):
        by_slug[slug(name)].append(name)
    used = set(by_slug)
    keys: dict[str, str] = {}
    for base, group in sorted(by_slug.items()):
        keeper = next((name for name in group if name == base), group[0])
        keys[keeper] = base
        for name in group:
            if name != keeper:
                keys[name] = _suffixed_key(base, name, used)
    return keys


def _suffixed_key(base: str, name: str, used: set[str]) -> str:
    salt = 0
    while (key := _with_suffix(base, _digest(name, salt))) in used:
        salt += 1
    used.add(key)
    return key


# --------------------------------------------------------------------------------------------
# Clustering
# --------------------------------------------------------------------------------------------


class _Group(NamedTuple):
    """Names one intervention says are the same drug; `named` when the first one is the name the
    intervention is called by (not only one of its other names)."""

    names: tuple[str, ...]
    named: bool


@dataclass
class _Mentions:
    named: int = 0
    branded: bool = False


def _kind(intervention_type: str) -> str:
    return intervention_type.strip().upper().replace(" ", "_")


def _admissible(kind: str, name: str) -> bool:
    if kind in DRUG_TYPES:
        return True
    found = classify(name)
    if kind in EVIDENCE_TYPES:
        return found is not None or _is_code(name)
    return kind == RADIATION_TYPE and found is not None and found.modality == RADIOLIGAND


def _distinct_stems(names: Iterable[str]) -> int:
    return len({stems for name in names if (stems := _stem_words(name))})


def _groups(intervention: Intervention) -> tuple[list[_Group], list[Normalized]]:
    """The intervention's groups of names to join, and every normalized name it mentions."""
    kind = _kind(intervention.type)
    if kind not in DRUG_TYPES | EVIDENCE_TYPES | {RADIATION_TYPE}:
        return [], []
    parsed = parse_name(intervention.name)
    if [c.reason for c in parsed.components] == [PLACEBO_REASON]:
        return [], []  # its other names say what the placebo matches
    drugs = [c for c in parsed.components if c.name and _admissible(kind, c.name)]
    others = [
        found
        for raw in intervention.other_names
        for found in _other_names(raw)
        if found.name and _admissible(kind, found.name)
    ]
    extra = [*(a for a in parsed.aliases if a.name and _admissible(kind, a.name)), *others]
    mentioned = [*drugs, *extra]
    names = [str(found.name) for found in mentioned]
    if len(parsed.components) == 1 and drugs and _distinct_stems(names) <= 1:
        return [_Group(tuple(dict.fromkeys(names)), named=True)], mentioned
    lone = [_Group((str(d.name),), named=True) for d in drugs]
    # Unjoined other names still count when they are an INN.
    lone += [_Group((str(e.name),), named=False) for e in extra if _is_inn(str(e.name))]
    return lone, mentioned


class _Clusters:
    """Union-find over names that never puts two different INN stems into one cluster."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._stems: dict[str, frozenset[str]] = {}

    def add(self, name: str) -> None:
        if name not in self._parent:
            self._parent[name] = name
            self._stems[name] = _stem_words(name)

    def find(self, name: str) -> str:
        while self._parent[name] != name:
            self._parent[name] = self._parent[self._parent[name]]
            name = self._parent[name]
        return name

    def join(self, anchor: str, name: str) -> None:
        root = self.find(anchor)
        other = self.find(name) if name in self._parent else None
        stems = self._stems[other] if other else _stem_words(name)
        if root == other or (self._stems[root] and stems and self._stems[root] != stems):
            return
        self.add(name)
        other = self.find(name)
        keep, merge = sorted((root, other))
        self._parent[merge] = keep
        self._stems[keep] = self._stems[keep] or self._stems[merge]

    def members(self) -> dict[str, list[str]]:
        clusters: dict[str, list[str]] = defaultdict(list)
        for name in self._parent:
            clusters[self.find(name)].append(name)
        return clusters


def _rank(name: str, mentions: _Mentions) -> tuple[int, int, int, int, str]:
    """Sort key of a cluster's candidate names: INN-like, then plain names, brands, codes."""
    if _stem_words(name) and not mentions.branded and not _is_code(name):
        tier = 0
    elif re.search(r"\d", name):
        tier = 3
    else:
        tier = 2 if mentions.branded else 1
    return tier, -mentions.named, len(name.split()), len(name), name


def drug_entities(interventions: Iterable[Intervention]) -> list[DrugEntity]:
    """Canonical drug entities from interventions, sorted by key; the same set of interventions
    gives the same entities whatever their order."""
    groups: set[_Group] = set()
    mentions: dict[str, _Mentions] = defaultdict(_Mentions)
    for intervention in interventions:
        found_groups, mentioned = _groups(intervention)
        groups.update(found_groups)
        for found in mentioned:
            mentions[str(found.name)].branded |= found.branded
        for group in found_groups:
            if group.named:
                mentions[group.names[0]].named += 1
    clusters = _Clusters()
    for group in sorted(groups):
        clusters.add(group.names[0])
        for name in group.names[1:]:
            clusters.join(group.names[0], name)
    canonical = {
        min(members, key=lambda name: _rank(name, mentions[name])): members
        for members in clusters.members().values()
    }
    keys = unique_keys(canonical)
    entities = (
        DrugEntity(keys[name], name, tuple(sorted(set(members) - {name})))
        for name, members in canonical.items()
    )
    return sorted(entities, key=lambda entity: entity.key)


def interventions_from_study(study: Mapping[str, Any]) -> Iterator[Intervention]:
    """The interventions of a ClinicalTrials.gov API v2 study record."""
    section = study.get("protocolSection") or {}
    module = section.get("armsInterventionsModule") or {}
    for item in module.get("interventions") or ():
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            other_names = [name for name in item.get("otherNames") or () if isinstance(name, str)]
            yield Intervention(str(item.get("type") or ""), item["name"], tuple(other_names))
