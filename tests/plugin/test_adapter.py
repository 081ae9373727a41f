"""The default adapter reads the host shop through the field names in SHOP_RECS."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from demo.models import Product
from shop_recs.adapter import Purchase, ShopAdapter, get_adapter


class InStockOnlyAdapter(ShopAdapter):
    """A shop with its own notion of "available": in stock, whatever the flag says."""

    def available_products(self):
        return self.all_products().filter(stock__gt=0)


def test_available_products_apply_the_configured_filter(shop) -> None:
    shop.black_tea.stock = 0
    shop.black_tea.save()
    assert list(get_adapter().available_products()) == [shop.green_tea]


def test_texts_join_the_configured_fields_through_relations_in_one_query(
    shop, django_assert_num_queries
) -> None:
    with django_assert_num_queries(1):
        texts = get_adapter().texts_for(Product.objects.all())
    assert texts == {
        str(shop.green_tea.pk): "Sencha Green Tea. Grassy and fresh. Tea. Kyoto Leaf",
        str(shop.black_tea.pk): "Assam Black Tea. Tea",  # blank description and brand left out
        str(shop.old_kettle.pk): "Stovetop Kettle. Whistles. Kettles. Boil",
    }


def test_product_text_is_the_same_text(shop) -> None:
    adapter = get_adapter()
    assert adapter.product_text(shop.green_tea) == adapter.texts_for(
        Product.objects.filter(pk=shop.green_tea.pk)
    )[str(shop.green_tea.pk)]


def test_a_to_many_text_field_contributes_each_value_once(shop) -> None:
    shop.order(shop.alice, (shop.green_tea, 2))
    shop.order(shop.bob, (shop.green_tea, 5), (shop.black_tea, 2))
    shop.order(shop.bob, (shop.green_tea, 2))
    with override_settings(SHOP_RECS={
        **settings.SHOP_RECS, "PRODUCT_TEXT_FIELDS": ["title", "order_lines__quantity"],
    }):
        texts = get_adapter().texts_for(Product.objects.all())
    assert texts[str(shop.green_tea.pk)] == "Sencha Green Tea. 2, 5"
    assert texts[str(shop.old_kettle.pk)] == "Stovetop Kettle"


def test_texts_for_ids_reads_more_ids_than_one_sql_in_clause_holds(shop) -> None:
    Product.objects.bulk_create(
        Product(title=f"Mug {i}", category=shop.kettles, price=Decimal(1)) for i in range(1000)
    )
    ids = [str(pk) for pk in Product.objects.values_list("pk", flat=True)]
    texts = get_adapter().texts_for_ids([*ids, "999999"])
    assert set(texts) == set(ids)


def test_categories_are_category_ids_as_text(shop) -> None:
    adapter = get_adapter()
    assert adapter.categories_for(Product.objects.all()) == {
        str(shop.green_tea.pk): str(shop.tea.pk),
        str(shop.black_tea.pk): str(shop.tea.pk),
        str(shop.old_kettle.pk): str(shop.kettles.pk),
    }
    assert adapter.category_of(shop.old_kettle) == str(shop.kettles.pk)
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "PRODUCT_CATEGORY_FIELD": None}):
        assert get_adapter().category_of(shop.old_kettle) is None


def test_product_ids_are_canonical_text(shop) -> None:
    adapter = get_adapter()
    pk = shop.green_tea.pk
    assert adapter.to_product_id(shop.green_tea) == adapter.to_product_id(pk) == str(pk)
    assert adapter.to_product_id(f" {pk}") == str(pk)
    for bad in ["tea", None, "", True]:
        with pytest.raises(ValueError):
            adapter.to_product_id(bad)
    with pytest.raises(ValueError, match="is a demo.Category, not a demo.Product"):
        adapter.to_product_id(shop.tea)
    with pytest.raises(ValueError, match="has not been saved"):
        adapter.to_product_id(Product(title="Unsaved"))


def test_get_product_and_existing_ids(shop) -> None:
    adapter = get_adapter()
    assert adapter.get_product(str(shop.old_kettle.pk)) == shop.old_kettle  # sold out still found
    assert adapter.get_product(999999) is None
    assert adapter.get_product("not-a-pk") is None
    assert adapter.existing_product_ids([str(shop.green_tea.pk), "999999"]) == {
        str(shop.green_tea.pk)
    }


def test_product_url_uses_get_absolute_url(shop) -> None:
    assert get_adapter().product_url(shop.green_tea) == f"/products/{shop.green_tea.pk}/"
    assert get_adapter().product_url(shop.tea) == ""  # Category has no get_absolute_url


def test_purchases_come_from_order_lines_oldest_first_and_since_a_time(shop) -> None:
    now = timezone.now()
    (recent,) = shop.order(shop.alice, (shop.black_tea, 1), created_at=now - timedelta(days=1))
    (old,) = shop.order(shop.bob, (shop.green_tea, 3), created_at=now - timedelta(days=10))
    adapter = get_adapter()
    assert list(adapter.purchases()) == [
        Purchase(shop.bob.pk, str(shop.green_tea.pk), 3, now - timedelta(days=10), old.pk),
        Purchase(shop.alice.pk, str(shop.black_tea.pk), 1, now - timedelta(days=1), recent.pk),
    ]
    since = now - timedelta(days=2)
    assert [p.order_line_pk for p in adapter.purchases(since=since)] == [recent.pk]
    assert adapter.purchase_count(since=now - timedelta(days=2)) == 1
    assert adapter.purchase_for_line(old) == list(adapter.purchases())[0]


def test_no_order_line_model_means_no_purchases(shop) -> None:
    shop.order(shop.alice, (shop.black_tea, 1))
    with override_settings(SHOP_RECS={**settings.SHOP_RECS, "ORDER_LINE_MODEL": None}):
        assert list(get_adapter().purchases()) == []
        assert get_adapter().purchase_count() is None


def test_the_adapter_is_cached_and_follows_settings(shop) -> None:
    assert get_adapter() is get_adapter()
    custom = {**settings.SHOP_RECS, "ADAPTER": f"{__name__}.InStockOnlyAdapter"}
    with override_settings(SHOP_RECS=custom):
        adapter = get_adapter()
        assert isinstance(adapter, InStockOnlyAdapter)
        assert shop.old_kettle in adapter.available_products()  # inactive but in stock
    assert type(get_adapter()) is ShopAdapter
