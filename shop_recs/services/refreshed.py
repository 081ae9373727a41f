"""Per-process values that are slow to build and may be a little old: the catalogue snapshot,
the popularity rankings, the popular search queries, the search index.

The first use builds the value, and that caller waits: there is nothing to serve yet. After
that, each value is rebuilt in a background thread once it is as old as its interval, or at
once when a caller finds it no longer matching what it was built from (e.g. the search index
after a new model version); every caller gets the current value meanwhile: no request waits for
a rebuild, which reads a whole table or aggregates days of events (``python -m
benchmarks.serving`` times them). A failed rebuild is logged and the old value kept; the next try
comes an interval later, or with the next caller while the value is outdated.

The rebuild is due by the clock, not by the next caller: a process that served nothing for a
while would otherwise start every rebuild (and open their database connections) with the first
requests after the pause, the moment traffic comes back. A value is kept fresh this way while
it has been read in the last KEEP_FRESH_SECONDS (an idle process stops querying); after a longer
pause, or with the setting at 0, the first caller to find it too old starts its rebuild. The
timers of a process's values are spread a little (REFRESH_JITTER), so that the web processes,
which start together, do not all rebuild in the same moment.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import connections

from ..conf import recs_settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A timed rebuild starts up to this share of the interval early (the processes drift apart).
REFRESH_JITTER = 0.1


class Refreshed(Generic[T]):
    def __init__(self, build: Callable[[], T], max_age: Callable[[], float], name: str, *,
                 outdated: Callable[[T], bool] | None = None) -> None:
        """``build`` makes the value; ``max_age`` says, when asked, how many seconds it may be
        old (read from the settings each time, so a changed setting applies at once);
        ``outdated(value)``, when given, says that it must be rebuilt whatever its age."""
        self._build, self._max_age, self.name = build, max_age, name
        self._outdated = outdated
        self._lock = threading.Lock()
        self._value: T | None = None
        self._built_at = float("-inf")
        self._rebuilding: threading.Thread | None = None
        self._timer: threading.Timer | None = None  # the next timed rebuild
        self._read_at = float("-inf")
        self._generation = 0  # moves on with each invalidate(): older rebuilds are discarded
        if hasattr(os, "register_at_fork"):  # the parent's rebuild thread is not in the child
            os.register_at_fork(after_in_child=self._after_fork)

    def get(self) -> T:
        self._read_at = time.monotonic()
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value, self._built_at = self._build(), time.monotonic()
                    self._schedule()
                return self._value
        if time.monotonic() - self._built_at >= self._max_age() or (
            self._outdated is not None and self._outdated(value)
        ):
            self._start_rebuild()
        return value

    @property
    def current(self) -> T | None:
        """The value as it is (None before the first build), neither built nor refreshed."""
        return self._value

    def invalidate(self) -> None:
        """Forget the value: the next caller builds it (tests; a shop after a bulk import)."""
        with self._lock:
            self._value, self._built_at = None, float("-inf")
            self._generation += 1
            self._cancel_timer()

    def _start_rebuild(self, generation: int | None = None) -> None:
        """One rebuild in a background thread, unless one runs (or, given ``generation``,
        the value was invalidated since)."""
        with self._lock:
            if self._rebuilding is not None or generation not in (None, self._generation):
                return
            self._rebuilding = threading.Thread(target=self._rebuild, args=(self._generation,),
                                                daemon=True, name=f"shop_recs-{self.name}")
            self._rebuilding.start()

    def _rebuild(self, generation: int) -> None:
        began = time.perf_counter()
        try:
            value: T | None = self._build()
            logger.debug("shop_recs: rebuilt the %s in %.0f ms", self.name,
                         (time.perf_counter() - began) * 1000)
        except Exception:
            logger.exception("shop_recs: rebuilding the %s failed; keeping the old one", self.name)
            value = None
        finally:
            connections.close_all()  # this thread's connections only
        with self._lock:
            self._rebuilding = None
            if generation != self._generation:  # invalidated meanwhile: built from old data
                return
            if value is not None:
                self._value = value
            self._built_at = time.monotonic()
            self._schedule()

    def _schedule(self) -> None:
        """Start the timer of the next rebuild (under the lock): an interval from now, a little
        earlier at random. No timer for an interval of 0 (every caller starts a rebuild) or with
        KEEP_FRESH_SECONDS at 0."""
        self._cancel_timer()
        interval = self._max_age()
        if interval <= 0 or not recs_settings.KEEP_FRESH_SECONDS:
            return
        self._timer = threading.Timer(interval * (1 - REFRESH_JITTER * random.random()),
                                      self._timed_rebuild, args=(self._generation,))
        self._timer.daemon = True
        self._timer.name = f"shop_recs-{self.name}-timer"
        self._timer.start()

    def _timed_rebuild(self, generation: int) -> None:
        if time.monotonic() - self._read_at <= recs_settings.KEEP_FRESH_SECONDS:
            self._start_rebuild(generation)
        # else unread for long: left as it is until a caller finds it too old

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._rebuilding = None
        self._timer = None  # the parent's timer thread is not in the child either
