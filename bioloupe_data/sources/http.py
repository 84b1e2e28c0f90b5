"""HTTP machinery shared by every source: timeouts, retries with backoff, `Retry-After`, and a
rate limiter per base URL. Secrets passed as query parameters are redacted from every message."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
import tenacity

from bioloupe_data.memory import paused_gc

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
SECRET_PARAMS = frozenset({"api_key", "apikey", "token", "key"})
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

T = TypeVar("T")


class SourceError(RuntimeError):
    """A request that failed for good: names the source, the request and the cause."""


class HTTPStatusError(SourceError):
    """The source answered a request with a status that retrying the same request cannot fix."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TransientHTTPError(RuntimeError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def redact_url(url: str, params: Mapping[str, Any] | None = None) -> str:
    shown = {k: ("***" if k.lower() in SECRET_PARAMS else v) for k, v in (params or {}).items()}
    return f"{url}?{urlencode(shown)}" if shown else url


def redact_text(text: str, params: Mapping[str, Any] | None = None) -> str:
    """`text` with the value of every secret parameter replaced (servers echo keys back)."""
    for name, value in (params or {}).items():
        if name.lower() in SECRET_PARAMS and str(value):
            text = text.replace(str(value), "***")
    return text


def is_local(base_url: str) -> bool:
    return (urlsplit(base_url).hostname or "") in LOCAL_HOSTS


class RateLimiter:
    """At most `per_second` requests per second (thread-safe)."""

    def __init__(self, per_second: float | None) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self._interval
        if wait > 0:
            time.sleep(wait)


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(base_url: str, per_second: float | None) -> RateLimiter:
    """One limiter per base URL and rate in this process, so several clients of one host
    together stay within its limit; none for a local host (a replay server)."""
    if not per_second or is_local(base_url):
        return RateLimiter(None)
    key = (base_url.rstrip("/"), per_second)
    with _limiters_lock:
        if key not in _limiters:
            _limiters[key] = RateLimiter(per_second)
        return _limiters[key]


