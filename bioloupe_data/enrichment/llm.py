"""LLM structured extraction with a PostgreSQL cache and a per-run budget (no dagster import).

Enrichment asks an LLM only where rules cannot tell. Every answer is cached in ``ops.llm_cache``
under (model, prompt version, input hash), so re-runs and backfills never pay twice; a
``LlmBudget`` bounds the calls and tokens of one run and, once spent, turns LLM use off cleanly
(the caller keeps its rules-only values and the outcome says why). Without an API key there is
no client and every uncached extraction is ``disabled``.

Behaviour of :meth:`StructuredExtractor.extract`, in order:

1. the cache (rows loaded by :meth:`~StructuredExtractor.prefetch`, else one SELECT) → ``cached``,
   even when the budget is spent or there is no client: a cached answer costs nothing;
2. no client → ``disabled``; budget spent → ``budget_exhausted`` (no request is made);
3. one chat-completions request with a strict ``json_schema`` response format. A response that
   is JSON and matches the schema is stored (``INSERT … ON CONFLICT DO NOTHING``) → ``called``.
   API errors (after the client's own ``max_retries``, 1 by default), content that is not JSON
   or does not match the schema → ``failed`` with the error's class name; nothing is cached, so
   a later run tries again. Nothing is raised for these.

A response without ``usage`` (some OpenAI-compatible servers omit it) counts 0 tokens and sets
``usage_missing``; its cache row has NULL token counts.

dagster-openai: ``OpenAIResource.get_client(context)`` wraps ``chat.completions.create`` with a
usage recorder that reads ``response.usage.total_tokens`` *after* the request returned, so a
response without ``usage`` raises ``AttributeError`` and the paid answer is lost. The extractor
therefore sends requests through ``client.with_options(max_retries=…, timeout=…)``, a copy of the
client whose endpoints are not wrapped, and hands every response that does carry usage to
``usage_callback``. In an asset, pass
``lambda r: dagster_openai.with_usage_metadata(context, None, lambda: r)()`` to get
dagster-openai's usual ``openai.<model>.*`` materialization metadata; :meth:`metadata` adds the
extractor's own counts (calls, cache hits, budget refusals, failures, tokens, usage missing).

The API key is never logged: failures are logged with the error class only, since some API
error messages quote part of the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import openai
import psycopg
from openai.types.chat import ChatCompletion
from psycopg.types.json import Jsonb

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MAX_RETRIES = 1
DEFAULT_TIMEOUT_SECONDS = 60.0

UsageCallback = Callable[[ChatCompletion], None]


@dataclass(frozen=True, slots=True)
class LlmPrompt:
    """What an extraction asks: bump `version` whenever the prompt or schema changes (cached
    answers are keyed by it)."""

    version: str
    system: str
    schema: Mapping[str, Any]


class LlmStatus(StrEnum):
    CACHED = "cached"
    CALLED = "called"
    BUDGET_EXHAUSTED = "budget_exhausted"
    DISABLED = "disabled"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class LlmOutcome:
    """What one extraction produced. `value` is None unless status is cached or called."""

    status: LlmStatus
    value: dict[str, Any] | None
    input_hash: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_missing: bool = False
    error: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# --- budget -------------------------------------------------------------------------------------


class LlmBudget:
    """Calls and tokens one run may spend; None means unbounded. Thread-safe.

    `try_spend()` reserves one call before a request; `record()` adds the tokens the response
    reported. Tokens are known only after a call, so the token bound is checked before each call:
    the calls in flight when it is crossed may overshoot it by their own tokens.
    """

    def __init__(self, max_calls: int | None = None, max_tokens: int | None = None) -> None:
        for name, bound in (("max_calls", max_calls), ("max_tokens", max_tokens)):
            if bound is not None and bound < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {bound}")
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        self._calls = 0
        self._tokens = 0
        self._refused = 0

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def tokens(self) -> int:
        with self._lock:
            return self._tokens

    @property
    def refused(self) -> int:
        """How many calls `try_spend` turned down."""
        with self._lock:
            return self._refused

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._exhausted_locked()

    def _exhausted_locked(self) -> bool:
        calls_spent = self.max_calls is not None and self._calls >= self.max_calls
        tokens_spent = self.max_tokens is not None and self._tokens >= self.max_tokens
        return calls_spent or tokens_spent

    def try_spend(self) -> bool:
        """Reserve one call; False (and nothing reserved) once the budget is spent."""
        with self._lock:
            if self._exhausted_locked():
                self._refused += 1
                return False
            self._calls += 1
            return True

    def record(self, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self._tokens += max(0, prompt_tokens) + max(0, completion_tokens)


# --- hashing and validation ---------------------------------------------------------------------


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def canonical_json(payload: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, non-ASCII kept; dates and datetimes as ISO 8601."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def input_hash(payload: Mapping[str, Any]) -> str:
    """sha256 (hex) of the payload's canonical JSON: equal payloads hash equal in any key order."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class LlmResponseError(ValueError):
    """The API answered, but not with a usable object."""


