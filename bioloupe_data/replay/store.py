"""In-memory index of ClinicalTrials.gov v2 study records read from a folder.

Any ``*.json`` file below the folder is recognized by its content: a single study object (it has
``protocolSection``), an API page ``{"studies": [...]}``, or a JSON list of study objects.
Everything else (indexes, unparsable files) is skipped and counted. A file that is JSON but
not valid UTF-8 is read all the same, and its studies are served with the same invalid bytes.

Like the real API, the store serves one version per NCT id: the newest by
(``lastUpdatePostDate``, ``versionHolder``, canonical JSON bytes). The last key only makes the
choice independent of the order in which files are found.

Each study is kept as the bytes of its JSON serialization so that pages are built by joining
bytes, without re-serializing anything per request. A PubMed article store can live beside
this one as a separate class with the same ``from_folder`` / ``reload`` / ``len`` surface.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

# A study without lastUpdatePostDate sorts below every real date.
MISSING_DATE = ""
_SELECTION_CACHE_SIZE = 32


class StudyOrder(Enum):
    BY_NCT_ID = "nct_id"
    LAST_UPDATE_ASC = "last_update_asc"
    LAST_UPDATE_DESC = "last_update_desc"


@dataclass(frozen=True, slots=True)
class DateRange:
    """Inclusive range of ``YYYY-MM-DD`` days; ``None`` means open (``MIN`` / ``MAX``)."""

    first: str | None = None
    last: str | None = None


@dataclass(frozen=True, slots=True)
class StudyQuery:
    """What to select and in which order.

    Terms are lower-case substrings; a study matches a non-empty term tuple when any term
    occurs in the corresponding search text. Both tuples must match when both are given.
    """

    date_range: DateRange | None = None
    condition_terms: tuple[str, ...] = ()
    text_terms: tuple[str, ...] = ()
    order: StudyOrder = StudyOrder.BY_NCT_ID


@dataclass(frozen=True, slots=True)
class StoredStudy:
    nct_id: str
    last_update: str
    version_holder: str
    raw: bytes
    condition_text: str
    title_text: str

    def version_key(self) -> tuple[str, str]:
        return (self.last_update, self.version_holder)


@dataclass
class LoadCounts:
    files_read: int = 0
    skipped_files: int = 0
    skipped_studies: int = 0
    superseded_versions: int = 0


class _StudyIndex:
    """Immutable snapshot of one folder scan; reload swaps in a new one."""

    def __init__(self, studies: dict[str, StoredStudy], counts: LoadCounts) -> None:
        self.counts = counts
        self.by_nct_id: list[StoredStudy] = [studies[key] for key in sorted(studies)]
        dated = [study for study in self.by_nct_id if study.last_update != MISSING_DATE]
        self.undated: list[StoredStudy] = [
            study for study in self.by_nct_id if study.last_update == MISSING_DATE
        ]
        self.dated_asc: list[StoredStudy] = sorted(dated, key=lambda s: (s.last_update, s.nct_id))
        self.dated_asc_days: list[str] = [study.last_update for study in self.dated_asc]
        # Newest day first, but ties still by ascending NCT id (not simply the reversed list).
        self.dated_desc: list[StoredStudy] = sorted(
            sorted(dated, key=lambda s: s.nct_id), key=lambda s: s.last_update, reverse=True
        )
        self.max_version_holder: str | None = max(
            (study.version_holder for study in self.by_nct_id if study.version_holder),
            default=None,
        )
        self._cache: OrderedDict[StudyQuery, list[StoredStudy]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def select(self, query: StudyQuery) -> list[StoredStudy]:
        with self._cache_lock:
            cached = self._cache.get(query)
            if cached is not None:
                self._cache.move_to_end(query)
                return cached
        selection = self._compute_selection(query)
        with self._cache_lock:
            self._cache[query] = selection
            while len(self._cache) > _SELECTION_CACHE_SIZE:
                self._cache.popitem(last=False)
        return selection

    def _compute_selection(self, query: StudyQuery) -> list[StoredStudy]:
        ordered = self._ordered_candidates(query.date_range, query.order)
        if not query.condition_terms and not query.text_terms:
            return ordered
        return [study for study in ordered if _matches_terms(study, query)]

    def _ordered_candidates(
        self, date_range: DateRange | None, order: StudyOrder
    ) -> list[StoredStudy]:
        if date_range is None:
            if order is StudyOrder.LAST_UPDATE_ASC:
                return self.dated_asc + self.undated
            if order is StudyOrder.LAST_UPDATE_DESC:
                return self.dated_desc + self.undated
            return self.by_nct_id
        low, high = self._day_bounds(date_range)
        if order is StudyOrder.LAST_UPDATE_ASC:
            return self.dated_asc[low:high]
        if order is StudyOrder.LAST_UPDATE_DESC:
            # The same days form one block in the descending list, mirrored.
            total = len(self.dated_asc)
            return self.dated_desc[total - high : total - low]
        return sorted(self.dated_asc[low:high], key=lambda s: s.nct_id)

    def _day_bounds(self, date_range: DateRange) -> tuple[int, int]:
        days = self.dated_asc_days
        low = 0 if date_range.first is None else bisect.bisect_left(days, date_range.first)
        high = len(days) if date_range.last is None else bisect.bisect_right(days, date_range.last)
        return low, max(low, high)


def _matches_terms(study: StoredStudy, query: StudyQuery) -> bool:
    if query.condition_terms and not any(t in study.condition_text for t in query.condition_terms):
        return False
    return not query.text_terms or any(t in study.title_text for t in query.text_terms)


class StudyStore:
    """The newest version of every study found below ``folder``, indexed for paging."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._index = _scan_folder(folder)

    @classmethod
    def from_folder(cls, path: Path) -> StudyStore:
        return cls(Path(path))

    def reload(self) -> int:
        """Rescan the folder; requests already running keep the snapshot they started with."""
        self._index = _scan_folder(self.folder)
        return len(self)

    def select(self, query: StudyQuery) -> list[StoredStudy]:
        """Studies matching ``query`` in its order (cached per query; do not mutate)."""
        return self._index.select(query)

    def get(self, nct_id: str) -> StoredStudy | None:
        index = self._index
        position = bisect.bisect_left(index.by_nct_id, nct_id, key=lambda s: s.nct_id)
        if position < len(index.by_nct_id) and index.by_nct_id[position].nct_id == nct_id:
            return index.by_nct_id[position]
        return None

    def __len__(self) -> int:
        return len(self._index.by_nct_id)

    def __iter__(self) -> Iterator[StoredStudy]:
        return iter(self._index.by_nct_id)

    @property
    def max_version_holder(self) -> str | None:
        return self._index.max_version_holder

    @property
    def load_counts(self) -> LoadCounts:
        return self._index.counts

    @property
    def skipped_files(self) -> int:
        return self._index.counts.skipped_files

    @property
    def skipped_studies(self) -> int:
        return self._index.counts.skipped_studies


