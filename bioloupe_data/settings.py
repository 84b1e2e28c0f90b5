"""Settings that shape the definitions themselves (not run-time resources).

Read only when the definitions load (`definitions.py`'s `@dg.definitions` function), never at
import. An empty variable counts as unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date

DEFAULT_START_DATE = "2000-01-01"
DEFAULT_CATCH_UP_DAYS = 30
DEFAULT_CATCH_UP_ATTEMPTS = 3
DEFAULT_CATCH_UP_INTERVAL_SECONDS = 300


def env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _positive_int(name: str, default: int) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class CatchUpSettings:
    """The catch-up sensor: how many days back it looks, how often a failed day is retried,
    how often it ticks."""

    lookback_days: int = DEFAULT_CATCH_UP_DAYS
    max_attempts: int = DEFAULT_CATCH_UP_ATTEMPTS
    interval_seconds: int = DEFAULT_CATCH_UP_INTERVAL_SECONDS

    @classmethod
    def from_env(cls) -> CatchUpSettings:
        return cls(
            lookback_days=_positive_int("BIOLOUPE_CATCH_UP_DAYS", DEFAULT_CATCH_UP_DAYS),
            max_attempts=_positive_int("BIOLOUPE_CATCH_UP_MAX_ATTEMPTS", DEFAULT_CATCH_UP_ATTEMPTS),
            interval_seconds=_positive_int(
                "BIOLOUPE_CATCH_UP_INTERVAL_SECONDS", DEFAULT_CATCH_UP_INTERVAL_SECONDS
            ),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    start_date: str
    catch_up: CatchUpSettings = field(default_factory=CatchUpSettings)

    @classmethod
    def from_env(cls) -> Settings:
        start = env("BIOLOUPE_START_DATE") or DEFAULT_START_DATE
        try:
            date.fromisoformat(start)
        except ValueError:
            raise ValueError(f"BIOLOUPE_START_DATE must be YYYY-MM-DD, got {start!r}") from None
        return cls(start_date=start, catch_up=CatchUpSettings.from_env())
