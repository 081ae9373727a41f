"""Per-process values that are slow to build and may be a little old: the catalogue snapshot,
the popularity rankings, the popular search queries, the search index.

The first use builds the value, and that caller waits: there is nothing to serve yet. After
that, the first caller to find the value older than its interval (or no longer matching what it
was built from, e.g. the search index after a new model version) starts one rebuild in a
background thread and, like every caller until the rebuild is done, gets the current value: no
request waits for a rebuild, which reads a whole table or aggregates days of events
(``python -m benchmarks.serving`` times them). A failed rebuild is logged and the old value kept;
the next try comes an interval later, or with the next caller while the value is outdated.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import connections

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
        self._generation = 0  # moves on with each invalidate(): older rebuilds are discarded
        if hasattr(os, "register_at_fork"):  # the parent's rebuild thread is not in the child
            os.register_at_fork(after_in_child=self._after_fork)

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value, self._built_at = self._build(), time.monotonic()
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

    def _start_rebuild(self) -> None:
        with self._lock:
            if self._rebuilding is not None:
                return
            self._rebuilding = threading.Thread(target=self._rebuild, args=(self._generation,),
                                                daemon=True, name=f"shop_recs-{self.name}")
            self._rebuilding.start()

    def _rebuild(self, generation: int) -> None:
        try:
            value: T | None = self._build()
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

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._rebuilding = None
