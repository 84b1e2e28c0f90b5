"""LLM cost control: the cache, the budget, failures and dagster-openai, all through the real
`openai` client talking HTTP to the local OpenAI-compatible server.

No `from __future__ import annotations` here: Dagster inspects the asset functions' `context`
annotation at definition time and rejects it as a string.
"""

import hashlib
import logging
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import httpx
import openai
import psycopg
import pytest
from dagster_openai import OpenAIResource, with_usage_metadata

from bioloupe_data.enrichment.llm import (
    DEFAULT_BASE_URL,
    LlmBudget,
    LlmStatus,
    StructuredExtractor,
    input_hash,
    openai_client_from_env,
)
from bioloupe_data.replay.openai_server import (
    OpenAICompatibleServer,
    ServerFault,
    value_for_schema,
)
from bioloupe_data.warehouse.migrate import migrate

MODEL = "gpt-test"
SYSTEM_PROMPT = "Classify the oncology drug. Answer with JSON only."
MODALITIES = ["small molecule", "monoclonal antibody", "ADC", "cell therapy", "other"]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "modality": {"type": "string", "enum": MODALITIES},
        "targets": {"type": "array", "items": {"type": "string"}},
        "mechanism": {"type": ["string", "null"]},
    },
    "required": ["modality", "targets", "mechanism"],
    "additionalProperties": False,
}
DEFAULT_ANSWER = {"modality": "small molecule", "targets": [], "mechanism": "unknown"}


def drug(n: int) -> dict[str, Any]:
    """Payloads of equal length, so every call spends the same number of tokens."""
    return {"name": f"drug-{n:03d}", "interventions": [f"drug-{n:03d} 100 mg"]}


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        migrate(connection)
        yield connection


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer() as running:
        yield running


def client_for(server: OpenAICompatibleServer, api_key: str = "test") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=api_key)


def extractor(
    client: openai.OpenAI | None,
    conn: psycopg.Connection[Any],
    *,
    prompt_version: str = "v1",
    budget: LlmBudget | None = None,
    **options: Any,
) -> StructuredExtractor:
    return StructuredExtractor(
        client,
        model=MODEL,
        prompt_version=prompt_version,
        system_prompt=SYSTEM_PROMPT,
        schema=SCHEMA,
        conn=conn,
        budget=budget,
        **options,
    )


def cache_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        """SELECT prompt_version, input_hash, response, prompt_tokens, completion_tokens
           FROM ops.llm_cache ORDER BY prompt_version, input_hash"""
    ).fetchall()


# --- migration and hashing ----------------------------------------------------------------------


def test_llm_cache_table_is_keyed_by_model_prompt_version_and_input_hash(
    conn: psycopg.Connection[Any],
) -> None:
    key = conn.execute(
        """SELECT array_agg(a.attname ORDER BY k.ord)
           FROM pg_index i
           CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = 'ops.llm_cache'::regclass AND i.indisprimary"""
    ).fetchone()
    assert key == (["model", "prompt_version", "input_hash"],)
    with pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute(
            "INSERT INTO ops.llm_cache (model, prompt_version, input_hash, response) "
            "VALUES ('m', 'v', 'h', NULL)"
        )


def test_input_hash_is_sha256_of_canonical_json() -> None:
    payload = {"b": [1, "é"], "a": {"y": None, "x": date(2024, 5, 1)}}
    canonical = '{"a":{"x":"2024-05-01","y":null},"b":[1,"é"]}'
    assert input_hash(payload) == hashlib.sha256(canonical.encode()).hexdigest()
    assert input_hash({"a": payload["a"], "b": payload["b"]}) == input_hash(payload)
    assert input_hash({**payload, "b": [1, "e"]}) != input_hash(payload)


# --- cache --------------------------------------------------------------------------------------


def test_first_extraction_calls_the_api_and_a_second_reads_the_database_cache(
    conn: psycopg.Connection[Any], server: OpenAICompatibleServer
) -> None:
    first = extractor(client_for(server), conn).extract(drug(1))
    assert (first.status, first.value, server.calls) == (LlmStatus.CALLED, DEFAULT_ANSWER, 1)
    assert first.prompt_tokens > 0 and first.completion_tokens > 0 and not first.usage_missing

    request = server.requests[0]
    assert request["model"] == MODEL
    assert request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "extraction", "schema": SCHEMA, "strict": True},
    }
    assert request["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": '{"interventions":["drug-001 100 mg"],"name":"drug-001"}'},
    ]
    assert cache_rows(conn) == [
        ("v1", input_hash(drug(1)), DEFAULT_ANSWER, first.prompt_tokens, first.completion_tokens)
    ]

    # A new extractor (as in a later run) has no memory of its own: the hit comes from the table.
    again = extractor(client_for(server), conn).extract(dict(reversed(drug(1).items())))
    assert (again.status, again.value, again.total_tokens) == (LlmStatus.CACHED, DEFAULT_ANSWER, 0)
    assert server.calls == 1


