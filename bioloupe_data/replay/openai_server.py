"""A local OpenAI-compatible chat-completions server for tests and the offline demo.

It speaks just enough of the OpenAI HTTP API for the real ``openai`` client (and therefore
``dagster_openai.OpenAIResource``) to talk to it:

- ``POST /v1/chat/completions`` answers with a ``chat.completion`` object whose only choice's
  ``message.content`` is ``json.dumps(responder(request))`` (a ``str`` returned by the responder
  is sent verbatim, which is how a test produces content that is not JSON). ``usage`` counts
  tokens as about four characters each (prompt: the messages' text; completion: the content),
  and is left out of the body with ``include_usage=False``, as some local servers do.
  A responder that raises ``ServerFault(status)`` makes the server answer with that status and an
  OpenAI-style error body; any other exception is a 500. Streaming (``"stream": true``) is a 400.
- ``GET /v1/models`` lists one model, ``local-model``.

The default responder returns a deterministic object that satisfies the request's
``response_format.json_schema.schema``: every property is filled by its type (first ``enum``
value, ``"unknown"`` for strings, ``0`` for numbers, ``false`` for booleans, ``[]`` for arrays,
nested objects recursively). Without a schema it returns ``{}``.

``calls`` counts chat-completion requests (failed ones included); ``requests`` keeps their
parsed JSON bodies in arrival order. Headers, and therefore API keys, are never kept or logged.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
LOCAL_MODEL = "local-model"
CHARS_PER_TOKEN = 4

Responder = Callable[[dict[str, Any]], "dict[str, Any] | str"]


class ServerFault(Exception):
    """Raised by a responder to make the server answer with an HTTP error status."""

    def __init__(self, status: int = 500, message: str = "injected server fault") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def count_tokens(text: str) -> int:
    """A stand-in for a tokenizer: about four characters per token, at least one."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def prompt_text(request: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return "\n".join(parts)


def request_schema(request: Mapping[str, Any]) -> Mapping[str, Any] | None:
    response_format = request.get("response_format")
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return None
    json_schema = response_format.get("json_schema")
    schema = json_schema.get("schema") if isinstance(json_schema, Mapping) else None
    return schema if isinstance(schema, Mapping) else None


def value_for_schema(schema: Mapping[str, Any]) -> Any:
    """A deterministic, plausible value that satisfies `schema` (the subset strict mode uses)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if options:
            return value_for_schema(options[0])
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        kind = non_null[0] if non_null else "null"
    return _VALUE_BY_TYPE.get(kind, _object_value)(schema)


def _object_value(schema: Mapping[str, Any]) -> dict[str, Any]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    return {name: value_for_schema(sub) for name, sub in properties.items()}


_VALUE_BY_TYPE: dict[str | None, Callable[[Mapping[str, Any]], Any]] = {
    "string": lambda _: "unknown",
    "number": lambda _: 0,
    "integer": lambda _: 0,
    "boolean": lambda _: False,
    "array": lambda _: [],
    "null": lambda _: None,
    "object": _object_value,
}


def schema_responder(request: dict[str, Any]) -> dict[str, Any]:
    """The default responder: an object satisfying the request's JSON schema."""
    schema = request_schema(request)
    return _object_value(schema) if schema is not None else {}


def completion_body(
    request: Mapping[str, Any], content: str, *, include_usage: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(request.get("model") or LOCAL_MODEL),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "system_fingerprint": "bioloupe-local",
    }
    if include_usage:
        prompt_tokens = count_tokens(prompt_text(request))
        completion_tokens = count_tokens(content)
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return body


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class OpenAICompatibleServer:
    """Context manager running the server on 127.0.0.1 (an ephemeral port by default)."""

    def __init__(
        self,
        responder: Responder | None = None,
        include_usage: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder: Responder = responder or schema_responder
        self.include_usage = include_usage
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.openai_server = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def start(self) -> OpenAICompatibleServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="openai-compatible-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(request)

    def complete(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one chat-completion request: (HTTP status, JSON body)."""
        self.record(request)
        if request.get("stream"):
            return HTTPStatus.BAD_REQUEST, error_body(400, "streaming is not supported")
        try:
            answer = self.responder(request)
        except ServerFault as fault:
            return fault.status, error_body(fault.status, fault.message)
        except Exception as exc:  # a broken responder is the server's 500, as on a real server
            return HTTPStatus.INTERNAL_SERVER_ERROR, error_body(500, type(exc).__name__)
        content = answer if isinstance(answer, str) else json.dumps(answer)
        return HTTPStatus.OK, completion_body(request, content, include_usage=self.include_usage)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bioloupe-openai-local/1"
    error_content_type: ClassVar[str] = "application/json"

    @property
    def owner(self) -> OpenAICompatibleServer:
        return self.server.openai_server  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0].rstrip("/") == MODELS_PATH:
            model = {"id": LOCAL_MODEL, "object": "model", "created": 0, "owned_by": "bioloupe"}
            self._send(HTTPStatus.OK, {"object": "list", "data": [model]})
        else:
            self._send(HTTPStatus.NOT_FOUND, error_body(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        body = self._read_body()
        if self.path.split("?", 1)[0].rstrip("/") != CHAT_COMPLETIONS_PATH:
            self._send(HTTPStatus.NOT_FOUND, error_body(404, f"no route {self.path}"))
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            self._send(HTTPStatus.BAD_REQUEST, error_body(400, "request body is not JSON"))
            return
        if not isinstance(request, dict):
            self._send(HTTPStatus.BAD_REQUEST, error_body(400, "request body is not an object"))
            return
        status, answer = self.owner.complete(request)
        self._send(status, answer)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (their headers carry the API key)."""
