"""Sponsors: a normalized name and key per organisation, and its class by rules (the registry's
agency class first, then words in the name)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bioloupe_data.enrichment.drugs import slug

SPONSOR_CLASSES = ("industry", "academic", "cooperative group", "government", "other")
# Legal-form words that do not tell two organisations apart.
_LEGAL_FORMS = re.compile(
    r"\b(inc|incorporated|ltd|limited|llc|l\.l\.c|plc|co|corp|corporation|company|gmbh|ag|sa|"
    r"s\.a|s\.p\.a|spa|sas|srl|bv|b\.v|nv|n\.v|kk|k\.k|pty|oy|ab|as|a/s|se)\b\.?",
    re.IGNORECASE,
)
_COOPERATIVE = re.compile(
    r"\b(group|groups|consortium|alliance|network|cooperative|collaborative|intergroup|"
    r"nrg|swog|ecog|acrin|eortc|gog|cog|jcog|alliance)\b",
    re.IGNORECASE,
)
_ACADEMIC = re.compile(
    r"\b(university|universit\w*|universidad|universidade|hospital|hopital|hôpital|klinikum|"
    r"clinic|clinica|institute|institut\w*|college|school|centre|center|medical|"
    r"foundation|fondazione|fundación|academy|health system|healthcare)\b",
    re.IGNORECASE,
)
_GOVERNMENT = re.compile(
    r"\b(national cancer institute|ministry|department of|agency|government|nih|"
    r"veterans affairs|public health)\b",
    re.IGNORECASE,
)
_AGENCY_CLASSES = {
    "INDUSTRY": "industry",
    "NIH": "government",
    "FED": "government",
    "OTHER_GOV": "government",
    "NETWORK": "cooperative group",
}


@dataclass(frozen=True, slots=True)
class SponsorProfile:
    key: str
    normalized_name: str
    sponsor_class: str


def normalize_sponsor_name(name: str) -> str:
    """The name without legal-form words, punctuation noise or case differences."""
    text = unicodedata.normalize("NFKC", name).strip()
    text = _LEGAL_FORMS.sub(" ", text)
    text = re.sub(r"[,.;:]+", " ", text)
    text = re.sub(r"\s+", " ", text).strip(" -&")
    return text or name.strip()


def sponsor_key(name: str) -> str:
    return slug(normalize_sponsor_name(name).casefold())


def classify_sponsor(name: str, agency_class: str | None) -> SponsorProfile:
    """Industry / academic / cooperative group / government / other.

    The registry's agency class decides where it is specific (INDUSTRY, NIH, FED, OTHER_GOV,
    NETWORK); its catch-all OTHER is refined by words in the name.
    """
    normalized = normalize_sponsor_name(name)
    known = _AGENCY_CLASSES.get((agency_class or "").upper())
    if known:
        sponsor_class = known
    elif _GOVERNMENT.search(normalized):
        sponsor_class = "government"
    elif _COOPERATIVE.search(normalized):
        sponsor_class = "cooperative group"
    elif _ACADEMIC.search(normalized):
        sponsor_class = "academic"
    else:
        sponsor_class = "other"
    return SponsorProfile(sponsor_key(name), normalized, sponsor_class)
