"""Cyclic garbage collection paused around bursts of allocation that create no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Parsing a page of JSON creates thousands of dicts and lists at once; each few hundred of
    them start a collection of the youngest generation, and every so often of the whole heap
    (Dagster's, in a run), which made parsing three times slower. What is parsed holds no
    reference cycles, so reference counting alone frees it: the collector is switched off for
    the burst and back on after it (if it was on; with threads, the last one out turns it on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def set_aside_what_lives_for_the_command() -> None:
    """Move everything allocated so far (Dagster's modules, the definitions, the instance) out
    of the collector's reach: it lives as long as the command, and otherwise each full
    collection of a range walks all of it again (about 0.15 s each, several a range). Garbage
    made before this point is kept too; it is what importing left, and small."""
    gc.freeze()
