"""Recommendation impressions, written in batches off the request path.

Every list shown stores an impression (placement, model version, products) for the admin's
click-through rates. Written one INSERT per list, each impression cost the request its own
transaction and a row in an event table with seven indexes. So a web process queues its
impressions and a background thread writes them every IMPRESSION_FLUSH_SECONDS in one
statement (a COPY on PostgreSQL, a multi-row INSERT elsewhere); whatever is still queued is
written when the process exits (gunicorn's graceful restarts, runserver's reloads, a management
command).

What can be lost: a process killed without a chance to exit (SIGKILL, a power cut) loses at most
its last IMPRESSION_FLUSH_SECONDS of impressions. While the database cannot be reached the queue
keeps up to MAX_QUEUED impressions and retries; beyond that the oldest are dropped and logged.
Impressions only ever count what was shown, so none of this can lose a shopper's data.
``IMPRESSION_FLUSH_SECONDS = 0`` writes each impression at once, in the request; so does a
request inside a transaction (``ATOMIC_REQUESTS``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    close_old_connections,
    connections,
    router,
    transaction,
)

from ..conf import recs_settings
from ..models import Event

logger = logging.getLogger(__name__)

MAX_QUEUED = 50_000  # about a minute of a busy shop's lists; a few MB
BATCH_SIZE = 1_000  # rows per INSERT statement (where there is no COPY)
EXIT_WAIT_SECONDS = 10  # how long a process's exit waits for a flush already under way


def store_impression(event: Event) -> None:
    """Store a validated, unsaved impression with the next batch, or now: when batches are off,
    and inside a caller's transaction (ATOMIC_REQUESTS, a test case), whose fate it then shares:
    a page whose transaction rolls back was not shown, and a shop's own tests see their
    impressions at once."""
    in_transaction = connections[router.db_for_write(Event)].in_atomic_block
    if recs_settings.IMPRESSION_FLUSH_SECONDS and not in_transaction:
        impression_queue.add(event)
    else:
        with commit_without_waiting_for_the_disk():
            event.save()


class ImpressionQueue:
    """A process's impressions waiting for the next batch write.

    ``add`` only appends under a lock (microseconds). The writer thread runs while there is
    something to write: the first impression starts it, an empty interval ends it. After a fork
    the child starts empty: the parent's queued rows are the parent's to write.
    """

    def __init__(self) -> None:
        self._reset()
        atexit.register(self.close)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._rows: deque[Event] = deque()
        self._lock = threading.Lock()  # guards _rows and _thread
        self._writing = threading.Lock()  # held while a batch is being written
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropped = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, event: Event) -> None:
        with self._lock:
            if len(self._rows) >= MAX_QUEUED:
                self._rows.popleft()
                self._dropped += 1
            self._rows.append(event)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shop_recs-impressions",
                                                daemon=True)
                self._thread.start()
        if len(self._rows) >= BATCH_SIZE:
            self._wake.set()

    def flush(self) -> int:
        """Write every queued impression now; returns how many were written (0 if the database
        refused them: they stay queued for the next try)."""
        with self._writing:
            with self._lock:
                rows = list(self._rows)
                self._rows.clear()
                dropped, self._dropped = self._dropped, 0
            if dropped:
                logger.warning("shop_recs: %d impressions dropped: the database could not take "
                               "them for too long (more than %d queued)", dropped, MAX_QUEUED)
            if not rows:
                return 0
            try:
                with commit_without_waiting_for_the_disk():
                    insert_rows(rows)
            except (IntegrityError, DataError):
                # A row the database refuses (its shopper's account deleted since the list was
                # shown) must not hold back the others: write them one by one, without it.
                return self._write_one_by_one(rows)
            except DatabaseError as exc:  # the database is unreachable: keep them for later
                self._requeue(rows, exc)
                return 0
            return len(rows)

    def _write_one_by_one(self, rows: list[Event]) -> int:
        written = 0
        for position, row in enumerate(rows):
            row.pk = None  # the rolled-back INSERT may have numbered it
            try:
                with commit_without_waiting_for_the_disk(), transaction.atomic():
                    row.save()
                written += 1
            except (IntegrityError, DataError) as exc:
                logger.warning("shop_recs: an impression was refused by the database and "
                               "dropped: %s", exc)
            except DatabaseError as exc:
                self._requeue(rows[position:], exc)
                break
        return written

    def _requeue(self, rows: list[Event], error: DatabaseError) -> None:
        """Back to the front of the queue, in order; the oldest go if there is no room."""
        logger.warning("shop_recs: %d impressions not written yet, will retry: %s", len(rows),
                       error)
        for row in rows:
            row.pk = None  # the rolled-back INSERT may have numbered some
        with self._lock:
            room = max(MAX_QUEUED - len(self._rows), 0)
            kept = rows[-room:] if room else []
            self._dropped += len(rows) - len(kept)
            self._rows.extendleft(reversed(kept))

    def close(self) -> None:
        """At exit: wait for a batch being written, then write the rest."""
        if not self._writing.acquire(timeout=EXIT_WAIT_SECONDS):
            logger.warning("shop_recs: a batch of impressions was still being written at exit")
            return
        self._writing.release()
        if self._rows:
            self.flush()

    def _run(self) -> None:
        """Write a batch every interval; stop (closing this thread's database connection) at
        the first interval with nothing to write: an idle process holds neither."""
        try:
            while True:
                self._wake.wait(recs_settings.IMPRESSION_FLUSH_SECONDS or 1.0)
                self._wake.clear()
                with self._lock:
                    if not self._rows:
                        self._thread = None  # the next add() starts a new writer
                        return
                close_old_connections()  # one broken by a database restart is replaced
                try:
                    self.flush()
                except Exception:  # the writer must outlive any one bad batch
                    logger.exception("shop_recs: writing impressions failed")
        finally:
            connections.close_all()


impression_queue = ImpressionQueue()


def insert_rows(rows: list[Event]) -> None:
    """Write a batch of unsaved events. On PostgreSQL as one COPY: a multi-row INSERT's
    parameters are built in Python, and the thread building them holds the interpreter lock that
    the process's requests wait for (``python -m benchmarks.serving`` times a batch both ways).
    The rows get no primary keys back."""
    connection = connections[router.db_for_write(Event)]
    if connection.vendor != "postgresql":
        Event.objects.bulk_create(rows, batch_size=BATCH_SIZE)
        return
    fields = [field for field in Event._meta.concrete_fields if not field.primary_key]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    statement = f"COPY {connection.ops.quote_name(Event._meta.db_table)} ({columns}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row([field.get_db_prep_save(field.pre_save(row, True), connection)
                            for field in fields])


@contextmanager
def commit_without_waiting_for_the_disk() -> Iterator[None]:
    """PostgreSQL's ``synchronous_commit = off`` for this one write: the caller does not wait
    for the WAL to reach the disk. The price: should the database server itself crash within a
    moment of it, the impressions can be missing, never half-written; every other write keeps
    full durability. Inside a caller's transaction (ATOMIC_REQUESTS, a test) nothing changes,
    since the setting would cover the caller's writes too."""
    alias = router.db_for_write(Event)
    connection = connections[alias]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic(using=alias):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