def _json_with_invalid_utf8(body: bytes) -> Any:
    """A JSON body that is whole but holds bytes that are not UTF-8: parsed with those bytes as
    lone surrogates, so the one record that holds them can be set aside (it cannot be stored)
    and the rest of the page is kept. Raises ValueError for anything else."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return json.loads(body.decode("utf-8", "surrogateescape"))
    raise ValueError("valid UTF-8: the body is not JSON")


def _decode_json(body: bytes) -> Any:
    """A JSON body; raises `TransientHTTPError` for one that is not (cut short on the way)."""
    try:
        with paused_gc():
            return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            return _json_with_invalid_utf8(body)
        except ValueError:
            pass
        # A truncated body is a transport fault: the next attempt usually succeeds.
        raise TransientHTTPError(f"invalid JSON body ({len(body)} bytes): {exc}") from exc


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare enough that the exponential backoff covers it


@dataclass
class RetryEvent:
    attempt: int
    wait_seconds: float
    cause: str


@dataclass
class HttpSettings:
    timeout_seconds: float = 60.0
    max_attempts: int = 6
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    requests_per_second: float | None = None
    # A longer Retry-After than this fails the request (and the step retries later) rather than
    # holding a run for hours.
    max_retry_after: float = 600.0
    user_agent: str = "bioloupe-data/0.1"


@dataclass
class HttpClient:
    """A JSON/bytes GET client for one source and base URL."""

    source: str
    base_url: str
    settings: HttpSettings = field(default_factory=HttpSettings)
    on_retry: Callable[[RetryEvent], None] | None = None
    retries: list[RetryEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._background: _Receiver | None = None
        self._receiver_lock = threading.Lock()
        self._limiter = shared_limiter(self.base_url, self.settings.requests_per_second)
        self._http = httpx.Client(
            timeout=httpx.Timeout(self.settings.timeout_seconds),
            headers={"User-Agent": self.settings.user_agent},
            follow_redirects=True,
        )

    def close(self) -> None:
        with self._receiver_lock:
            if self._background is not None:
                self._background.stop()
                self._background = None
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._request(f"{self.base_url}{path}", params, _decode_json)

    def json_of(self, body: bytes, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """The JSON of a body `path` answered with; a body that is not JSON (cut short on the
        way) counts as one retry and is fetched again the usual way."""
        try:
            return _decode_json(body)
        except TransientHTTPError as exc:
            self.record_retry(RetryEvent(1, 0.0, str(exc)))
            return self.get_json(path, params)

    def start_get_bytes(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        check: Callable[[bytes], None] | None = None,
    ) -> PendingGet[bytes]:
        """`get_bytes`, started in the background: `result()` waits for the body."""
        return self.start_get(path, params, check, then=lambda body: body)

    def start_get(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        check: Callable[[bytes], None] | None = None,
        *,
        then: Callable[[bytes], T],
    ) -> PendingGet[T]:
        """`get_bytes`, started in the background, and `then` of the body, in the background
        too: `result()` waits for both. For work on bytes that is mostly free of the GIL
        (hashing), not for parsing."""
        params = dict(params or {})
        return self._receiver.start(
            PendingGet(lambda made: made), lambda: then(self.get_bytes(path, params, check))
        )

    @property
    def _receiver(self) -> _Receiver:
        with self._receiver_lock:
            if self._background is None:
                self._background = _Receiver(f"{self.source}-requests")
            return self._background

    def get_bytes(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        check: Callable[[bytes], None] | None = None,
    ) -> bytes:
        """The body of a GET; `check` raises ValueError for a body that arrived incomplete
        (cut short by the network or a proxy), which is retried like a transport fault."""

        def checked(body: bytes) -> bytes:
            if check is not None:
                try:
                    check(body)
                except ValueError as exc:
                    raise TransientHTTPError(f"incomplete body ({len(body)} bytes): {exc}") from exc
            return body

        return self._request(f"{self.base_url}{path}", params, checked)

    def _request(
        self, url: str, params: Mapping[str, Any] | None, decode: Callable[[bytes], Any]
    ) -> Any:
        shown = redact_url(url, params)

        def once() -> Any:
            self._limiter.acquire()
            try:
                response = self._http.get(url, params=dict(params or {}))
                body = response.read()
            except httpx.TimeoutException as exc:
                raise TransientHTTPError(
                    f"timed out after {self.settings.timeout_seconds}s"
                ) from exc
            except httpx.TransportError as exc:
                raise TransientHTTPError(f"connection error: {type(exc).__name__}") from exc
            if response.status_code in RETRYABLE_STATUS:
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None and retry_after > self.settings.max_retry_after:
                    raise SourceError(
                        f"{self.source}: HTTP {response.status_code} for {shown} asks to retry "
                        f"after {retry_after:.0f}s (more than {self.settings.max_retry_after:.0f}s)"
                    )
                raise TransientHTTPError(f"HTTP {response.status_code}", retry_after)
            if response.status_code >= 400:
                detail = redact_text(body[:300].decode("utf-8", "replace"), params)
                raise HTTPStatusError(
                    f"{self.source}: HTTP {response.status_code} for {shown}: {detail}",
                    response.status_code,
                )
            return decode(body)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientHTTPError),
            stop=tenacity.stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            before_sleep=self._record_retry,
            reraise=True,
        )
        try:
            return retrying(once)
        except TransientHTTPError as exc:
            raise SourceError(
                f"{self.source}: {exc} for {shown} (gave up after "
                f"{self.settings.max_attempts} attempts)"
            ) from None

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = min(
            self.settings.backoff_max,
            self.settings.backoff_initial * 2 ** (state.attempt_number - 1),
        )
        jittered = backoff / 2 + random.uniform(0, backoff / 2)
        retry_after = getattr(exc, "retry_after", None)
        return max(jittered, retry_after) if retry_after is not None else jittered

    def _record_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.record_retry(RetryEvent(state.attempt_number, wait, str(exc)))

    def record_retry(self, event: RetryEvent) -> None:
        """Count a retry (also one a source client makes above single requests) and report it."""
        self.retries.append(event)
        if self.on_retry:
            self.on_retry(event)


class PendingGet(Generic[T]):
    """A GET whose request runs in the background while the caller works, so the source's time
    to answer overlaps the caller's work on the previous answer.

    Only the bytes are received in the background (retried as `get_bytes` retries them), and
    at most hashed there (`HttpClient.start_get`); what is parsed of them is parsed in the
    thread that asks for the result, so nothing parsed outlives the caller's handling of it."""

    def __init__(self, finish: Callable[[Any], T]) -> None:
        self._finish = finish
        self._done = threading.Event()
        self._body: Any = None
        self._error: BaseException | None = None

    def receive(self, get: Callable[[], Any]) -> None:
        try:
            self._body = get()
        except BaseException as exc:  # handed to the thread that asks for the result
            self._error = exc
        finally:
            self._done.set()

    def result(self) -> T:
        """What the request returned; raises what the request raised."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        body, self._body = self._body, None
        assert body is not None
        return self._finish(body)


class _Receiver:
    """The one thread that receives a client's background requests, in the order they were
    started. One long-lived thread rather than one per request: the memory a thread's bodies
    came from is reused by the next body instead of spread over the allocator's per-thread
    arenas. A daemon: nothing waits at exit for a request nobody asks for."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[PendingGet[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def start(self, pending: PendingGet[T], get: Callable[[], Any]) -> PendingGet[T]:
        self._queue.put((pending, get))
        return pending

    def stop(self) -> None:
        """End the thread once the requests started before have been received."""
        self._queue.put(None)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            pending, get = job
            pending.receive(get)
