"""Impressions are queued in the web process and written in batches: none is lost on the way.

The rest of the suite writes each impression in its request (IMPRESSION_FLUSH_SECONDS = 0 in
tests/settings.py); these tests turn the batch writer back on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from shop_recs.events import EventError, validated_event
from shop_recs.models import Event, EventKind
from shop_recs.services import impressions as impressions_module
from shop_recs.services import record_impression
from shop_recs.services.impressions import ImpressionQueue
from shop_recs.services.items import RecommendationList, RecommendedItem

REPO = Path(__file__).resolve().parents[2]


def a_list(placement: str = "similar", product_id: str = "11") -> RecommendationList:
    item = RecommendedItem(
        product=None, product_id=product_id, score=1.0, reason="", placement=placement,
        model_version="v7", position=1, click_token="t", product_url=f"/products/{product_id}/",
        click_url="/recs/click/t/",
    )
    return RecommendationList(placement, [item], model_version="v7", source="model",
                              impression_id=f"imp-{placement}-{product_id}")


def shown(user: User, *lists: RecommendationList) -> None:
    request = RequestFactory().get("/")
    request.user = user
    for recs in lists:
        record_impression(request, recs, channel="web")


def impressions() -> list[Event]:
    return list(Event.objects.filter(kind=EventKind.REC_IMPRESSION).order_by("id"))


def use_queue(monkeypatch, settings, seconds: float) -> ImpressionQueue:
    """A fresh queue of this process, writing every ``seconds``."""
    settings.SHOP_RECS = {**settings.SHOP_RECS, "IMPRESSION_FLUSH_SECONDS": seconds}
    queue = ImpressionQueue()
    monkeypatch.setattr(impressions_module, "impression_queue", queue)
    return queue


@pytest.fixture
def queue(monkeypatch, settings, transactional_db) -> Iterator[ImpressionQueue]:
    """The batch writer on, with an interval no test waits for: the test flushes. (Outside a
    transaction: inside one, an impression is written at once, with it.)"""
    queue = use_queue(monkeypatch, settings, 3600)
    yield queue
    queue.flush()  # nothing is left for the exit


def copies_made(monkeypatch) -> list[str]:
    """The COPY statements run on PostgreSQL from now on (Django's query log does not see them)."""
    made: list[str] = []
    cursor_class = type(connection.cursor().cursor)
    original = cursor_class.copy

    def copy(self, statement, *args, **kwargs):
        made.append(str(statement))
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(cursor_class, "copy", copy)
    return made


def test_lists_shown_are_queued_then_written_in_one_statement(queue, monkeypatch) -> None:
    user = User.objects.create_user("shopper")
    shown(user, a_list("similar", "11"), a_list("for_you", "12"), a_list("similar", "13"))
    assert impressions() == [] and len(queue) == 3
    queued = list(queue._rows)
    copies = copies_made(monkeypatch) if connection.vendor == "postgresql" else []
    with CaptureQueriesContext(connection) as queries:
        assert queue.flush() == 3
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    if connection.vendor == "postgresql":  # one COPY, which does not wait for the WAL either
        assert inserts == [] and len(copies) == 1 and copies[0].startswith("COPY")
        assert any("synchronous_commit TO OFF" in q["sql"] for q in queries.captured_queries)
    else:
        assert len(inserts) == 1
    rows = impressions()
    assert [(r.context["placement"], r.context["products"]) for r in rows] == [
        ("similar", ["11"]), ("for_you", ["12"]), ("similar", ["13"])]
    fields = [f.attname for f in Event._meta.concrete_fields if not f.primary_key]
    assert [[getattr(r, name) for name in fields] for r in rows] == [
        [getattr(e, name) for name in fields] for e in queued]  # every field as it was queued
    assert {r.user for r in rows} == {user}
    assert {r.context["model_version"] for r in rows} == {"v7"}
    assert len(queue) == 0


def test_inside_a_transaction_an_impression_is_written_with_it(queue) -> None:
    """ATOMIC_REQUESTS, or a shop's own test case: the impression shares the transaction."""
    user = User.objects.create_user("shopper")
    with transaction.atomic():
        shown(user, a_list("similar", "11"))
        assert [r.context["products"] for r in impressions()] == [["11"]]
        assert len(queue) == 0
    with contextlib.suppress(RuntimeError), transaction.atomic():
        shown(user, a_list("similar", "12"))
        raise RuntimeError("the page failed")
    assert [r.context["products"] for r in impressions()] == [["11"]]  # 12 was never shown


def test_a_database_error_keeps_the_batch_for_the_next_try(queue, caplog) -> None:
    user = User.objects.create_user("shopper")
    shown(user, a_list("similar", "11"), a_list("similar", "12"))
    with mock.patch.object(impressions_module, "insert_rows", side_effect=DatabaseError("gone")), \
            caplog.at_level(logging.WARNING, logger="shop_recs"):
        assert queue.flush() == 0
    assert "2 impressions not written yet, will retry: gone" in caplog.text
    shown(user, a_list("similar", "13"))
    assert queue.flush() == 3
    assert [r.context["products"] for r in impressions()] == [["11"], ["12"], ["13"]]


def test_a_row_the_database_refuses_does_not_hold_back_the_others(queue, caplog) -> None:
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    shown(alice, a_list("similar", "11"))
    shown(bob, a_list("similar", "12"))
    shown(alice, a_list("similar", "13"))
    bob.delete()  # his account is gone before his impression is written
    with caplog.at_level(logging.WARNING, logger="shop_recs"):
        assert queue.flush() == 2
    assert "an impression was refused by the database and dropped" in caplog.text
    assert [(r.user, r.context["products"]) for r in impressions()] == [
        (alice, ["11"]), (alice, ["13"])]
    assert len(queue) == 0


def test_a_value_the_database_refuses_does_not_hold_back_the_others(queue, caplog) -> None:
    """Refused by the statement itself (PostgreSQL's COPY, SQLite's INSERT), not at commit."""
    user = User.objects.create_user("shopper")
    shown(user, a_list("similar", "11"), a_list("similar", "12"), a_list("similar", "13"))
    queue._rows[1].quantity = -1  # breaks the table's CHECK (quantity >= 0)
    with caplog.at_level(logging.WARNING, logger="shop_recs"):
        assert queue.flush() == 2
    assert "an impression was refused by the database and dropped" in caplog.text
    assert [r.context["products"] for r in impressions()] == [["11"], ["13"]]


def test_a_full_queue_drops_the_oldest_and_says_so(queue, monkeypatch, caplog) -> None:
    monkeypatch.setattr(impressions_module, "MAX_QUEUED", 3)
    user = User.objects.create_user("shopper")
    shown(user, *(a_list("similar", str(pid)) for pid in range(11, 16)))
    assert len(queue) == 3
    with caplog.at_level(logging.WARNING, logger="shop_recs"):
        assert queue.flush() == 3
    assert "2 impressions dropped" in caplog.text
    assert [r.context["products"] for r in impressions()] == [["13"], ["14"], ["15"]]


def test_an_impression_is_validated_when_shown_not_when_written(queue) -> None:
    with pytest.raises(EventError, match="instances, not primary keys"):
        validated_event(kind=EventKind.REC_IMPRESSION, user=1)
    with pytest.raises(EventError, match="context must be an object"):
        validated_event(kind=EventKind.REC_IMPRESSION, context=["not", "a", "dict"])


@pytest.mark.django_db(transaction=True)
def test_the_writer_thread_writes_each_interval_then_stops_when_idle(monkeypatch,
                                                                      settings) -> None:
    queue = use_queue(monkeypatch, settings, 0.05)
    user = User.objects.create_user("shopper")
    shown(user, a_list("similar", "11"))
    writer = queue._thread
    assert writer is not None and writer.is_alive()
    deadline = time.monotonic() + 10
    while not impressions() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.context["products"] for r in impressions()] == [["11"]]
    writer.join(timeout=10)  # nothing more to write: the thread ends, its connection closed
    assert not writer.is_alive() and queue._thread is None
    shown(user, a_list("similar", "12"))  # and the next impression starts a new one
    assert queue._thread is not None
    queue._thread.join(timeout=10)
    assert [r.context["products"] for r in impressions()] == [["11"], ["12"]]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_an_empty_queue(queue) -> None:
    shown(User.objects.create_user("shopper"), a_list("similar", "11"))
    pid = os.fork()
    if pid == 0:  # the child: the parent's queued impression is not its to write
        os._exit(len(queue))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(queue) == 1


def test_what_is_queued_at_exit_is_written(tmp_path) -> None:
    """A process that exits (a gunicorn worker's graceful restart, a reload) writes its queue."""
    database = tmp_path / "exit.sqlite3"
    script = textwrap.dedent("""
        import django
        from django.conf import settings
        django.setup()
        from django.core.management import call_command
        call_command("migrate", "shop_recs", verbosity=0)
        settings.SHOP_RECS = {**settings.SHOP_RECS, "IMPRESSION_FLUSH_SECONDS": 3600}
        from shop_recs.conf import recs_settings
        recs_settings.reload()
        from shop_recs.events import validated_event
        from shop_recs.models import Event
        from shop_recs.services.impressions import impression_queue, store_impression
        for n in range(3):
            store_impression(validated_event(kind="rec_impression", context={"n": n}))
        assert len(impression_queue) == 3 and Event.objects.count() == 0
    """)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": f"sqlite:///{database}"}
    subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, check=True, timeout=120)
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT kind, context FROM shop_recs_event ORDER BY id").fetchall()
    assert rows == [("rec_impression", f'{{"n": {n}}}') for n in range(3)]
