"""Fault injection for the replay server: what a public API and the network between do to a
client now and then, on demand and reproducibly.

A spec is a comma-separated list of rules ``KIND[=ARG]:WHEN`` and an optional ``seed=N``:

- ``429[=SECONDS]``: HTTP 429 with ``Retry-After: SECONDS`` (default 1).
- ``500``, ``502``, ``503``: that status, with the endpoint's usual error body.
- ``reset``: the connection is closed before any response.
- ``slow[=SECONDS]``: the response is held back SECONDS (default 5) before it is sent, to run
  past a client's timeout.
- ``truncate``: a well-formed HTTP response whose body is cut in half (invalid JSON or XML).
- ``expired_token``: a request carrying a ``pageToken`` is answered HTTP 400, as for a token the
  API no longer knows; requests without one are left alone.
- ``duplicate``: a page of studies lists its first study a second time, at its end (what paging
  over a result set that changes under it can do); other requests are left alone.

``WHEN`` says which requests a rule hits, counting only data requests (``/api/v2/studies``,
``esearch.fcgi``, ``efetch.fcgi``) from 1:

- a probability in (0, 1]: each request, independently (a seeded generator: the same spec and
  the same requests give the same faults);
- ``#N`` or ``#N-M``: the Nth request, or the Nth to the Mth;
- ``*``: every request (a persistent fault).

A request gets at most one fault, the first rule's that hits it. Example:
``429=2:0.1,reset:#3,slow=3:#5-6,seed=7``.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass

KINDS = frozenset(
    {"429", "500", "502", "503", "reset", "slow", "truncate", "expired_token", "duplicate"}
)
DEFAULT_ARGUMENTS = {"429": 1.0, "slow": 5.0}
_RULE = re.compile(r"^(?P<kind>[a-z_0-9]+)(?:=(?P<arg>[0-9.]+))?:(?P<when>.+)$")
_ORDINALS = re.compile(r"^#(?P<first>[1-9][0-9]*)(?:-(?P<last>[1-9][0-9]*))?$")


class FaultSpecError(ValueError):
    """A fault spec that cannot be read; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    kind: str
    argument: float | None
    probability: float | None = None  # each request with this chance
    first: int | None = None  # or the requests first..last (1-based)
    last: int | None = None
    always: bool = False

    def hits(self, number: int, draw: float) -> bool:
        if self.always:
            return True
        if self.first is not None and self.last is not None:
            return self.first <= number <= self.last
        return self.probability is not None and draw < self.probability


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    argument: float | None

    @property
    def status(self) -> int | None:
        return int(self.kind) if self.kind.isdigit() else None


def parse_faults(spec: str) -> tuple[list[FaultRule], int]:
    """The rules of `spec` and its seed (0 unless given)."""
    rules: list[FaultRule] = []
    seed = 0
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part.startswith("seed="):
            try:
                seed = int(part.removeprefix("seed="))
            except ValueError:
                raise FaultSpecError(f"{part!r}: the seed must be an integer") from None
            continue
        match = _RULE.match(part)
        if match is None:
            raise FaultSpecError(f"{part!r}: expected KIND[=ARG]:WHEN, for example 429=2:0.1")
        kind, when = match["kind"], match["when"].strip()
        if kind not in KINDS:
            raise FaultSpecError(f"{part!r}: unknown fault {kind!r}; known: {sorted(KINDS)}")
        argument = float(match["arg"]) if match["arg"] else DEFAULT_ARGUMENTS.get(kind)
        rules.append(_rule(part, kind, argument, when))
    return rules, seed


def _rule(part: str, kind: str, argument: float | None, when: str) -> FaultRule:
    if when == "*":
        return FaultRule(kind, argument, always=True)
    ordinals = _ORDINALS.match(when)
    if ordinals:
        first = int(ordinals["first"])
        last = int(ordinals["last"] or first)
        if last < first:
            raise FaultSpecError(f"{part!r}: #{first}-{last} is an empty range")
        return FaultRule(kind, argument, first=first, last=last)
    try:
        probability = float(when)
    except ValueError:
        raise FaultSpecError(f"{part!r}: WHEN must be a probability, #N, #N-M or *") from None
    if not 0 < probability <= 1:
        raise FaultSpecError(f"{part!r}: a probability must be in (0, 1]")
    return FaultRule(kind, argument, probability=probability)


class FaultPlan:
    """Decides, request by request, which fault (if any) a data request gets; thread-safe, and
    counts what it injected."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.rules, seed = parse_faults(spec)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._requests = 0
        self._injected: Counter[str] = Counter()

    def next_fault(self, *, has_page_token: bool) -> Fault | None:
        with self._lock:
            self._requests += 1
            number = self._requests
            # One draw per rule and request, hit or not, so a rule's faults do not depend on
            # what the rules before it did.
            draws = [self._random.random() for _ in self.rules]
            for rule, draw in zip(self.rules, draws, strict=True):
                if rule.kind == "expired_token" and not has_page_token:
                    continue
                if rule.hits(number, draw):
                    self._injected[rule.kind] += 1
                    return Fault(rule.kind, rule.argument)
            return None

    @property
    def injected(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._injected.items()))
