"""Two co-purchase counts at once (the hourly task and a training run): one keeps its counts."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from shop_recs.models import CoPurchase, Event, EventKind
from shop_recs.services.copurchase import count_co_purchases


@pytest.mark.django_db(transaction=True)
def test_a_count_that_finishes_second_keeps_the_first_ones_counts(monkeypatch) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL (pass 2 of scripts/test.sh, CI)")
    for session in ("guest-a", "guest-b"):
        for product in ("11", "34"):
            Event.objects.create(kind=EventKind.PURCHASE, product_id=product, session_key=session)
    deleted, first_done = threading.Event(), threading.Event()
    write = CoPurchase.objects.bulk_create

    def held_back(batch, *args, **kwargs):  # the second count stops after its DELETE
        if threading.current_thread().name == "second" and not deleted.is_set():
            deleted.set()
            first_done.wait(30)
        return write(batch, *args, **kwargs)

    monkeypatch.setattr(CoPurchase.objects, "bulk_create", held_back)
    second_result: list[int] = []

    def second_count() -> None:
        try:
            second_result.append(count_co_purchases())
        finally:
            connections.close_all()

    second = threading.Thread(target=second_count, name="second")
    second.start()
    assert deleted.wait(30)
    assert count_co_purchases() == 2  # the first count commits while the second is open
    first_counted = set(CoPurchase.objects.values_list("product_id", "other_id", "counted_at"))
    first_done.set()
    second.join(30)
    assert second_result == [0]
    assert set(CoPurchase.objects.values_list("product_id", "other_id", "counted_at")) == \
        first_counted
    assert {(p, o) for p, o, _ in first_counted} == {("11", "34"), ("34", "11")}
