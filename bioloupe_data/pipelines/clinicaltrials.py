"""ClinicalTrials.gov days, end to end without Dagster: fetch a range of days and land it day by
day, and normalize landed days into `core.trials` and its child tables.

Each day commits in its own transaction; `on_day` is called after each commit so the caller can
record that day as done.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time
from itertools import groupby
from typing import Any

import orjson
import psycopg

from bioloupe_data.memory import paused_gc
from bioloupe_data.pipelines.landing import Chunk, LandedDay, days_between, land_day
from bioloupe_data.pipelines.normalize import (
    BOOKKEEPING_COLUMNS,
    Derived,
    NormalizedDay,
    NormalizeSpec,
)
from bioloupe_data.pipelines.workers import DayWorkers, Feed
from bioloupe_data.sources.clinicaltrials import (
    CHILD_TABLES,
    SOURCE,
    TRIAL_COLUMNS,
    ClinicalTrialsClient,
    StudyParseError,
    parse_study,
    study_identity,
)
from bioloupe_data.sources.clinicaltrials.client import CutStudyPage
from bioloupe_data.sources.clinicaltrials.pages import StudyCut, study_digest
from bioloupe_data.sources.http import SourceError
from bioloupe_data.warehouse.documents import (
    DOCUMENTS,
    DeadLetter,
    Document,
    StoredVersion,
    stored_versions,
)
from bioloupe_data.warehouse.statistics import GrowingTables
from bioloupe_data.warehouse.upsert import Table

__all__ = ["TRIALS_SPEC", "LandedDay", "NormalizedDay", "days_between", "land_range"]

TRIALS = Table("core", "trials", (*TRIAL_COLUMNS, *BOOKKEEPING_COLUMNS), ("nct_id",))
CHILDREN = {
    name: Table("core", name, tuple(columns), ("nct_id", "ordinal"))
    for name, columns in CHILD_TABLES.items()
}
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _derive_trial(study: Any) -> Derived:
    parsed = parse_study(study)
    return Derived(parsed.nct_id, parsed.trial, parsed.children, parsed.derivation_hash)


TRIALS_SPEC = NormalizeSpec(SOURCE, TRIALS, CHILDREN, "nct_id", _derive_trial, version="1")


# ----------------------------------------------------------------------------- landing


def _to_document(study: Any, cut: StudyCut | None = None) -> Document:
    """The document of a decoded study; `cut`, the bytes it was decoded from, spares hashing
    them again when they are the payload (as the API writes studies, they are)."""
    identity = study_identity(study)
    try:
        payload = orjson.dumps(study)
    except TypeError as exc:  # e.g. a lone surrogate in a string
        raise StudyParseError("unserializable_payload", str(exc)) from exc
    # The plain substring test is cheap; the regex (an escaped backslash before `u0000` is not
    # a NUL) only runs on the rare payload that contains it.
    payload_json = payload.decode()
    if "\\u0000" in payload_json and _JSON_NUL.search(payload_json):
        raise StudyParseError("nul_character", "PostgreSQL text cannot hold NUL (\\u0000)")
    return Document(
        doc_id=identity.nct_id,
        payload_json=payload_json,
        source_updated_at=datetime.combine(identity.last_update_post_date, time(), UTC),
        version_key=identity.version_key,
        content_hash=identity.content_hash,
        partition_date=identity.last_update_post_date,
        # The API writes a study as `orjson.dumps` does: a re-fetch's cut of the study has
        # this digest while the study is unchanged.
        source_digest=(
            cut.digest if cut is not None and cut.raw == payload else study_digest(payload)
        ).digest,
    )


def _stored_document(cut: StudyCut, stored: StoredVersion | None) -> Document | None:
    """The document decoding `cut` would give, when it is the payload stored for its NCT ID
    but for the snapshot date (`study_digest`): key, day and content hash are the stored ones,
    the version is the cut's snapshot date."""
    if stored is None or stored.source_digest != cut.digest.digest:
        return None
    # A digest leaving a versionHolder out describes a study whose snapshot date is that key
    # only when the stored study has one; one leaving nothing out, only when it has none (its
    # bytes are then the stored ones). Anything else is decoded.
    if (cut.digest.version_holder is not None) != bool(stored.version_key):
        return None
    version_key = cut.digest.version_holder or stored.version_key
    return Document(
        doc_id=cut.nct_id,
        payload_json=cut.raw,  # the stored payload's bytes but for a plain string: they decode
        source_updated_at=stored.source_updated_at,
        version_key=version_key,
        content_hash=stored.content_hash,
        partition_date=stored.partition_date,
        source_digest=stored.source_digest,
    )


def _excerpt(study: Any) -> str:
    if isinstance(study, Document):
        payload = study.payload_json
        return (payload if isinstance(payload, str) else payload.decode())[:2000]
    try:
        return orjson.dumps(study).decode()[:2000]
    except TypeError:
        return repr(study)[:2000]


def _doc_id_of(study: Any) -> str:
    if isinstance(study, Document):
        return study.doc_id
    try:
        nct_id = study["protocolSection"]["identificationModule"]["nctId"]
        if isinstance(nct_id, str) and nct_id:
            return nct_id
    except (KeyError, TypeError):
        pass
    return "unidentified:" + _sha(_excerpt(study))


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


