"""Driving `dagster dev` (webserver and daemon) from outside, as a person at the UI would: the
daemon benchmark and the end-to-end tests share it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Variables of the caller's environment that must not reach a stack started for a measurement
# or a test: it gets exactly the configuration it is given.
PROJECT_VARIABLES = ("BIOLOUPE_", "CTGOV_", "PUBMED_", "NCBI_", "OPENAI_", "DAGSTER_")

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status }
  }
}"""
TERMINAL_BACKFILL_STATUSES = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)


def clean_environment() -> dict[str, str]:
    """This process's environment without the project's own variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(PROJECT_VARIABLES)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """One query to the webserver at `url`; GraphQL errors raise."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    if "errors" in answer:
        raise RuntimeError(f"GraphQL error: {answer['errors']}")
    return answer["data"]


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, log: Path, every: float = 1.0
) -> T:
    """`probe()` until it returns something truthy; on timeout the error quotes `log`'s end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise TimeoutError(f"timed out waiting for {what}; dagster dev log ends:\n{tail}")


def answers(url: str) -> bool:
    """Whether the webserver at `url` answers GraphQL."""
    try:
        return bool(graphql(url, "{ version }").get("version"))
    except (OSError, RuntimeError):
        return False


@contextmanager
def dagster_dev(
    command: Sequence[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[str]:
    """`command` (a `dagster dev` or `bioloupe-data dev` without its address) on a free port
    until the block ends, its output in `log`; yields the webserver's URL once it answers."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the webserver", lambda: answers(url), 300, log)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