class EmptyResponse(LlmResponseError):
    pass


class InvalidJsonResponse(LlmResponseError):
    pass


class SchemaMismatch(LlmResponseError):
    pass


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _type_matches(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _JSON_TYPES.get(kind, (object,)))


def schema_violations(value: Any, schema: Mapping[str, Any], path: str = "$") -> list[str]:
    """Violations of the subset of JSON Schema that strict structured outputs use
    (type, enum, const, anyOf, required, properties, additionalProperties: false, items)."""
    if "anyOf" in schema:
        options = schema["anyOf"]
        if all(schema_violations(value, option, path) for option in options):
            return [f"{path}: matches none of anyOf"]
        return []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_type_matches(value, kind) for kind in kinds):
            return [f"{path}: expected {'|'.join(kinds)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} not in enum"]
    if "const" in schema and value != schema["const"]:
        return [f"{path}: {value!r} is not the constant {schema['const']!r}"]
    if isinstance(value, dict):
        return _object_violations(value, schema, path)
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [v for i, item in enumerate(value) for v in _item_violations(item, schema, path, i)]
    return []


def _item_violations(item: Any, schema: Mapping[str, Any], path: str, index: int) -> list[str]:
    return schema_violations(item, schema["items"], f"{path}[{index}]")


def _object_violations(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> list[str]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    problems = [
        f"{path}: missing {key!r}" for key in schema.get("required", ()) if key not in value
    ]
    if schema.get("additionalProperties") is False:
        problems += [f"{path}: unexpected {key!r}" for key in value if key not in properties]
    for key, sub in properties.items():
        if key in value:
            problems += schema_violations(value[key], sub, f"{path}.{key}")
    return problems


def parse_content(content: str | None, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The message content as an object matching `schema`, or an LlmResponseError."""
    if not content:
        raise EmptyResponse("the response has no message content")
    try:
        value = json.loads(content)
    except ValueError:
        raise InvalidJsonResponse("the message content is not JSON") from None
    if not isinstance(value, dict):
        raise SchemaMismatch(f"expected a JSON object, got {type(value).__name__}")
    problems = schema_violations(value, schema)
    if problems:
        raise SchemaMismatch("; ".join(problems[:5]))
    return value


# --- client from the environment ----------------------------------------------------------------


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def openai_client_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    max_retries: int = DEFAULT_MAX_RETRIES,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> openai.OpenAI | None:
    """An OpenAI client from `OPENAI_API_KEY` and `OPENAI_BASE_URL` (an OpenAI-compatible local
    server), or None without a key (rules only). Empty variables count as unset."""
    environ = os.environ if environ is None else environ
    api_key = _env(environ, "OPENAI_API_KEY")
    if api_key is None:
        return None
    base_url = _env(environ, "OPENAI_BASE_URL") or DEFAULT_BASE_URL
    return openai.OpenAI(
        api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
    )


# --- extraction ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Usage:
    prompt_tokens: int
    completion_tokens: int
    missing: bool


def _usage_of(response: ChatCompletion) -> _Usage:
    usage = response.usage
    if usage is None:
        return _Usage(0, 0, missing=True)
    return _Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, missing=False)


def _content_of(response: ChatCompletion) -> str | None:
    if not response.choices:
        return None
    return response.choices[0].message.content


class _Stats:
    """Thread-safe counts of outcomes, for materialization metadata."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usage_missing = 0

    def add(self, outcome: LlmOutcome) -> LlmOutcome:
        with self._lock:
            self.statuses[outcome.status.value] += 1
            if outcome.error:
                self.errors[outcome.error] += 1
            if outcome.status is not LlmStatus.CACHED:
                self.prompt_tokens += outcome.prompt_tokens
                self.completion_tokens += outcome.completion_tokens
                self.usage_missing += int(outcome.usage_missing)
        return outcome

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **{f"llm.{status.value}": self.statuses[status.value] for status in LlmStatus},
                "llm.prompt_tokens": self.prompt_tokens,
                "llm.completion_tokens": self.completion_tokens,
                "llm.usage_missing": self.usage_missing,
                "llm.errors": dict(self.errors),
            }


class StructuredExtractor:
    """Extract a JSON object matching `schema` from payloads, through the cache and the budget.

    `conn` is an autocommit psycopg connection to the warehouse (migrated: ``ops.llm_cache``).
    `client` None means rules only; `disabled_reason` then says why in :meth:`metadata`.
    Bump `prompt_version` whenever `system_prompt` or `schema` changes: the cache key is
    (model, prompt_version, input_hash(payload)) and does not look at the prompt text.
    """

    def __init__(
        self,
        client: openai.OpenAI | None,
        *,
        model: str,
        prompt_version: str,
        system_prompt: str,
        schema: Mapping[str, Any],
        conn: psycopg.Connection[Any],
        budget: LlmBudget | None = None,
        schema_name: str = "extraction",
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        usage_callback: UsageCallback | None = None,
        disabled_reason: str = "no OpenAI client (OPENAI_API_KEY is not set)",
    ) -> None:
        self.model = model
        self.prompt_version = prompt_version
        self.system_prompt = system_prompt
        self.schema = schema
        self.schema_name = schema_name
        self.budget = budget if budget is not None else LlmBudget()
        self.usage_callback = usage_callback
        self.disabled_reason = disabled_reason
        # A copy with its own retry and timeout settings; its endpoints carry no dagster-openai
        # wrapper (see the module docstring), and it shares the original's connection pool.
        self._client = (
            client.with_options(max_retries=max_retries, timeout=timeout)
            if client is not None
            else None
        )
        self._conn = conn
        self._db_lock = threading.Lock()
        self._memo_lock = threading.Lock()
        self._memo: dict[str, dict[str, Any] | None] = {}
        self._stats = _Stats()

    @property
    def enabled(self) -> bool:
        return self._client is not None

    # cache ---------------------------------------------------------------------------------------

    def prefetch(self, payloads: Iterable[Mapping[str, Any]]) -> int:
        """Load the cached answers for many payloads in one query; return how many were cached.

        Afterwards `extract` on any of these payloads reads no more from the database.
        """
        hashes = sorted({input_hash(p) for p in payloads} - self._known_hashes())
        if not hashes:
            return 0
        with self._db_lock:
            rows = self._conn.execute(
                """SELECT input_hash, response FROM ops.llm_cache
                   WHERE model = %s AND prompt_version = %s AND input_hash = ANY(%s)""",
                (self.model, self.prompt_version, hashes),
            ).fetchall()
        found = {h: response for h, response in rows}
        with self._memo_lock:
            for h in hashes:
                self._memo.setdefault(h, found.get(h))
        return len(found)

    def _known_hashes(self) -> set[str]:
        with self._memo_lock:
            return set(self._memo)

    def _cached(self, key: str) -> dict[str, Any] | None:
        with self._memo_lock:
            if key in self._memo:
                return self._memo[key]
        with self._db_lock:
            row = self._conn.execute(
                """SELECT response FROM ops.llm_cache
                   WHERE model = %s AND prompt_version = %s AND input_hash = %s""",
                (self.model, self.prompt_version, key),
            ).fetchone()
        return row[0] if row else None

    def _store(self, key: str, value: dict[str, Any], usage: _Usage) -> None:
        prompt = None if usage.missing else usage.prompt_tokens
        completion = None if usage.missing else usage.completion_tokens
        with self._db_lock, self._conn.transaction():
            self._conn.execute(
                """INSERT INTO ops.llm_cache
                       (model, prompt_version, input_hash, response,
                        prompt_tokens, completion_tokens)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (model, prompt_version, input_hash) DO NOTHING""",
                (self.model, self.prompt_version, key, Jsonb(value), prompt, completion),
            )
        with self._memo_lock:
            self._memo[key] = value

    # extraction ----------------------------------------------------------------------------------

    def extract(self, payload: Mapping[str, Any]) -> LlmOutcome:
        key = input_hash(payload)
        cached = self._cached(key)
        if cached is not None:
            return self._stats.add(LlmOutcome(LlmStatus.CACHED, cached, key))
        if self._client is None:
            return self._stats.add(LlmOutcome(LlmStatus.DISABLED, None, key))
        if not self.budget.try_spend():
            return self._stats.add(LlmOutcome(LlmStatus.BUDGET_EXHAUSTED, None, key))
        return self._stats.add(self._call(self._client, payload, key))

    def _call(self, client: openai.OpenAI, payload: Mapping[str, Any], key: str) -> LlmOutcome:
        try:
            response = self._request(client, payload)
        except openai.OpenAIError as exc:
            return self._failed(key, exc, _Usage(0, 0, missing=False))
        usage = _usage_of(response)
        self.budget.record(usage.prompt_tokens, usage.completion_tokens)
        try:
            value = parse_content(_content_of(response), self.schema)
        except LlmResponseError as exc:
            return self._failed(key, exc, usage)
        self._store(key, value, usage)
        if self.usage_callback is not None and not usage.missing:
            self.usage_callback(response)
        return LlmOutcome(
            LlmStatus.CALLED,
            value,
            key,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            usage_missing=usage.missing,
        )

    def _request(self, client: openai.OpenAI, payload: Mapping[str, Any]) -> ChatCompletion:
        return client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system", "content": self.system_prompt},
                {"role": "user", "content": canonical_json(payload)},
            ],
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": self.schema_name,
                    "schema": dict(self.schema),
                    "strict": True,
                },
            },
        )

    def _failed(self, key: str, exc: Exception, usage: _Usage) -> LlmOutcome:
        error = type(exc).__name__
        # The class only: API error messages may quote part of the API key.
        logger.warning(
            "LLM extraction failed (model %s, prompt %s, input %s): %s",
            self.model,
            self.prompt_version,
            key[:12],
            error,
        )
        return LlmOutcome(
            LlmStatus.FAILED,
            None,
            key,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            usage_missing=usage.missing,
            error=error,
        )

    # reporting -----------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Counts for materialization metadata (plain values: str, int, dict)."""
        mode = "llm" if self.enabled else f"rules-only: {self.disabled_reason}"
        if self.enabled and self.budget.exhausted:
            mode = "llm (budget exhausted: rules-only for the rest)"
        return {
            "llm.mode": mode,
            "llm.model": self.model,
            "llm.prompt_version": self.prompt_version,
            **self._stats.snapshot(),
            "llm.budget": {
                "max_calls": self.budget.max_calls,
                "max_tokens": self.budget.max_tokens,
                "calls": self.budget.calls,
                "tokens": self.budget.tokens,
                "refused": self.budget.refused,
            },
        }
