"""Offline HTTP server compatible with the ClinicalTrials.gov API v2 endpoints the project uses.

Endpoints:

- ``GET /api/v2/studies`` serves the studies of a folder (see ``store.StudyStore``).
  Parameters:

  - ``format``: only ``json`` (the default); anything else is a 400.
  - ``filter.advanced``: only ``AREA[LastUpdatePostDate]RANGE[a,b]`` where ``a`` and ``b`` are
    ``YYYY-MM-DD``, ``MIN`` or ``MAX``, inclusive at both ends. Studies without a
    ``lastUpdatePostDate`` never match it. No filter selects every study.
  - ``query.cond`` and ``query.term``: an approximation of the real search engine. The value is
    split on `` OR `` (any case), parentheses and quotes are removed, and a study matches when
    any term is a case-insensitive substring of its search text: for ``query.cond`` the
    conditions, keywords and condition MeSH terms and ancestors; for ``query.term`` the brief
    and official titles, conditions and keywords. Both parameters must match when both are
    given. ``AREA[...]`` expressions inside them are rejected with a 400.
  - ``sort``: ``LastUpdatePostDate``, ``LastUpdatePostDate:asc`` or ``LastUpdatePostDate:desc``,
    ties by ascending NCT id; studies without a date come last either way. Without ``sort``
    studies come in NCT id order (the real API leaves them unsorted).
  - ``pageSize``: 1..1000, default 10; larger values are a 400, as in the real API.
  - ``pageToken``: the ``nextPageToken`` of the previous page: URL-safe base64 of JSON with the
    offset and a hash of the parsed query (filter, search terms, sort; not ``pageSize``,
    ``countTotal`` or ``fields``). A token that does not decode or that belongs to another
    query is a 400.
  - ``countTotal=true``: ``totalCount`` on the first page only, as the real API does.
  - ``fields`` is accepted and ignored: whole studies are always returned.
  - Any other parameter is a 400, so an unsupported query never silently returns everything.

- ``GET /api/v2/version`` returns the API version and the newest ``versionHolder`` as the data
  timestamp.
- ``GET /__replay/stats`` returns request counts (and the faults injected); it is itself not
  counted, so reading the statistics never changes them. Every other request, including 404s,
  is counted.
- ``POST /__replay/reload`` rescans the folder (studies and PubMed articles) and returns the new
  study count.
- ``GET`` or ``POST`` ``/entrez/eutils/esearch.fcgi`` and ``/entrez/eutils/efetch.fcgi`` serve
  the PubMed articles of the same folder: see ``eutils`` for their semantics. Their answers and
  errors are XML, as on NCBI.

Errors have a JSON body ``{"error": ..., "status": ...}``. Requests are not logged one by one.

With a fault spec (``--faults``, see ``faults``), data requests (studies and E-utilities) get
429s with ``Retry-After``, 5xx, dropped connections, slow or truncated responses and expired
page tokens on demand.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import orjson

from bioloupe_data.replay.eutils import EUTILS_PATHS, ArticleStore, EutilsService
from bioloupe_data.replay.faults import Fault, FaultPlan
from bioloupe_data.replay.store import DateRange, StoredStudy, StudyOrder, StudyQuery, StudyStore

API_VERSION = "2.0.5"
STUDIES_PATH = "/api/v2/studies"
VERSION_PATH = "/api/v2/version"
STATS_PATH = "/__replay/stats"
RELOAD_PATH = "/__replay/reload"
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000
IDLE_CONNECTION_TIMEOUT_SECONDS = 120

SUPPORTED_PARAMETERS = frozenset(
    {
        "format",
        "filter.advanced",
        "query.cond",
        "query.term",
        "sort",
        "pageSize",
        "pageToken",
        "countTotal",
        "fields",
    }
)

_DATE_RANGE_FILTER = re.compile(
    r"^\s*AREA\[\s*LastUpdatePostDate\s*\]\s*RANGE\[\s*([^,\]\s]+)\s*,\s*([^,\]\s]+)\s*\]\s*$",
    re.IGNORECASE,
)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_OR_SEPARATOR = re.compile(r"\s+OR\s+", re.IGNORECASE)
_SORT_ORDERS = {
    "LastUpdatePostDate": StudyOrder.LAST_UPDATE_ASC,
    "LastUpdatePostDate:asc": StudyOrder.LAST_UPDATE_ASC,
    "LastUpdatePostDate:desc": StudyOrder.LAST_UPDATE_DESC,
}


class BadRequest(Exception):
    """A request the replay server rejects with HTTP 400 and this message."""


@dataclass(frozen=True, slots=True)
class PageRequest:
    query: StudyQuery
    query_hash: str
    offset: int
    page_size: int
    count_total: bool


def parse_page_request(parameters: Mapping[str, str]) -> PageRequest:
    unsupported = sorted(set(parameters) - SUPPORTED_PARAMETERS)
    if unsupported:
        raise BadRequest(
            f"unsupported parameter(s) {', '.join(unsupported)}; "
            f"the replay server supports {', '.join(sorted(SUPPORTED_PARAMETERS))}"
        )
    if parameters.get("format", "json") != "json":
        raise BadRequest("only format=json is supported")
    query = StudyQuery(
        date_range=parse_advanced_filter(parameters.get("filter.advanced", "")),
        condition_terms=parse_search_terms("query.cond", parameters.get("query.cond", "")),
        text_terms=parse_search_terms("query.term", parameters.get("query.term", "")),
        order=parse_sort(parameters.get("sort", "")),
    )
    query_hash = hash_query(query)
    token = parameters.get("pageToken", "")
    return PageRequest(
        query=query,
        query_hash=query_hash,
        offset=decode_page_token(token, query_hash) if token else 0,
        page_size=parse_page_size(parameters.get("pageSize", "")),
        count_total=parse_boolean("countTotal", parameters.get("countTotal", "false")),
    )


def parse_advanced_filter(expression: str) -> DateRange | None:
    if not expression.strip():
        return None
    match = _DATE_RANGE_FILTER.match(expression)
    if match is None:
        raise BadRequest(
            f"unsupported filter.advanced expression {expression!r}; the replay server supports "
            "only AREA[LastUpdatePostDate]RANGE[a,b] with a and b YYYY-MM-DD, MIN or MAX"
        )
    return DateRange(
        first=_range_bound(match.group(1), "MIN"), last=_range_bound(match.group(2), "MAX")
    )


def _range_bound(value: str, open_word: str) -> str | None:
    if value.upper() == open_word:
        return None
    if _DAY.fullmatch(value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise BadRequest(f"invalid bound {value!r} in RANGE[...]: expected YYYY-MM-DD, MIN or MAX")


def parse_search_terms(name: str, value: str) -> tuple[str, ...]:
    if "AREA[" in value.upper():
        raise BadRequest(f"{name}: AREA[...] expressions are not supported by the replay server")
    cleaned = re.sub(r"[()\"]", " ", value)
    terms = (" ".join(term.split()).lower() for term in _OR_SEPARATOR.split(cleaned))
    return tuple(sorted({term for term in terms if term}))


def parse_sort(value: str) -> StudyOrder:
    if not value:
        return StudyOrder.BY_NCT_ID
    order = _SORT_ORDERS.get(value.strip())
    if order is None:
        raise BadRequest(
            f"unsupported sort {value!r}; supported: {', '.join(_SORT_ORDERS)} or no sort"
        )
    return order


def parse_page_size(value: str) -> int:
    if not value:
        return DEFAULT_PAGE_SIZE
    try:
        page_size = int(value)
    except ValueError:
        raise BadRequest(f"pageSize must be an integer, got {value!r}") from None
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadRequest(f"pageSize must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
    return page_size


def parse_boolean(name: str, value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"{name} must be true or false, got {value!r}")


def hash_query(query: StudyQuery) -> str:
    date_range = query.date_range
    canonical = orjson.dumps(
        [
            None if date_range is None else [date_range.first, date_range.last],
            query.condition_terms,
            query.text_terms,
            query.order.value,
        ]
    )
    return hashlib.sha256(canonical).hexdigest()[:16]


def encode_page_token(offset: int, query_hash: str) -> str:
    payload = orjson.dumps({"o": offset, "q": query_hash})
    return base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")


def decode_page_token(token: str, query_hash: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        offset, token_hash = payload["o"], payload["q"]
    except (ValueError, binascii.Error, orjson.JSONDecodeError, KeyError, TypeError):
        raise BadRequest(f"invalid pageToken {token!r}") from None
    if token_hash != query_hash:
        raise BadRequest("pageToken belongs to a different query")
    if not isinstance(offset, int) or offset < 0:
        raise BadRequest(f"invalid pageToken {token!r}")
    return offset


def render_page(
    studies: list[StoredStudy], request: PageRequest, *, duplicate_first: bool = False
) -> bytes:
    end = request.offset + request.page_size
    page = studies[request.offset : end]
    if duplicate_first and page:
        page = [*page, page[0]]
    parts = [b'{"studies":[', b",".join(study.raw for study in page), b"]"]
    if request.count_total and request.offset == 0:
        parts.append(b',"totalCount":%d' % len(studies))
    if end < len(studies):
        parts.append(
            b',"nextPageToken":' + orjson.dumps(encode_page_token(end, request.query_hash))
        )
    parts.append(b"}")
    return b"".join(parts)


class RequestCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path: Counter[str] = Counter()

    def count(self, path: str) -> None:
        with self._lock:
            self._by_path[path] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._by_path.values())

    def by_path(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._by_path.items()))


class _ReplayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        store: StudyStore,
        counter: RequestCounter,
        eutils: EutilsService,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(address, _ReplayRequestHandler)
        self.store = store
        self.counter = counter
        self.eutils = eutils
        self.faults = faults

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response is routine (timeouts, cancelled runs), not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _ReplayRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT_SECONDS
    server: _ReplayHTTPServer
    _GET_ROUTES: ClassVar[dict[str, str]] = {
        STUDIES_PATH: "_get_studies",
        VERSION_PATH: "_get_version",
        STATS_PATH: "_get_stats",
    }

    _truncate = False
    _duplicate = False

    def do_GET(self) -> None:
        # A connection serves many requests; a fault hits one.
        self._truncate = self._duplicate = False
        path, parameters = self._split_target()
        route = self._GET_ROUTES.get(path)
        if path != STATS_PATH:
            self.server.counter.count(path)
        if self._injected_fault(path, parameters):
            return
        if path in EUTILS_PATHS:
            self._serve_eutils(path, parameters)
            return
        if route is None:
            self._send_error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")
            return
        try:
            getattr(self, route)(parameters)
        except BadRequest as error:
            self._send_error(HTTPStatus.BAD_REQUEST, str(error))

    def do_POST(self) -> None:
        self._truncate = self._duplicate = False
        path, parameters = self._split_target()
        self.server.counter.count(path)
        body = self._read_request_body()
        if path in EUTILS_PATHS:
            # E-utilities take their parameters as a form body too; the body wins on a clash.
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            if self._injected_fault(path, parameters):
                return
            self._serve_eutils(path, {**parameters, **dict(form)})
            return
        if path != RELOAD_PATH:
            self._send_error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")
            return
        self.server.eutils.store.reload()
        self._send_json({"studies": self.server.store.reload()})

    def _injected_fault(self, path: str, parameters: Mapping[str, str]) -> bool:
        """Apply the fault plan to a data request; True when the fault replaced the response."""
        plan = self.server.faults
        if plan is None or (path != STUDIES_PATH and path not in EUTILS_PATHS):
            return False
        fault = plan.next_fault(has_page_token=bool(parameters.get("pageToken")))
        if fault is None:
            return False
        return self._inject(fault)

    def _inject(self, fault: Fault) -> bool:
        if fault.kind == "reset":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.kind == "slow":
            time.sleep(fault.argument or 0.0)
            return False
        if fault.kind == "truncate":
            self._truncate = True
            return False
        if fault.kind == "duplicate":
            self._duplicate = True
            return False
        if fault.kind == "expired_token":
            self._send_error(HTTPStatus.BAD_REQUEST, "pageToken expired or unknown")
            return True
        status = HTTPStatus(fault.status or HTTPStatus.INTERNAL_SERVER_ERROR)
        body = orjson.dumps({"error": f"injected fault: {status.phrase}", "status": status.value})
        headers = {"Retry-After": f"{fault.argument:g}"} if fault.argument is not None else {}
        self._send_body(status, body, headers=headers)
        return True

    def _get_studies(self, parameters: dict[str, str]) -> None:
        request = parse_page_request(parameters)
        studies = self.server.store.select(request.query)
        page = render_page(studies, request, duplicate_first=self._duplicate)
        self._send_body(HTTPStatus.OK, page)

    def _get_version(self, _parameters: dict[str, str]) -> None:
        holder = self.server.store.max_version_holder
        self._send_json(
            {"apiVersion": API_VERSION, "dataTimestamp": f"{holder}T00:00:00" if holder else None}
        )

    def _serve_eutils(self, path: str, parameters: dict[str, str]) -> None:
        response = self.server.eutils.handle(path, parameters)
        self._send_body(HTTPStatus(response.status), response.body, response.content_type)

    def _get_stats(self, _parameters: dict[str, str]) -> None:
        counter = self.server.counter
        self._send_json(
            {
                "requests": counter.total,
                "by_path": counter.by_path(),
                "studies": len(self.server.store),
                "faults": self.server.faults.injected if self.server.faults else {},
            }
        )

    def _split_target(self) -> tuple[str, dict[str, str]]:
        target = urlsplit(self.path)
        # Like most servers, the last value wins when a parameter is repeated.
        return target.path, dict(parse_qsl(target.query, keep_blank_values=True))

    def _read_request_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_error(self, status: HTTPStatus, message: str) -> None:
        self._send_json({"error": message, "status": status.value}, status)

    def _send_json(self, payload: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send_body(status, orjson.dumps(payload))

    def _send_body(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # Every response leaves through here, so a truncating fault cuts any of them.
        if self._truncate:
            body = body[: len(body) // 2]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are counted, not logged."""


