"""A catalogue refresh that finds the same available products keeps the snapshot as it is.

Building the snapshot reads every available product, in the web process, while its requests
wait for the interpreter lock; a refresh first asks the database whether anything changed.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session

from demo.models import Product
from shop_recs.services import catalog as catalog_module
from shop_recs.services.catalog import available_fingerprint, catalog, refreshed_snapshot


@pytest.fixture
def snapshot(shop):
    catalog.invalidate()
    yield catalog.get()
    catalog.invalidate()


def test_a_refresh_that_finds_no_change_keeps_the_snapshot_and_what_was_derived(
    snapshot, shop, django_assert_num_queries
) -> None:
    made = []
    snapshot.derived("mask", lambda: made.append(1) or "mask")

    with django_assert_num_queries(1):  # the check alone, no product read
        kept = refreshed_snapshot()

    assert kept is snapshot
    assert kept.derived("mask", lambda: made.append(1) or "again") == "mask"
    assert made == [1]


def test_a_product_that_sells_out_makes_a_new_snapshot(snapshot, shop) -> None:
    shop.green_tea.active = False
    shop.green_tea.save()

    fresh = refreshed_snapshot()

    assert fresh is not snapshot
    assert str(shop.green_tea.pk) not in fresh.available


def test_a_new_product_makes_a_new_snapshot(snapshot, shop) -> None:
    rooibos = Product.objects.create(title="Rooibos", category=shop.tea, price=Decimal("3"))

    fresh = refreshed_snapshot()

    assert str(rooibos.pk) in fresh.available
    assert str(rooibos.pk) in fresh.members[str(shop.tea.pk)]


def test_one_product_out_and_another_in_makes_a_new_snapshot(snapshot, shop) -> None:
    shop.green_tea.active = False
    shop.green_tea.save()
    shop.old_kettle.active = True
    shop.old_kettle.save()

    fresh = refreshed_snapshot()

    assert fresh.available == {str(shop.black_tea.pk), str(shop.old_kettle.pk)}


def test_what_the_check_cannot_see_arrives_with_the_full_rebuild(snapshot, shop, settings) -> None:
    settings.SHOP_RECS = {**settings.SHOP_RECS, "CATALOG_REFRESH_SECONDS": 0.02}
    black_tea = str(shop.black_tea.pk)
    shop.black_tea.category = shop.kettles  # same products available: the check sees nothing
    shop.black_tea.save()
    # settings_changed forgot the snapshot: make it again, then move the tea back and forth
    built = catalog.get()
    assert built.category_of[black_tea] == str(shop.kettles.pk)
    shop.black_tea.category = shop.tea
    shop.black_tea.save()

    assert refreshed_snapshot() is built  # younger than FULL_REBUILD_INTERVALS intervals
    time.sleep(catalog_module.FULL_REBUILD_INTERVALS * 0.02 + 0.05)
    rebuilt = refreshed_snapshot()

    assert rebuilt is not built
    assert rebuilt.category_of[black_tea] == str(shop.tea.pk)


def test_the_check_counts_products_whose_ids_are_text(db, monkeypatch) -> None:
    class SessionsAsProducts:
        def available_products(self):
            return Session.objects.all()

    monkeypatch.setattr(catalog_module, "get_adapter", SessionsAsProducts)
    for _ in range(2):
        SessionStore().save()
    before = available_fingerprint()
    first = Session.objects.order_by("pk").first()
    first.delete()
    after_delete = available_fingerprint()
    SessionStore().save()

    assert before != after_delete != available_fingerprint()
    assert dict(before)["count"] == 2 and dict(after_delete)["count"] == 1
