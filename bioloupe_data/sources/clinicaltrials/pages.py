"""Studies cut from a page's bytes, without decoding them.

A re-fetch mostly brings studies as they were: a study whose bytes have the digest stored with
it is the stored study, so its key, day and content hash are the stored ones and nothing of it
needs decoding (`cut_page`, `study_digest`). The digest leaves out the value of the study's
`versionHolder`, the registry's snapshot date, which the API writes into every study and which
changes every day; the cut reads that value, the version a decoded study would have.

The API writes each study as compact JSON (the form `orjson.dumps` gives), studies separated by
`,` and a newline. A cut is only a guess at where a study starts and ends: it is taken as a
study only when its digest is that of a study landed before, or when it decodes on its own. A
wrong cut can be neither: a boundary inside a study leaves brackets unbalanced on both sides.
And `{"` never occurs inside a JSON string (a quote there is escaped), so `},{"protocolSection":`
is always markup.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

_WS = rb"[ \t\r\n]*"
# The page's start, up to its studies: the API writes `studies` first.
_PAGE_START = re.compile(rb"\{" + _WS + rb'"studies"' + _WS + rb":" + _WS + rb"\[" + _WS)
# From the end of the studies' array to the end of the page: only the keys the API adds there.
_PAGE_END = re.compile(
    rb"\]"
    + _WS
    + rb'(?:,[ \t\r\n]*"(?:nextPageToken|totalCount)"[ \t\r\n]*:[ \t\r\n]*'
    + rb'(?:"[A-Za-z0-9_\-]*"|[0-9]+)[ \t\r\n]*)*\}'
    + _WS
)
_STUDY_START = b'{"protocolSection":'
_BETWEEN_STUDIES_BEFORE = re.compile(rb"\}" + _WS + rb"," + _WS + rb"\Z")
_NCT_ID = re.compile(rb'"nctId":"(NCT[0-9]{8})"')
_VERSION_HOLDER_KEY = b'"versionHolder":'
# A value left out of the digest: printable ASCII, no quote or backslash (no escapes to undo).
_PLAIN_STRING = re.compile(rb'"([ !#-\[\]-~]*)"')


@dataclass(frozen=True, slots=True)
class StudyDigest:
    """The SHA-256 of a study's bytes, and the `versionHolder` value it leaves out (None when
    it leaves nothing out)."""

    digest: bytes
    version_holder: str | None


@dataclass(frozen=True, slots=True)
class StudyCut:
    """One study's bytes as the page holds them and their digest; `nct_id` is what its first
    `nctId` holds: a key to look the stored study up by, not an identity read by a parser."""

    nct_id: str
    raw: bytes
    digest: StudyDigest

    def decoded(self) -> Any:
        """The study; raises `orjson.JSONDecodeError` when the cut is not one JSON value."""
        return orjson.loads(self.raw)


@dataclass(frozen=True, slots=True)
class CutPage:
    """A page's envelope (`totalCount`, `nextPageToken`) and its studies' cuts, in order."""

    envelope: dict[str, Any]
    cuts: list[StudyCut]


def study_digest(payload: bytes) -> StudyDigest:
    """The SHA-256 of a study's compact JSON; when the bytes name one `versionHolder` key, as
    an object's key (`{` or `,` before its quote: a quote inside a string is escaped) with a
    plain string value, that value is left out of it.

    Two studies with the same digest are therefore the same bytes but for that value: where
    their `derivedSection.miscInfoModule.versionHolder` exists, it is that key (the only one),
    and the content hash leaves it out as well."""
    at = payload.find(_VERSION_HOLDER_KEY)
    if at > 0 and payload[at - 1] in b"{," and payload.find(_VERSION_HOLDER_KEY, at + 1) < 0:
        value = _PLAIN_STRING.match(payload, at + len(_VERSION_HOLDER_KEY))
        if value is not None:
            view = memoryview(payload)
            digest = hashlib.sha256(view[: value.start(1)])
            digest.update(view[value.end(1) :])
            return StudyDigest(digest.digest(), value.group(1).decode("ascii"))
    return StudyDigest(hashlib.sha256(payload).digest(), None)


def cut_page(body: bytes) -> CutPage | None:
    """Every study of a page written as the API writes it, cut without decoding any; None for a
    page written otherwise (it is then decoded as a whole).

    Safe to run beside the thread that handles the previous page: the hashing, most of the
    work, releases the GIL."""
    start = _PAGE_START.match(body)
    close = body.rfind(b"]")
    if start is None or close < start.end() or not _PAGE_END.fullmatch(body, close):
        return None
    end = close
    while end > start.end() and body[end - 1] in b" \t\r\n":
        end -= 1
    try:
        envelope = orjson.loads(body[: start.end()] + body[close:])
    except orjson.JSONDecodeError:
        return None
    if start.end() == end:
        return CutPage(envelope, [])
    if not body.startswith(_STUDY_START, start.end()) or body[end - 1 : end] != b"}":
        return None
    cuts = []
    first = start.end()
    for boundary in _boundaries(body, first, end):
        cut = _cut(body[first : boundary.start() + 1])
        if cut is None:
            return None
        cuts.append(cut)
        first = boundary.end()
    last = _cut(body[first:end])
    if last is None:
        return None
    cuts.append(last)
    return CutPage(envelope, cuts)


def _boundaries(body: bytes, start: int, end: int) -> Iterator[re.Match[bytes]]:
    """Where one study ends and the next starts (`}`, `,`, white space), found from each next
    study's start: searching for `}` itself would stop at every object's end."""
    at = body.find(_STUDY_START, start + 1, end)
    while at >= 0:
        boundary = _BETWEEN_STUDIES_BEFORE.search(body, max(start, at - 64), at)
        if boundary is not None and boundary.end() == at:
            yield boundary
        at = body.find(_STUDY_START, at + 1, end)


def _cut(raw: bytes) -> StudyCut | None:
    nct_id = _NCT_ID.search(raw)
    if nct_id is None:
        return None
    return StudyCut(nct_id.group(1).decode("ascii"), raw, study_digest(raw))