@dataclass
class _Collector:
    studies: dict[str, StoredStudy] = field(default_factory=dict)
    counts: LoadCounts = field(default_factory=LoadCounts)

    def add_file(self, path: Path) -> None:
        try:
            document = _load_json(path.read_bytes())
        except (OSError, ValueError):
            self.counts.skipped_files += 1
            return
        candidates = _study_candidates(document)
        if candidates is None:
            self.counts.skipped_files += 1
            return
        self.counts.files_read += 1
        for candidate in candidates:
            self.add_study(candidate)

    def add_study(self, candidate: Any) -> None:
        study = _stored_study(candidate) if _is_study(candidate) else None
        if study is None:
            self.counts.skipped_studies += 1
            return
        current = self.studies.get(study.nct_id)
        if current is None:
            self.studies[study.nct_id] = study
            return
        self.counts.superseded_versions += 1
        if _is_newer(study, current):
            self.studies[study.nct_id] = study


def _scan_folder(folder: Path) -> _StudyIndex:
    collector = _Collector()
    for path in _json_files(folder):
        collector.add_file(path)
    return _StudyIndex(collector.studies, collector.counts)


def _json_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*.json") if path.is_file())


def _is_study(candidate: Any) -> bool:
    return isinstance(candidate, dict) and isinstance(candidate.get("protocolSection"), dict)


def _study_candidates(document: Any) -> Sequence[Any] | None:
    """The study-like items of a file, or None when the file is not study data at all."""
    if _is_study(document):
        return [document]
    if isinstance(document, dict) and isinstance(document.get("studies"), list):
        return document["studies"]
    if isinstance(document, list) and any(_is_study(item) for item in document):
        return document
    return None


def _stored_study(study: dict[str, Any]) -> StoredStudy | None:
    protocol = study["protocolSection"]
    nct_id = _path(protocol, "identificationModule", "nctId")
    if not isinstance(nct_id, str) or not nct_id:
        return None
    last_update = _path(protocol, "statusModule", "lastUpdatePostDateStruct", "date")
    version_holder = _path(study, "derivedSection", "miscInfoModule", "versionHolder")
    return StoredStudy(
        nct_id=nct_id,
        last_update=last_update if isinstance(last_update, str) else MISSING_DATE,
        version_holder=version_holder if isinstance(version_holder, str) else "",
        raw=_dump_json(study),
        condition_text=_search_text(_condition_values(study)),
        title_text=_search_text(_title_values(study)),
    )


def _load_json(data: bytes) -> Any:
    """JSON from a file; a file that is JSON but not valid UTF-8 keeps its bytes (as lone
    surrogates), so that they can be served as they are."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return json.loads(data.decode("utf-8", "surrogateescape"))
        raise


def _dump_json(study: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(study)
    except orjson.JSONEncodeError:  # lone surrogates: the invalid UTF-8 of the file, restored
        text = json.dumps(study, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", "surrogateescape")


def _is_newer(candidate: StoredStudy, current: StoredStudy) -> bool:
    if candidate.version_key() != current.version_key():
        return candidate.version_key() > current.version_key()
    return _canonical_bytes(candidate) > _canonical_bytes(current)


def _canonical_bytes(study: StoredStudy) -> bytes:
    # Only needed on exact version ties, which are rare, so parsing again here is cheap overall.
    try:
        return orjson.dumps(orjson.loads(study.raw), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:  # invalid UTF-8, served as it is
        return study.raw


def _condition_values(study: dict[str, Any]) -> list[Any]:
    protocol = study["protocolSection"]
    browse = _path(study, "derivedSection", "conditionBrowseModule")
    values: list[Any] = []
    values += _list(_path(protocol, "conditionsModule", "conditions"))
    values += _list(_path(protocol, "conditionsModule", "keywords"))
    for group in ("meshes", "ancestors"):
        values += [
            item.get("term") for item in _list(_path(browse, group)) if isinstance(item, dict)
        ]
    return values


def _title_values(study: dict[str, Any]) -> list[Any]:
    protocol = study["protocolSection"]
    return [
        _path(protocol, "identificationModule", "briefTitle"),
        _path(protocol, "identificationModule", "officialTitle"),
        *_list(_path(protocol, "conditionsModule", "conditions")),
        *_list(_path(protocol, "conditionsModule", "keywords")),
    ]


def _search_text(values: list[Any]) -> str:
    # One value per line, so a term never matches across two separate values.
    return "\n".join(value.lower() for value in values if isinstance(value, str))


def _path(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
