"""Settings that shape the definitions themselves (not run-time resources).

Read only when the definitions load (`definitions.py`'s `@dg.definitions` function), never at
import. An empty variable counts as unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from enum import Enum

DEFAULT_START_DATE = "2000-01-01"
# The landscape has a partition per day and tumor area (14): from 2016 that is about 56,000,
# under the 100,000 partitions Dagster recommends per asset; from 2000 it would be 137,000.
DEFAULT_LANDSCAPE_START_DATE = "2016-01-01"
DEFAULT_CATCH_UP_DAYS = 30
DEFAULT_CATCH_UP_ATTEMPTS = 3
DEFAULT_CATCH_UP_INTERVAL_SECONDS = 300


class SettingError(ValueError):
    """A variable of the environment holds what it cannot: the message names the variable and
    says what it takes (never its value when that may be a secret). The command line reports it
    as an error, without a traceback."""


def env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def positive_int(name: str, default: int) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise SettingError(f"{name} must be a positive whole number, got {value!r}")
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
            lookback_days=positive_int("BIOLOUPE_CATCH_UP_DAYS", DEFAULT_CATCH_UP_DAYS),
            max_attempts=positive_int("BIOLOUPE_CATCH_UP_MAX_ATTEMPTS", DEFAULT_CATCH_UP_ATTEMPTS),
            interval_seconds=positive_int(
                "BIOLOUPE_CATCH_UP_INTERVAL_SECONDS", DEFAULT_CATCH_UP_INTERVAL_SECONDS
            ),
        )


def _date(name: str, default: str) -> str:
    value = env(name) or default
    try:
        date.fromisoformat(value)
    except ValueError:
        raise SettingError(f"{name} must be YYYY-MM-DD, got {value!r}") from None
    return value


class Environment(Enum):
    """`BIOLOUPE_ENV`: where the code location runs. Resources differ per environment in one
    place, `definitions.build_resources`."""

    LOCAL = "local"
    STAGING = "staging"
    PROD = "prod"

    @classmethod
    def from_env(cls) -> Environment:
        value = (env("BIOLOUPE_ENV") or cls.LOCAL.value).lower()
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(e.value for e in cls)
            raise SettingError(f"BIOLOUPE_ENV must be one of {known}, got {value!r}") from None

    @property
    def allows_embedded_database(self) -> bool:
        """Only a laptop starts its own PostgreSQL; staging and production name theirs."""
        return self is Environment.LOCAL


@dataclass(frozen=True, slots=True)
class Settings:
    start_date: str
    catch_up: CatchUpSettings = field(default_factory=CatchUpSettings)
    landscape_start: str | None = None
    environment: Environment = Environment.LOCAL

    @property
    def landscape_start_date(self) -> str:
        """The landscape's first day: never before the daily assets' first day."""
        return max(self.start_date, self.landscape_start or DEFAULT_LANDSCAPE_START_DATE)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            start_date=_date("BIOLOUPE_START_DATE", DEFAULT_START_DATE),
            catch_up=CatchUpSettings.from_env(),
            landscape_start=_date("BIOLOUPE_LANDSCAPE_START_DATE", DEFAULT_LANDSCAPE_START_DATE),
            environment=Environment.from_env(),
        )
