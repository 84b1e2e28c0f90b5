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


@contextmanager
def start_up() -> Iterator[None]:
    """Importing Dagster, loading the definitions and opening the instance allocate hundreds of
    thousands of objects that live as long as the command and leave almost no garbage: with the
    collector on, a backfill's start walked the whole growing heap five times (about 0.5 s of a
    2.3 s start, collecting a few dozen objects). The collector is off for the start; at its
    end, everything allocated so far is moved out of the collector's reach, since otherwise
    each full collection of a range would walk all of it again (about 0.15 s each), and so
    would Python's last one as the command exits; then the collector is switched back on,
    whatever happened."""
    with paused_gc():
        try:
            yield
        finally:
            gc.freeze()
