"""The shared HTTP client over real HTTP on the loopback interface: retries and backoff,
`Retry-After`, errors that are final at once, giving up, secret redaction and rate limiting.

Faults come from a scripted server in this module: each request it receives gets the next reply
of its script (the last reply repeats), and every request is recorded with its arrival time.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from bioloupe_data.sources.clinicaltrials import ClinicalTrialsClient
from bioloupe_data.sources.http import (
    HttpClient,
    HttpSettings,
    RateLimiter,
    RetryEvent,
    SourceError,
    TransientHTTPError,
    is_local,
)

SOURCE = "scripted_source"
PATH = "/api/v2/studies"
PAYLOAD = {"studies": [{"id": 1}, {"id": 2}], "note": "ok"}
SECRET = "s3cr3t-VALUE-42"
# Far below any Retry-After used here, so a wait of a second can only come from the header.
QUICK_BACKOFF = 0.01


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: bytes = orjson.dumps(PAYLOAD)
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    hang_up: bool = False  # close the connection without sending any response


@dataclass(frozen=True, slots=True)
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


OK = Reply()
INVALID_JSON = Reply(body=b'{"studies": [{"id": 1}, {"id"')
HANG_UP = Reply(hang_up=True)
SLOW = Reply(delay=5.0)  # far slower than the client timeouts used with it


def status(code: int, body: bytes = b'{"error": "scripted"}', **headers: str) -> Reply:
    return Reply(status=code, body=body, headers=tuple(headers.items()))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], scripted: ScriptedServer) -> None:
        super().__init__(address, _Handler)
        self.scripted = scripted

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a slow reply is what these tests provoke, not an error."""


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_GET(self) -> None:
        scripted = self.server.scripted
        target = urlsplit(self.path)
        seen = Seen(
            target.path,
            dict(parse_qsl(target.query, keep_blank_values=True)),
            dict(self.headers.items()),
            time.monotonic(),
        )
        reply = scripted.take(seen)
        if reply.delay and scripted.stopping.wait(reply.delay):
            return
        if reply.hang_up:
            return  # HTTP/1.0: the server closes the connection once the handler returns
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `ScriptedServer.requests` instead."""


class ScriptedServer:
    def __init__(self, script: Sequence[Reply], host: str = "127.0.0.1") -> None:
        assert script, "a script needs at least one reply"
        self.script = list(script)
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _HTTPServer((host, 0), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def take(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            return self.script[min(len(self.requests), len(self.script)) - 1]

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def gaps(self) -> list[float]:
        """Seconds between the arrivals of consecutive requests."""
        times = [seen.at for seen in self.requests]
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._thread.join()
        self._httpd.server_close()


def settings(
    *,
    max_attempts: int = 3,
    timeout_seconds: float = 2.0,
    backoff_initial: float = QUICK_BACKOFF,
    backoff_max: float = 2 * QUICK_BACKOFF,
    requests_per_second: float | None = None,
) -> HttpSettings:
    return HttpSettings(
        timeout_seconds=timeout_seconds,
        max_attempts=max_attempts,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        requests_per_second=requests_per_second,
    )


def client_for(
    server: ScriptedServer,
    http_settings: HttpSettings,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> HttpClient:
    return HttpClient(SOURCE, server.url, http_settings, on_retry)


# --- success after transient faults -------------------------------------------------------------


def test_transient_faults_are_retried_until_the_request_succeeds() -> None:
    script = [status(503), status(500), INVALID_JSON, HANG_UP, SLOW, status(502), OK]
    received: list[RetryEvent] = []
    http_settings = settings(max_attempts=7, timeout_seconds=0.4)
    with (
        ScriptedServer(script) as server,
        client_for(server, http_settings, received.append) as client,
    ):
        began = time.monotonic()
        body = client.get_json(PATH, {"query.cond": "melanoma"})
        elapsed = time.monotonic() - began

    assert body == PAYLOAD
    assert len(server.requests) == 7
    assert all(seen.path == PATH for seen in server.requests)
    assert all(seen.query == {"query.cond": "melanoma"} for seen in server.requests)
    causes = [event.cause for event in client.retries]
    assert causes[0] == "HTTP 503"
    assert causes[1] == "HTTP 500"
    assert causes[2].startswith("invalid JSON body (")
    assert causes[3].startswith("connection error: ")
    assert causes[4] == "timed out after 0.4s"
    assert causes[5] == "HTTP 502"
    assert [event.attempt for event in client.retries] == [1, 2, 3, 4, 5, 6]
    assert received == client.retries
    # The slow reply was cut off by the timeout rather than waited for.
    assert 0.4 <= elapsed < 3.0


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504])
def test_every_retryable_status_is_retried(code: int) -> None:
    with ScriptedServer([status(code), OK]) as server, client_for(server, settings()) as client:
        assert client.get_json(PATH) == PAYLOAD
    assert len(server.requests) == 2
    assert [event.cause for event in client.retries] == [f"HTTP {code}"]


def test_retry_after_is_honoured() -> None:
    received: list[RetryEvent] = []
    with (
        ScriptedServer([status(429, **{"Retry-After": "1"}), OK]) as server,
        client_for(server, settings(), received.append) as client,
    ):
        assert client.get_json(PATH) == PAYLOAD
    assert len(server.requests) == 2
    (gap,) = server.gaps()
    assert 1.0 <= gap < 2.5, f"the retry came {gap:.3f}s after the 429 with Retry-After: 1"
    (event,) = received
    assert event.cause == "HTTP 429"
    assert event.wait_seconds >= 1.0


@pytest.mark.parametrize(
    "reply",
    [
        status(429),
        status(503, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        status(503, **{"Retry-After": "-5"}),
    ],
    ids=["no-header", "http-date", "negative"],
)
def test_without_usable_retry_after_the_short_backoff_applies(reply: Reply) -> None:
    with ScriptedServer([reply, OK]) as server, client_for(server, settings()) as client:
        assert client.get_json(PATH) == PAYLOAD
    (gap,) = server.gaps()
    assert gap < 0.5
    (event,) = client.retries
    assert event.wait_seconds <= 2 * QUICK_BACKOFF


def test_backoff_doubles_from_initial_up_to_max_with_jitter() -> None:
    script = [status(503)] * 4 + [OK]
    http_settings = settings(max_attempts=5, backoff_initial=0.04, backoff_max=0.1)
    with ScriptedServer(script) as server, client_for(server, http_settings) as client:
        assert client.get_json(PATH) == PAYLOAD
    waits = [event.wait_seconds for event in client.retries]
    # attempt n waits between half and all of min(max, initial * 2**(n-1))
    for wait, full in zip(waits, [0.04, 0.08, 0.1, 0.1], strict=True):
        assert full / 2 <= wait <= full
    for gap, wait in zip(server.gaps(), waits, strict=True):
        assert gap >= wait


# --- final errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 422])
def test_client_errors_are_not_retried_and_name_the_status(code: int) -> None:
    received: list[RetryEvent] = []
    body = b'{"error": "no study NCT99999999", "status": %d}' % code
    with (
        ScriptedServer([status(code, body), OK]) as server,
        client_for(server, settings(max_attempts=5), received.append) as client,
        pytest.raises(SourceError) as raised,
    ):
        client.get_json(f"{PATH}/NCT99999999", {"format": "json"})
    message = str(raised.value)
    assert message.startswith(f"{SOURCE}: HTTP {code} for ")
    assert f"{server.url}{PATH}/NCT99999999?format=json" in message
    assert "no study NCT99999999" in message  # the server's explanation is kept
    assert len(server.requests) == 1
    assert client.retries == []
    assert received == []


def test_long_error_bodies_are_cut_short() -> None:
    body = b"x" * 300 + b"TAIL-NOT-SHOWN" + b"y" * 5000
    with (
        ScriptedServer([status(400, body)]) as server,
        client_for(server, settings()) as client,
        pytest.raises(SourceError) as raised,
    ):
        client.get_json(PATH)
    assert "x" * 300 in str(raised.value)
    assert "TAIL-NOT-SHOWN" not in str(raised.value)


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (status(503), "HTTP 503"),
        (status(429, **{"Retry-After": "0"}), "HTTP 429"),
        (HANG_UP, "connection error: RemoteProtocolError"),
        (INVALID_JSON, "invalid JSON body ("),
        (SLOW, "timed out after 0.2s"),
    ],
    ids=["503", "429", "hang-up", "invalid-json", "timeout"],
)
def test_gives_up_after_max_attempts_naming_path_and_cause(reply: Reply, cause: str) -> None:
    received: list[RetryEvent] = []
    with (
        ScriptedServer([reply]) as server,
        client_for(
            server, settings(max_attempts=3, timeout_seconds=0.2), received.append
        ) as client,
        pytest.raises(SourceError) as raised,
    ):
        client.get_json(PATH, {"pageSize": 10})
    assert not isinstance(raised.value, TransientHTTPError)
    message = str(raised.value)
    assert message.startswith(f"{SOURCE}: {cause}")
    assert f"for {server.url}{PATH}?pageSize=10 " in message
    assert message.endswith("(gave up after 3 attempts)")
    assert len(server.requests) == 3
    assert [event.attempt for event in received] == [1, 2]
    assert all(event.cause.startswith(cause) for event in received)
    assert received == client.retries


def test_unreachable_server_gives_up_with_a_connection_error() -> None:
    with ScriptedServer([OK]) as server:
        url = server.url
    # The server is stopped and its port closed: every attempt is refused.
    with (
        HttpClient(SOURCE, url, settings(max_attempts=2)) as client,
        pytest.raises(SourceError) as raised,
    ):
        client.get_json(PATH)
    assert str(raised.value) == (
        f"{SOURCE}: connection error: ConnectError for {url}{PATH} (gave up after 2 attempts)"
    )
    assert len(client.retries) == 1


def test_max_attempts_one_means_no_retry() -> None:
    with (
        ScriptedServer([status(503), OK]) as server,
        client_for(server, settings(max_attempts=1)) as client,
        pytest.raises(SourceError, match=r"gave up after 1 attempts"),
    ):
        client.get_json(PATH)
    assert len(server.requests) == 1
    assert client.retries == []


# --- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [status(503), status(404), HANG_UP, INVALID_JSON, SLOW],
    ids=["503", "404", "hang-up", "invalid-json", "timeout"],
)
def test_secret_parameters_are_sent_but_never_shown(reply: Reply) -> None:
    received: list[RetryEvent] = []
    params = {"term": "lung cancer", "api_key": SECRET}
    with (
        ScriptedServer([reply]) as server,
        client_for(
            server, settings(max_attempts=2, timeout_seconds=0.2), received.append
        ) as client,
        pytest.raises(SourceError) as raised,
    ):
        client.get_json(PATH, params)
    assert all(seen.query == params for seen in server.requests)  # the server does get it
    message = str(raised.value)
    assert SECRET not in message
    assert "api_key=%2A%2A%2A" in message or "api_key=***" in message
    assert "term=lung+cancer" in message  # other parameters stay readable
    assert all(SECRET not in event.cause for event in received)
    assert all(SECRET not in repr(event) for event in client.retries)


@pytest.mark.parametrize("name", ["api_key", "API_KEY", "apikey", "ApiKey", "token", "key"])
def test_every_secret_parameter_name_is_redacted(name: str) -> None:
    with (
        ScriptedServer([status(403)]) as server,
        client_for(server, settings()) as client,
        pytest.raises(SourceError) as raised,
    ):
        client.get_json(PATH, {name: SECRET})
    assert server.requests[0].query == {name: SECRET}
    assert SECRET not in str(raised.value)
    assert f"{name}=" in str(raised.value)


def test_secret_echoed_back_in_an_error_body_is_not_shown() -> None:
    """APIs that reject a key often echo it (NCBI E-utilities answers an invalid key with
    `{"error":"API key invalid","api-key":"<the key>",...}`). The module promises that
    secrets passed as query parameters are redacted from every message."""
    body = orjson.dumps({"error": "API key invalid", "api-key": SECRET, "type": "invalid"})
    with (
        ScriptedServer([status(400, body)]) as server,
        client_for(server, settings()) as client,
        pytest.raises(SourceError) as raised,
    ):
        client.get_json(PATH, {"api_key": SECRET})
    assert "API key invalid" in str(raised.value)
    assert SECRET not in str(raised.value)


# --- plain requests ------------------------------------------------------------------------------


def test_get_json_sends_params_and_user_agent() -> None:
    http_settings = HttpSettings(user_agent="bioloupe-tests/9.9", backoff_initial=QUICK_BACKOFF)
    # A trailing slash on the base URL does not double the one that starts the path.
    with (
        ScriptedServer([OK]) as server,
        HttpClient(SOURCE, server.url + "/", http_settings) as client,
    ):
        body = client.get_json(PATH, {"pageSize": 1000, "countTotal": "true"})
    assert body == PAYLOAD
    (seen,) = server.requests
    assert seen.path == PATH
    assert seen.query == {"pageSize": "1000", "countTotal": "true"}
    assert seen.headers.get("User-Agent") == "bioloupe-tests/9.9"


def test_get_bytes_returns_the_body_untouched() -> None:
    raw = b'\x00\xff not JSON at all {"'
    with ScriptedServer([Reply(body=raw)]) as server, client_for(server, settings()) as client:
        assert client.get_bytes("/file.bin") == raw
    assert len(server.requests) == 1
    assert client.retries == []


def test_get_bytes_retries_transient_statuses() -> None:
    with (
        ScriptedServer([status(503), Reply(body=b"payload")]) as server,
        client_for(server, settings()) as client,
    ):
        assert client.get_bytes("/file.bin") == b"payload"
    assert len(server.requests) == 2


# --- a request started in the background ---------------------------------------------------------


def test_a_started_request_is_sent_before_its_result_is_asked_for() -> None:
    with ScriptedServer([OK]) as server, client_for(server, settings()) as client:
        pending = client.start_get_bytes(PATH, {"pageSize": 10})
        deadline = time.monotonic() + 5.0
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.requests) == 1  # on its way while the caller did something else
        assert client.json_of(pending.result(), PATH) == PAYLOAD
    assert server.requests[0].query == {"pageSize": "10"}
    assert client.retries == []


def test_a_started_request_that_received_a_cut_body_counts_one_retry_and_fetches_again() -> None:
    received: list[RetryEvent] = []
    with (
        ScriptedServer([INVALID_JSON, OK]) as server,
        client_for(server, settings(), received.append) as client,
    ):
        assert client.json_of(client.start_get_bytes(PATH).result(), PATH) == PAYLOAD
    assert len(server.requests) == 2
    assert [event.cause[:19] for event in client.retries] == ["invalid JSON body ("]
    assert received == client.retries


def test_started_requests_share_one_thread_that_ends_when_the_client_closes() -> None:
    def receiving() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == f"{SOURCE}-requests"]

    def until_none_receive() -> None:
        deadline = time.monotonic() + 5.0
        while receiving() and time.monotonic() < deadline:
            time.sleep(0.01)

    until_none_receive()  # the threads of clients closed before this test
    with ScriptedServer([OK]) as server:
        client = client_for(server, settings())
        started = [client.start_get_bytes(PATH, {"n": n}) for n in range(3)]
        assert [client.json_of(pending.result(), PATH) for pending in started] == [PAYLOAD] * 3
        assert [seen.query for seen in server.requests] == [{"n": "0"}, {"n": "1"}, {"n": "2"}]
        assert len(receiving()) == 1
        client.close()
        until_none_receive()
        assert receiving() == []


@pytest.mark.parametrize(
    ("script", "cause"),
    [
        ([status(404)], "HTTP 404 for "),
        ([status(503)], "HTTP 503 for "),
        ([INVALID_JSON], "invalid JSON body ("),
    ],
    ids=["final-status", "transient-status", "never-json"],
)
def test_a_started_request_fails_as_get_json_would(script: list[Reply], cause: str) -> None:
    with (
        ScriptedServer(script) as server,
        client_for(server, settings(max_attempts=2)) as client,
        pytest.raises(SourceError) as raised,
    ):
        client.json_of(client.start_get_bytes(PATH).result(), PATH)
    assert cause in str(raised.value)


# --- rate limiting --------------------------------------------------------------------------------


def test_rate_limiter_spaces_acquisitions_across_threads() -> None:
    limiter = RateLimiter(5.0)
    returned: list[float] = []
    lock = threading.Lock()

    def acquire_twice() -> None:
        for _ in range(2):
            limiter.acquire()
            with lock:
                returned.append(time.monotonic())

    began = time.monotonic()
    threads = [threading.Thread(target=acquire_twice) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    returned.sort()
    # The k-th acquisition (from 0) is granted no sooner than k intervals of 0.2 s.
    for k, at in enumerate(returned):
        assert at - began >= k * 0.2 - 1e-6, f"acquisition {k} after {at - began:.3f}s"
    assert returned[-1] - began < 1.6


@pytest.mark.parametrize("rate", [None, 0.0])
def test_rate_limiter_without_a_rate_never_waits(rate: float | None) -> None:
    limiter = RateLimiter(rate)
    began = time.monotonic()
    for _ in range(50):
        limiter.acquire()
    assert time.monotonic() - began < 0.2


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8765", True),
        ("http://localhost:8765/", True),
        ("http://LOCALHOST", True),
        ("http://[::1]:8765", True),
        ("https://clinicaltrials.gov", False),
        ("https://eutils.ncbi.nlm.nih.gov/entrez", False),
        ("http://127.0.0.2:8765", False),
    ],
)
def test_is_local(url: str, local: bool) -> None:
    assert is_local(url) is local


def _timed_requests(client: HttpClient, count: int) -> float:
    began = time.monotonic()
    for _ in range(count):
        client.get_json(PATH)
    return began


def test_requests_to_a_local_host_are_not_rate_limited() -> None:
    with (
        ScriptedServer([OK]) as server,
        client_for(server, settings(requests_per_second=2.0)) as client,
    ):
        began = _timed_requests(client, 5)
        elapsed = time.monotonic() - began
    assert len(server.requests) == 5
    assert elapsed < 1.0  # at 2/s the five requests would take at least 2 s


def test_requests_to_a_remote_host_are_rate_limited() -> None:
    # 127.0.0.2 is the loopback interface, but not a name the client treats as local.
    with (
        ScriptedServer([OK], host="127.0.0.2") as server,
        client_for(server, settings(requests_per_second=5.0)) as client,
    ):
        began = _timed_requests(client, 6)
    arrivals = [seen.at - began for seen in server.requests]
    assert len(arrivals) == 6
    for k, at in enumerate(arrivals):
        assert at >= k * 0.2 - 1e-6, f"request {k} arrived after {at:.3f}s"
    assert arrivals[-1] < 1.8


def test_retries_are_rate_limited_too() -> None:
    with (
        ScriptedServer([status(503), status(503), OK], host="127.0.0.2") as server,
        client_for(server, settings(max_attempts=3, requests_per_second=5.0)) as client,
    ):
        began = _timed_requests(client, 1)
    arrivals = [seen.at - began for seen in server.requests]
    assert len(arrivals) == 3
    assert arrivals[2] >= 0.4 - 1e-6


def test_a_retry_after_longer_than_the_bound_fails_at_once() -> None:
    bounded = settings()
    bounded.max_retry_after = 30.0
    with (
        ScriptedServer([status(429, **{"Retry-After": "3600"}), OK]) as server,
        client_for(server, bounded) as client,
        pytest.raises(SourceError, match="retry after 3600s"),
    ):
        client.get_json(PATH)
    assert len(server.requests) == 1


def test_two_clients_of_one_remote_host_share_its_rate_limit() -> None:
    limited = settings(requests_per_second=5.0)
    with (
        ScriptedServer([OK] * 6, host="127.0.0.2") as server,
        client_for(server, limited) as first,
        client_for(server, limited) as second,
    ):
        began = time.monotonic()
        for _ in range(3):
            first.get_json(PATH)
            second.get_json(PATH)
    arrivals = [seen.at - began for seen in server.requests]
    assert len(arrivals) == 6
    # 5/s across both clients, not 5/s each (that would let pairs arrive together). Load can
    # only delay an arrival, so each is checked against its earliest allowed time.
    for k, at in enumerate(arrivals):
        assert at >= k * 0.2 - 1e-6, f"request {k} arrived after {at:.3f}s"


def test_the_public_rate_can_be_overridden() -> None:
    client = ClinicalTrialsClient.create(
        "https://clinicaltrials.gov", None, requests_per_second=0.5
    )
    assert client.http.settings.requests_per_second == 0.5
    client.close()