class ReplayServer:
    """The replay server on a background daemon thread.

    ``faults`` is a fault spec (see ``bioloupe_data.replay.faults``); an invalid one raises
    ``FaultSpecError``.
    """

    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: str | None = None,
    ) -> None:
        self.faults = FaultPlan(faults) if faults else None
        self.data_dir = Path(data_dir)
        self.store = StudyStore.from_folder(self.data_dir)
        self.articles = ArticleStore.from_folder(self.data_dir)
        self.eutils = EutilsService(self.articles)
        self._counter = RequestCounter()
        self._httpd = _ReplayHTTPServer(
            (host, port), self.store, self._counter, self.eutils, self.faults
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{_url_host(host_text)}:{port}"

    @property
    def request_count(self) -> int:
        return self._counter.total

    def requests_by_path(self) -> dict[str, int]:
        return self._counter.by_path()

    def reload(self) -> int:
        """Rescan studies and articles; returns the study count (``len(self.articles)``
        has the other)."""
        self.articles.reload()
        return self.store.reload()

    def start(self) -> ReplayServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="replay-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run_forever(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    faults: str | None = None,
    report_every: float = 30.0,
) -> None:
    """Command-line entry: serve until Ctrl-C, then print the requests served per path."""
    server = ReplayServer(data_dir, host=host, port=port, faults=faults)
    store, articles = server.store, server.articles
    print(
        f"replay server: {len(store)} studies and {len(articles)} PubMed articles from "
        f"{data_dir} at {server.url} ({store.skipped_files} JSON and "
        f"{articles.skipped_files} other files skipped)"
        + (f", injecting faults {faults!r}" if faults else ""),
        flush=True,
    )
    if report_every > 0:
        reporter = threading.Thread(target=_report_every, args=(server, report_every), daemon=True)
        reporter.start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    print(f"replay server: served {server.request_count} requests")
    for path, count in server.requests_by_path().items():
        print(f"  {count:>8}  {path}")
    if server.faults is not None:
        for kind, count in server.faults.injected.items():
            print(f"  {count:>8}  fault {kind}")


def _report_every(server: ReplayServer, seconds: float) -> None:
    """While requests come in, a line every `seconds` with what was served since the last."""
    reported: dict[str, int] = {}
    while True:
        time.sleep(seconds)
        now = server.requests_by_path()
        served = {path: count - reported.get(path, 0) for path, count in now.items()}
        served = {path: count for path, count in served.items() if count}
        if not served:
            continue
        reported = now
        faults = server.faults.injected if server.faults is not None else {}
        line = ", ".join(f"{path} {count}" for path, count in served.items())
        print(
            f"replay server: {sum(served.values())} requests in the last {seconds:.0f} s ({line})"
            + (f"; faults so far {faults}" if faults else ""),
            flush=True,
        )
