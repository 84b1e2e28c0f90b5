"""Sponsor names and classes by rules."""

import pytest

from bioloupe_data.enrichment.sponsors import (
    classify_sponsor,
    normalize_sponsor_name,
    sponsor_key,
)


@pytest.mark.parametrize(
    ("name", "agency_class", "expected"),
    [
        ("Merck Sharp & Dohme LLC", "INDUSTRY", "industry"),
        ("National Cancer Institute (NCI)", "NIH", "government"),
        ("NRG Oncology", "NETWORK", "cooperative group"),
        ("Children's Oncology Group", "OTHER", "cooperative group"),
        ("M.D. Anderson Cancer Center", "OTHER", "academic"),
        ("Peking University", "OTHER", "academic"),
        ("Ministry of Health, Brazil", "OTHER_GOV", "government"),
        ("Ministry of Health, Israel", "OTHER", "government"),
        ("John Smith", "INDIV", "other"),
        ("Acme Biotech", None, "other"),
    ],
)
def test_sponsor_class_from_the_agency_class_then_the_name(
    name: str, agency_class: str | None, expected: str
) -> None:
    assert classify_sponsor(name, agency_class).sponsor_class == expected


def test_legal_forms_and_punctuation_do_not_make_two_sponsors() -> None:
    assert normalize_sponsor_name("Pfizer Inc.") == "Pfizer"
    assert sponsor_key("Pfizer Inc.") == sponsor_key("PFIZER") == sponsor_key("Pfizer, Inc")
    assert sponsor_key("AstraZeneca AB") == sponsor_key("AstraZeneca")
    assert sponsor_key("Novartis Pharmaceuticals") != sponsor_key("Novartis")  # a real difference


def test_sponsor_keys_are_partition_safe() -> None:
    for name in ("Hôpital Saint-Louis / AP-HP", "Sun Yat-sen University, Guangzhou [China]"):
        key = sponsor_key(name)
        assert key and all(c.isascii() and (c.isalnum() or c == "-") for c in key)
        assert key == key.lower()