def test_a_new_prompt_version_calls_again(
    conn: psycopg.Connection[Any], server: OpenAICompatibleServer
) -> None:
    client = client_for(server)
    assert extractor(client, conn, prompt_version="v1").extract(drug(1)).status == "called"
    assert extractor(client, conn, prompt_version="v1").extract(drug(1)).status == "cached"
    assert extractor(client, conn, prompt_version="v2").extract(drug(1)).status == "called"
    assert server.calls == 2
    assert [row[0] for row in cache_rows(conn)] == ["v1", "v2"]


def test_prefetch_loads_many_cache_rows_so_extract_needs_no_database(
    conn: psycopg.Connection[Any], server: OpenAICompatibleServer, database_url: str
) -> None:
    seeding = extractor(client_for(server), conn)
    for n in range(3):
        seeding.extract(drug(n))
    payloads = [drug(n) for n in range(5)]

    with psycopg.connect(database_url, autocommit=True) as own_conn:
        reader = extractor(None, own_conn)
        assert reader.prefetch(payloads) == 3
    # Closed connection: any further query would raise. Prefetched hits and misses need none.
    outcomes = [reader.extract(p) for p in payloads]
    assert [o.status for o in outcomes] == ["cached"] * 3 + ["disabled"] * 2
    assert [o.value for o in outcomes] == [DEFAULT_ANSWER] * 3 + [None] * 2
    assert server.calls == 3


# --- budget -------------------------------------------------------------------------------------


def test_a_budget_of_n_calls_stops_at_n(
    conn: psycopg.Connection[Any], server: OpenAICompatibleServer
) -> None:
    budget = LlmBudget(max_calls=3, max_tokens=None)
    ex = extractor(client_for(server), conn, budget=budget)
    outcomes = [ex.extract(drug(n)) for n in range(6)]

    assert [o.status for o in outcomes] == ["called"] * 3 + ["budget_exhausted"] * 3
    assert [o.value for o in outcomes[3:]] == [None] * 3
    assert (server.calls, budget.calls, budget.refused, budget.exhausted) == (3, 3, 3, True)
    assert len(cache_rows(conn)) == 3
    # A spent budget still serves what is cached: the cache costs nothing.
    assert ex.extract(drug(0)).status == "cached"
    metadata = ex.metadata()
    assert metadata["llm.called"] == 3 and metadata["llm.budget_exhausted"] == 3
    assert metadata["llm.cached"] == 1
    assert metadata["llm.mode"].startswith("llm (budget exhausted")
    assert metadata["llm.budget"]["refused"] == 3


def test_a_token_budget_stops_calls_once_the_tokens_are_spent(
    conn: psycopg.Connection[Any], server: OpenAICompatibleServer
) -> None:
    probe = extractor(client_for(server), conn, prompt_version="probe").extract(drug(99))
    per_call = probe.total_tokens
    assert per_call > 0

    budget = LlmBudget(max_calls=None, max_tokens=2 * per_call + 1)
    ex = extractor(client_for(server), conn, budget=budget)
    statuses = [ex.extract(drug(n)).status for n in range(5)]

    # 0, k and 2k tokens spent are under 2k + 1: three calls; 3k is not.
    assert statuses == ["called"] * 3 + ["budget_exhausted"] * 2
    assert budget.tokens == 3 * per_call
    assert server.calls == 1 + 3


def test_budget_accounting_is_thread_safe() -> None:
    budget = LlmBudget(max_calls=500, max_tokens=None)
    granted: list[int] = []
    barrier = threading.Barrier(8)

    def spend() -> None:
        barrier.wait()
        mine = 0
        for _ in range(200):
            if budget.try_spend():
                mine += 1
                budget.record(1, 2)
        granted.append(mine)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == budget.calls == 500
    assert budget.tokens == 1500
    assert budget.refused == 8 * 200 - 500


def test_budget_rejects_negative_bounds_and_zero_allows_nothing() -> None:
    with pytest.raises(ValueError, match="max_calls"):
        LlmBudget(max_calls=-1)
    empty = LlmBudget(max_calls=None, max_tokens=0)
    assert empty.exhausted and not empty.try_spend()
    unbounded = LlmBudget()
    assert all(unbounded.try_spend() for _ in range(1000)) and not unbounded.exhausted


# --- rules-only ---------------------------------------------------------------------------------


