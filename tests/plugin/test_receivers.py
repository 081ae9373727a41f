"""Each new order line becomes one purchase event; a failure there never breaks checkout."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from demo.models import Order, OrderLine
from shop_recs.models import Event, EventKind


def test_a_new_order_line_records_a_purchase(shop) -> None:
    placed = timezone.now() - timedelta(minutes=5)
    green_line, black_line = shop.order(
        shop.alice, (shop.green_tea, 2), (shop.black_tea, 1), created_at=placed
    )
    events = {e.product_id: e for e in Event.objects.all()}
    assert set(events) == {str(shop.green_tea.pk), str(shop.black_tea.pk)}
    green = events[str(shop.green_tea.pk)]
    assert (green.kind, green.user, green.quantity, green.timestamp) == (
        EventKind.PURCHASE, shop.alice, 2, placed
    )
    assert green.idempotency_key == f"order-line:{green_line.pk}"


def test_saving_the_line_again_records_nothing_more(shop) -> None:
    (line,) = shop.order(shop.alice, (shop.green_tea, 1))
    line.quantity = 4
    line.save()
    assert Event.objects.count() == 1


def test_other_models_are_not_purchases(shop) -> None:
    Order.objects.create(user=shop.alice)
    shop.green_tea.save()
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "change", [{"RECORD_PURCHASES_ON_SAVE": False}, {"ORDER_LINE_MODEL": None}]
)
def test_it_can_be_switched_off(shop, change: dict) -> None:
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, **change}):
        shop.order(shop.alice, (shop.green_tea, 1))
    assert not Event.objects.exists()


def test_a_rolled_back_order_leaves_no_purchase(shop) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        shop.order(shop.alice, (shop.green_tea, 1))
        assert Event.objects.count() == 1
        raise RuntimeError("payment declined")
    assert not Event.objects.exists()


def test_a_line_that_is_no_valid_purchase_is_saved_and_logged(shop, caplog) -> None:
    order = Order.objects.create(user=shop.alice)
    with caplog.at_level(logging.WARNING, logger="shop_recs"), transaction.atomic():
        line = OrderLine.objects.create(order=order, product=shop.green_tea, quantity=0)
        # The shop's transaction is still usable after the plugin's failure.
        OrderLine.objects.create(order=order, product=shop.black_tea, quantity=1)
    assert OrderLine.objects.filter(pk=line.pk).exists()
    assert f"no purchase event for demo.OrderLine {line.pk}" in caplog.text
    assert "quantity must be a whole number" in caplog.text
    assert list(Event.objects.values_list("product_id", flat=True)) == [str(shop.black_tea.pk)]


def test_fixtures_loaded_raw_are_not_purchases(shop) -> None:
    order = Order.objects.create(user=shop.alice)
    OrderLine(order=order, product=shop.green_tea, quantity=1).save_base(raw=True)  # as loaddata
    assert OrderLine.objects.count() == 1
    assert not Event.objects.exists()
