"""Settings that shape the definitions themselves (not run-time resources).

Read only when the definitions load (`definitions.py`'s `@dg.definitions` function), never at
import. An empty variable counts as unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date

DEFAULT_START_DATE = "2000-01-01"


def env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True, slots=True)
class Settings:
    start_date: str

    @classmethod
    def from_env(cls) -> Settings:
        start = env("BIOLOUPE_START_DATE") or DEFAULT_START_DATE
        try:
            date.fromisoformat(start)
        except ValueError:
            raise ValueError(f"BIOLOUPE_START_DATE must be YYYY-MM-DD, got {start!r}") from None
        return cls(start_date=start)
