"""A purchase schedules one co-purchase count, so bought-together lists take it in unaided."""

from __future__ import annotations

import logging

import pytest
from celery import current_app
from django.core.cache import cache

from shop_recs.jobs import COUNT_TASK
from shop_recs.models import CoPurchase, Event, EventKind
from tests.plugin.recs_fixtures import RecsShop


@pytest.fixture
def counts(monkeypatch) -> list[int]:
    """The counts the task made (the real count runs too)."""
    from shop_recs.services import copurchase

    made: list[int] = []
    real = copurchase.count_co_purchases

    def counting() -> int:
        made.append(real())
        return made[-1]

    monkeypatch.setattr(copurchase, "count_co_purchases", counting)
    return made


def test_a_purchase_reaches_the_counts_without_a_schedule(
    recs_shop: RecsShop, counts, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        recs_shop.buy(11, 34, user=recs_shop.alice)  # eager Celery: counted at commit
    assert counts == [2]
    assert CoPurchase.objects.filter(product_id="11", other_id="34", shoppers=1).exists()


def test_one_count_is_due_at_a_time(
    recs_shop: RecsShop, counts, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        recs_shop.buy(11, 34, user=recs_shop.alice)
    with django_capture_on_commit_callbacks(execute=True) as scheduled:
        recs_shop.buy(11, 35, user=recs_shop.bob)  # within the delay: the due count covers it
    assert counts == [2] and scheduled == []
    cache.clear()  # the delay has passed
    with django_capture_on_commit_callbacks(execute=True):
        recs_shop.buy(11, 35, user=recs_shop.staff)
    assert counts == [2, 4]


def test_none_leaves_counting_to_the_jobs(
    recs_shop: RecsShop, counts, settings, django_capture_on_commit_callbacks
) -> None:
    settings.SHOP_RECS = {**settings.SHOP_RECS, "CO_PURCHASE_COUNT_DELAY": None}
    with django_capture_on_commit_callbacks(execute=True) as scheduled:
        recs_shop.buy(11, 34, user=recs_shop.alice)
    assert counts == [] and scheduled == []


def test_with_a_broker_the_count_is_sent_for_later(
    recs_shop: RecsShop, monkeypatch, not_eager, django_capture_on_commit_callbacks
) -> None:
    sent = []
    monkeypatch.setattr(current_app, "send_task",
                        lambda name, **options: sent.append((name, options["countdown"])))
    with django_capture_on_commit_callbacks(execute=True):
        recs_shop.buy(11, 34, user=recs_shop.alice)
    assert sent == [(COUNT_TASK, 600)]


def test_an_unreachable_broker_loses_no_purchase(
    recs_shop: RecsShop, monkeypatch, not_eager, caplog, django_capture_on_commit_callbacks
) -> None:
    def unreachable(name, **options):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(current_app, "send_task", unreachable)
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        recs_shop.buy(11, user=recs_shop.alice)
    assert Event.objects.filter(kind=EventKind.PURCHASE, product_id="11").exists()
    assert "co-purchase count could not be started: broker down" in caplog.text
    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **options: sent.append(name))
    with django_capture_on_commit_callbacks(execute=True):
        recs_shop.buy(34, user=recs_shop.alice)  # within the delay: no second wait on a broker
    assert sent == []
    cache.clear()  # the delay has passed: the next purchase tries again
    with django_capture_on_commit_callbacks(execute=True):
        recs_shop.buy(35, user=recs_shop.alice)
    assert sent == [COUNT_TASK]