def test_without_a_client_extraction_is_disabled_but_the_cache_still_answers(
    conn: psycopg.Connection[Any], server: OpenAICompatibleServer
) -> None:
    extractor(client_for(server), conn).extract(drug(1))
    rules_only = extractor(None, conn, disabled_reason="OPENAI_API_KEY is not set")

    assert rules_only.extract(drug(2)).status == "disabled"
    assert rules_only.extract(drug(1)).value == DEFAULT_ANSWER
    assert server.calls == 1
    metadata = rules_only.metadata()
    assert metadata["llm.mode"] == "rules-only: OPENAI_API_KEY is not set"
    assert (metadata["llm.disabled"], metadata["llm.cached"], metadata["llm.called"]) == (1, 1, 0)


def test_client_from_environment(server: OpenAICompatibleServer) -> None:
    assert openai_client_from_env({}) is None
    assert openai_client_from_env({"OPENAI_API_KEY": " ", "OPENAI_BASE_URL": server.url}) is None
    default = openai_client_from_env({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": ""})
    assert default is not None and str(default.base_url).rstrip("/") == DEFAULT_BASE_URL

    local = openai_client_from_env({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": server.url})
    assert local is not None
    assert [model.id for model in local.models.list()] == ["local-model"]


# --- servers that misbehave ---------------------------------------------------------------------


def test_a_server_without_usage_counts_zero_tokens_and_says_so(
    conn: psycopg.Connection[Any],
) -> None:
    budget = LlmBudget(max_calls=10, max_tokens=1)
    with OpenAICompatibleServer(include_usage=False) as server:
        client = client_for(server)
        raw = client.chat.completions.create(model=MODEL, messages=[])
        assert raw.usage is None

        ex = extractor(client, conn, budget=budget)
        outcomes = [ex.extract(drug(n)) for n in range(2)]

    assert [(o.status, o.value, o.total_tokens) for o in outcomes] == [
        (LlmStatus.CALLED, DEFAULT_ANSWER, 0)
    ] * 2
    assert all(o.usage_missing for o in outcomes)
    assert budget.tokens == 0 and budget.calls == 2
    assert [row[3:] for row in cache_rows(conn)] == [(None, None)] * 2
    assert ex.metadata()["llm.usage_missing"] == 2


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("this is not JSON {", "InvalidJsonResponse"),
        ("", "EmptyResponse"),
        ({"modality": "banana", "targets": [], "mechanism": None}, "SchemaMismatch"),
        ({"modality": "ADC", "targets": []}, "SchemaMismatch"),
        ({"modality": "ADC", "targets": [7], "mechanism": None}, "SchemaMismatch"),
    ],
)
def test_unusable_content_fails_without_a_cache_row(
    conn: psycopg.Connection[Any], answer: dict[str, Any] | str, error: str
) -> None:
    with OpenAICompatibleServer(responder=lambda _: answer) as server:
        ex = extractor(client_for(server), conn)
        first = ex.extract(drug(1))
        second = ex.extract(drug(1))
        calls = server.calls

    assert (first.status, first.value, first.error) == (LlmStatus.FAILED, None, error)
    assert first.total_tokens > 0  # the call was paid for, and counted
    assert second.status == "failed" and calls == 2  # nothing cached: the next try calls again
    assert cache_rows(conn) == []
    assert ex.metadata()["llm.errors"] == {error: 2}


def test_server_errors_fail_after_a_small_number_of_retries(
    conn: psycopg.Connection[Any],
) -> None:
    def fail(_: dict[str, Any]) -> dict[str, Any]:
        raise ServerFault(500, "overloaded")

    with OpenAICompatibleServer(responder=fail) as server:
        outcome = extractor(client_for(server), conn, max_retries=1).extract(drug(1))
        calls = server.calls

    assert (outcome.status, outcome.value, outcome.error) == ("failed", None, "InternalServerError")
    assert calls == 2  # one request and the one retry the extractor allows
    assert cache_rows(conn) == []


def test_unreachable_server_fails_cleanly(conn: psycopg.Connection[Any]) -> None:
    with OpenAICompatibleServer() as server:
        url = server.url
    outcome = extractor(openai.OpenAI(base_url=url, api_key="test"), conn, max_retries=0).extract(
        drug(1)
    )
    assert (outcome.status, outcome.error) == ("failed", "APIConnectionError")


def test_the_api_key_is_never_logged(
    conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-proj-SECRET0123456789abcdef"

    def reject(_: dict[str, Any]) -> dict[str, Any]:
        raise ServerFault(401, f"Incorrect API key provided: {secret}")

    caplog.set_level(logging.DEBUG)
    with OpenAICompatibleServer(responder=reject) as server:
        outcome = extractor(client_for(server, api_key=secret), conn).extract(drug(1))
        calls = server.calls

    assert (outcome.error, calls) == ("AuthenticationError", 1)  # 401 is not retried
    assert "AuthenticationError" in caplog.text
    assert "SECRET0123456789" not in caplog.text
    assert "SECRET0123456789" not in repr(outcome)


# --- the local server itself --------------------------------------------------------------------


def test_default_responder_satisfies_nested_schemas() -> None:
    schema = {
        "type": "object",
        "properties": {
            "line": {"type": "integer"},
            "score": {"type": "number"},
            "combo": {"type": "boolean"},
            "phase": {
                "anyOf": [{"type": "string", "enum": ["PHASE2", "PHASE3"]}, {"type": "null"}]
            },
            "biomarkers": {"type": "array", "items": {"type": "string"}},
            "sponsor": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "kind": {"const": "industry"}},
            },
        },
    }
    assert value_for_schema(schema) == {
        "line": 0,
        "score": 0,
        "combo": False,
        "phase": "PHASE2",
        "biomarkers": [],
        "sponsor": {"name": "unknown", "kind": "industry"},
    }


def test_server_rejects_unknown_routes_and_streaming(server: OpenAICompatibleServer) -> None:
    base = server.url
    assert httpx.get(f"{base}/nothing").status_code == 404
    streamed = httpx.post(
        f"{base}/chat/completions", json={"model": MODEL, "messages": [], "stream": True}
    )
    assert streamed.status_code == 400 and "error" in streamed.json()
    assert server.calls == 1


# --- dagster-openai -----------------------------------------------------------------------------


def drug_profiles_asset(database_url: str, payloads: list[dict[str, Any]]) -> dg.AssetsDefinition:
    @dg.asset(name="drug_profiles")
    def drug_profiles(
        context: dg.AssetExecutionContext, openai_resource: OpenAIResource
    ) -> dg.MaterializeResult:
        def forward_usage(response: Any) -> None:
            # dagster-openai's own accounting (`openai.<model>.*` metadata), public API.
            with_usage_metadata(context, None, lambda: response)()

        with (
            openai_resource.get_client(context) as client,
            psycopg.connect(database_url, autocommit=True) as conn,
        ):
            ex = extractor(client, conn, usage_callback=forward_usage)
            ex.prefetch(payloads)
            values = [ex.extract(p).value for p in payloads]
        assert all(v == DEFAULT_ANSWER for v in values)
        return dg.MaterializeResult(metadata=ex.metadata())

    return drug_profiles


def materialization_metadata(
    asset: dg.AssetsDefinition, server: OpenAICompatibleServer
) -> dict[str, Any]:
    result = dg.materialize(
        [asset], resources={"openai_resource": OpenAIResource(api_key="test", base_url=server.url)}
    )
    [materialization] = result.asset_materializations_for_node("drug_profiles")
    return {key: value.value for key, value in materialization.metadata.items()}


def test_materialization_through_openai_resource_records_usage_and_reuses_the_cache(
    conn: psycopg.Connection[Any], server: OpenAICompatibleServer, database_url: str
) -> None:
    asset = drug_profiles_asset(database_url, [drug(n) for n in range(3)])

    first = materialization_metadata(asset, server)
    assert server.calls == 3
    assert (first["llm.called"], first["llm.cached"]) == (3, 0)
    assert first[f"openai.{MODEL}.calls"] == 3
    assert first[f"openai.{MODEL}.prompt_tokens"] == first["llm.prompt_tokens"] > 0
    assert first[f"openai.{MODEL}.completion_tokens"] == first["llm.completion_tokens"] > 0
    assert first[f"openai.{MODEL}.total_tokens"] == (
        first["llm.prompt_tokens"] + first["llm.completion_tokens"]
    )

    second = materialization_metadata(asset, server)
    assert server.calls == 3
    assert (second["llm.called"], second["llm.cached"]) == (0, 3)
    assert not any(key.startswith("openai.") for key in second)


def test_dagster_openai_fails_without_usage_but_the_extractor_does_not(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    @dg.asset(name="plain_call")
    def plain_call(context: dg.AssetExecutionContext, openai_resource: OpenAIResource) -> None:
        with openai_resource.get_client(context) as client:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])

    with OpenAICompatibleServer(include_usage=False) as server:
        resources = {"openai_resource": OpenAIResource(api_key="test", base_url=server.url)}
        # dagster-openai 0.29's wrapper reads `response.usage.total_tokens` after the paid call.
        plain = dg.materialize([plain_call], resources=resources, raise_on_error=False)
        assert not plain.success and server.calls == 1
        [failure] = [event for event in plain.all_events if event.is_step_failure]
        error = failure.step_failure_data.error
        assert error is not None
        assert "'NoneType' object has no attribute 'total_tokens'" in str(error.to_string())

        metadata = materialization_metadata(drug_profiles_asset(database_url, [drug(1)]), server)
        assert server.calls == 2

    assert (metadata["llm.called"], metadata["llm.usage_missing"]) == (1, 1)
    assert not any(key.startswith("openai.") for key in metadata)
    assert [row[3:] for row in cache_rows(conn)] == [(None, None)]
