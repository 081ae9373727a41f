"""Idempotency under real concurrency: many PostgreSQL connections, one key, one row.

Each thread gets its own Django connection (its own PostgreSQL backend), so the unique index
on ``idempotency_key`` is what decides, as it does between web workers in production.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections, transaction

from demo.models import Category, Product
from shop_recs.events import EventConflict, bulk_record_events, record_event
from shop_recs.models import Event

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
THREADS = 8


@pytest.fixture
def product(postgres) -> Product:
    tea = Category.objects.create(name="Tea", slug="tea")
    return Product.objects.create(title="Sencha", category=tea, price=Decimal("5"))


@pytest.fixture
def shopper(postgres) -> User:
    return User.objects.create_user("racer")


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(i) in `count` threads released together; results (or exceptions) in order."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - handed back to the test to assert on
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_the_same_event_sent_at_once_from_many_connections_is_stored_once(
    product, shopper
) -> None:
    def send(_: int) -> tuple[int, int]:
        event = record_event(kind="purchase", product=product, user=shopper.pk,
                             idempotency_key="order-42-line-1", quantity=2)
        return event.pk, backend_pid()

    results = in_threads(THREADS, send)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({pid for _, pid in results}) == THREADS  # really separate connections
    assert len({pk for pk, _ in results}) == 1  # every sender got the same stored row
    assert Event.objects.filter(idempotency_key="order-42-line-1").count() == 1


def test_an_insert_that_loses_the_race_returns_the_winners_row(product, shopper) -> None:
    """The loser passed the look-up before the winner committed, so the unique index decides."""
    inserted, release = threading.Event(), threading.Event()
    fields = {"kind": "view", "product": product, "user": shopper, "idempotency_key": "race"}

    def winner() -> int:
        with transaction.atomic():
            pk = record_event(**fields).pk
            inserted.set()
            release.wait(timeout=10)  # hold the row uncommitted
        return pk

    def loser() -> int:
        inserted.wait(timeout=10)
        return record_event(**fields).pk

    results: dict[str, Any] = {}

    def run(name: str, work: Callable[[], int]) -> None:
        try:
            results[name] = work()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=("winner", winner)),
               threading.Thread(target=run, args=("loser", loser))]
    for thread in threads:
        thread.start()
    inserted.wait(timeout=10)
    time.sleep(0.5)
    loser_was_blocked = threads[1].is_alive()  # waiting on the winner's uncommitted key
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert loser_was_blocked
    assert results["loser"] == results["winner"]
    assert Event.objects.filter(idempotency_key="race").count() == 1


def test_the_same_key_with_different_bodies_at_once_stores_one_and_refuses_the_rest(
    product, shopper
) -> None:
    def send(i: int) -> int:
        return record_event(kind="add_to_cart", product=product, user=shopper,
                            idempotency_key="cart-7", quantity=i + 1).pk

    results = in_threads(THREADS, send)
    stored = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, EventConflict)]
    assert len(stored) == 1 and len(refused) == THREADS - 1, results
    assert Event.objects.filter(idempotency_key="cart-7").count() == 1


def test_overlapping_batches_at_once_store_each_key_once(product, shopper) -> None:
    keys = [f"batch-{n}" for n in range((THREADS - 1) * 20 + 120)]

    def send(i: int):
        mine = keys[i * 20 : i * 20 + 120]  # each batch shares keys with its 5 neighbours
        return bulk_record_events([
            {"kind": "view", "product": product.pk, "user": shopper.pk, "idempotency_key": key}
            for key in mine
        ])

    results = in_threads(THREADS, send)
    assert not [r for r in results if isinstance(r, Exception)], results
    for result in results:
        assert result.stored + result.duplicates == len(result.items) == 120
    assert Event.objects.count() == len(keys)
    assert sorted(Event.objects.values_list("idempotency_key", flat=True)) == sorted(keys)