class _Classifier:
    """Each study with the day it belongs to; a study that cannot be landed becomes a dead
    letter of the day being read when it arrived."""

    def __init__(self, start: date, end: date) -> None:
        self.start = start
        self.end = end
        self.current = start

    def page(self, studies: list[Any]) -> list[tuple[date, Document | DeadLetter]]:
        return [self._classify(study) for study in studies]

    def cut_page(
        self, page: CutStudyPage, lookup: psycopg.Connection
    ) -> list[tuple[date, Document | DeadLetter]]:
        """A page of cuts: those stored as they come (but for the snapshot date) become
        documents without decoding, the others are decoded one by one; a cut that does not
        decode alone has the page decoded as a whole."""
        stored = stored_versions(lookup, SOURCE, [cut.nct_id for cut in page.cuts])
        known = [_stored_document(cut, stored.get(cut.nct_id)) for cut in page.cuts]
        studies: list[Any] = []
        try:
            for cut, document in zip(page.cuts, known, strict=True):
                studies.append(document if document is not None else cut.decoded())
        except orjson.JSONDecodeError:
            return self.page(page.decoded())
        return [self._classify(s, c) for s, c in zip(studies, page.cuts, strict=True)]

    def _classify(
        self, study: Any, cut: StudyCut | None = None
    ) -> tuple[date, Document | DeadLetter]:
        try:
            document = study if isinstance(study, Document) else _to_document(study, cut)
        except StudyParseError as exc:
            return self.current, _dead_letter(study, self.current, exc.reason, str(exc), "landing")
        if not self.start <= document.partition_date <= self.end:
            detail = f"last update {document.partition_date} outside {self.start}..{self.end}"
            letter = _dead_letter(study, self.current, "outside_requested_range", detail, "landing")
            return self.current, letter
        if document.partition_date < self.current:
            raise SourceError(
                f"{SOURCE}: studies not sorted by LastUpdatePostDate "
                f"({document.doc_id} dated {document.partition_date} after {self.current})"
            )
        self.current = document.partition_date
        return self.current, document


def _dead_letter(study: Any, day: date, reason: str, detail: str, stage: str) -> DeadLetter:
    return DeadLetter(_doc_id_of(study), day, reason, stage, detail, _excerpt(study))


def land_range(
    connections: psycopg.Connection | Sequence[psycopg.Connection],
    client: ClinicalTrialsClient,
    start: date,
    end: date,
    *,
    run_id: str,
    on_day: Callable[[LandedDay], None] | None = None,
    lookup: psycopg.Connection | None = None,
) -> list[LandedDay]:
    """Fetch every study updated in start..end with one paged query and land it day by day.

    The pages are read and parsed in this thread; each day is written in a transaction of its
    own on one of `connections`, so with several, one day is written while the next is read.
    `on_day` is called in this thread as each day commits: before each page is read, for the
    days that committed since the last. Returns the days in date order.

    With `lookup`, a connection of this thread's own, each page's studies are cut from its
    bytes and looked up there: a study stored as it comes (but for the registry's snapshot
    date) is not decoded again."""
    conns = [connections] if isinstance(connections, psycopg.Connection) else list(connections)
    total: list[int | None] = [None]

    def classified(
        before_each_page: Callable[[], None],
    ) -> Iterator[tuple[date, Document | DeadLetter]]:
        """A page of parsed JSON is tens of thousands of dicts and lists: it is turned into
        documents and let go with the collector paused, so no collection ever walks it."""
        classifier = _Classifier(start, end)
        pages = client.iter_pages(start, end, cut=lookup is not None)
        while True:
            before_each_page()
            with paused_gc():
                page = next(pages, None)
                if page is None:
                    return
                if page.page_number == 0:
                    total[0] = page.total_count
                if isinstance(page, CutStudyPage):
                    assert lookup is not None
                    items = classifier.cut_page(page, lookup)
                else:
                    items = classifier.page(page.studies)
                del page
            yield from items

    results: list[LandedDay] = []
    growing = GrowingTables([DOCUMENTS])

    def committed(result: LandedDay) -> None:
        results.append(result)
        if on_day:
            on_day(result)

    def land(day: date, items: Iterable[Document | DeadLetter]) -> Callable[..., LandedDay]:
        def work(conn: psycopg.Connection) -> LandedDay:
            chunk = Chunk(start, end, total[0])
            return land_day(conn, SOURCE, day, items, run_id=run_id, chunk=chunk, growing=growing)

        return work

    pending_days = iter(days_between(start, end))
    with DayWorkers(conns, committed) as workers:
        items = classified(before_each_page=workers.deliver_finished)
        for day, group in groupby(items, key=lambda item: item[0]):
            for empty_day in pending_days:
                if empty_day == day:
                    break
                workers.submit(land(empty_day, ()))
            feed: Feed[Document | DeadLetter] = Feed()
            workers.submit(land(day, feed))
            try:
                for _, item in group:
                    feed.put(item)
                feed.close()
            except BaseException:
                feed.abort()  # the day in flight rolls back
                raise
        for empty_day in pending_days:
            workers.submit(land(empty_day, ()))
    return sorted(results, key=lambda r: r.day)
