"""manage.py recs_import_orders: backfills purchases once, however often it runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from shop_recs.management.commands.recs_import_orders import parse_since
from shop_recs.models import CoPurchase, Event, EventKind

WITHOUT_RECEIVER = {**settings.SHOP_RECS, "RECORD_PURCHASES_ON_SAVE": False}


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("recs_import_orders", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def past_orders(shop):
    """Orders placed before the plugin was installed: no purchase events yet."""
    now = timezone.now()
    with override_settings(SHOP_RECS=WITHOUT_RECEIVER):
        old = shop.order(shop.alice, (shop.green_tea, 2), (shop.black_tea, 1),
                         created_at=now - timedelta(days=40))
        recent = shop.order(shop.bob, (shop.green_tea, 1), created_at=now - timedelta(days=3))
    assert not Event.objects.exists()
    return old, recent


def test_it_imports_every_order_line_once(shop, past_orders) -> None:
    out, err = run()
    assert "3 purchase events stored, 0 already there" in out
    assert "Importing order lines" in err and "3/3" in err  # the progress bar
    assert Event.objects.filter(kind=EventKind.PURCHASE).count() == 3
    (line, *_), _ = past_orders
    event = Event.objects.get(idempotency_key=f"order-line:{line.pk}")
    assert (event.user, event.product_id, event.quantity) == (shop.alice, str(shop.green_tea.pk), 2)
    assert event.timestamp == line.order.created_at
    # Alice's two teas of one order are counted as bought together, both ways.
    assert "2 co-purchase pairs counted" in out
    assert set(CoPurchase.objects.values_list("product_id", "other_id", "shoppers")) == {
        (str(shop.green_tea.pk), str(shop.black_tea.pk), 1),
        (str(shop.black_tea.pk), str(shop.green_tea.pk), 1),
    }

    out, _ = run()
    assert "0 purchase events stored, 3 already there" in out
    assert Event.objects.count() == 3


def test_lines_the_receiver_already_recorded_are_not_doubled(shop, past_orders) -> None:
    shop.order(shop.alice, (shop.black_tea, 4))  # receiver on: recorded at once
    assert Event.objects.count() == 1
    out, _ = run()
    assert "3 purchase events stored, 1 already there" in out
    assert Event.objects.count() == 4


def test_since_limits_the_import(shop, past_orders) -> None:
    since = (timezone.now() - timedelta(days=10)).date().isoformat()
    out, _ = run("--since", since)
    assert "1 purchase events stored" in out
    assert list(Event.objects.values_list("user__username", flat=True)) == ["bob"]


def test_a_changed_line_is_reported_not_overwritten(shop, past_orders) -> None:
    run()
    (line, *_), _ = past_orders
    line.quantity = 7
    line.save()
    out, _ = run()
    assert "2 already there, 1 already there with other values" in out
    assert Event.objects.get(idempotency_key=f"order-line:{line.pk}").quantity == 2


def test_lines_that_are_no_purchase_are_skipped_with_the_reason(shop) -> None:
    with override_settings(SHOP_RECS=WITHOUT_RECEIVER):
        shop.order(shop.alice, (shop.green_tea, 0), (shop.black_tea, 1))
    out, _ = run()
    assert "1 purchase events stored" in out and "1 order lines skipped" in out
    assert "skipped 1x: quantity must be a whole number of at least 1, not 0." in out


def test_quiet_run_prints_nothing(shop, past_orders) -> None:
    out, err = run("--verbosity", "0")
    assert (out, err) == ("", "")
    assert Event.objects.count() == 3


def test_without_an_order_line_model_it_says_what_to_set(shop) -> None:
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "ORDER_LINE_MODEL": None}), \
            pytest.raises(CommandError, match='SHOP_RECS\\["ORDER_LINE_MODEL"\\] is not set'):
        run()


def test_since_parsing() -> None:
    midnight = parse_since("2025-01-31")
    assert midnight == timezone.make_aware(datetime(2025, 1, 31))
    assert parse_since("2025-01-31T08:00:00+02:00").hour == 8
    with pytest.raises(CommandError, match="is not a date"):
        parse_since("last week")
