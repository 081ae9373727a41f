"""The service layer: for-you, similar, bought-together and recently-viewed lists, with the real
tiny model, without it, and with a broken one; freshness and per-shopper caching."""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from demo.models import Product
from shop_recs.events import record_event
from shop_recs.models import CoPurchase, Event, EventKind
from shop_recs.services import (
    ProductNotFound,
    Shopper,
    bought_together,
    clamp_limit,
    for_you,
    recently_viewed,
    similar,
)
from shop_recs.services.copurchase import count_co_purchases, last_counted
from shop_recs.services.shopper import load_history
from tests.plugin.recs_fixtures import COFFEE, NEW_TEA, TEA, RecsShop


def category_share(ids: list[str], category: list[str]) -> float:
    return sum(pid in category for pid in ids) / len(ids)


class TestForYou:
    def test_the_model_reads_the_shoppers_history(self, recs_shop: RecsShop, active_model) -> None:
        recs_shop.view(11, 12, 13, user=recs_shop.alice)
        recs = for_you(Shopper.for_user(recs_shop.alice), 3)
        assert recs.source == "model" and recs.model_version == active_model.label
        assert len(recs) == 3
        assert category_share(recs.product_ids, TEA) >= 2 / 3
        assert not {"11", "12", "13"} & set(recs.product_ids)  # already seen
        tea_items = [item for item in recs if item.product_id in TEA]
        assert all(item.reason.startswith("Because you viewed ") for item in tea_items)
        assert all(item.model_version == active_model.label for item in recs)
        assert [item.position for item in recs] == [1, 2, 3]

    def test_a_new_event_changes_the_next_list_at_once(self, recs_shop, active_model) -> None:
        shopper = Shopper.for_user(recs_shop.alice)
        recs_shop.view(11, 12, user=recs_shop.alice)
        before = for_you(shopper, 3)
        assert category_share(before.product_ids, TEA) >= 2 / 3
        recs_shop.view(21, 22, 23, user=recs_shop.alice)  # a switch to coffee
        after = for_you(shopper, 3)
        assert category_share(after.product_ids, COFFEE) >= 2 / 3

    def test_a_purchase_is_named_in_the_reason(self, recs_shop, active_model) -> None:
        recs_shop.buy(31, user=recs_shop.alice)
        recs = for_you(Shopper.for_user(recs_shop.alice), 4)
        assert any(item.reason == "Because you bought Stovetop Kettle" for item in recs)

    def test_a_guest_gets_a_list_from_the_sessions_events(self, recs_shop, active_model) -> None:
        recs_shop.view(21, 22, 23, session_key="guest-session-1")
        recs = for_you(Shopper(session_key="guest-session-1"), 3)
        assert recs.source == "model"
        assert category_share(recs.product_ids, COFFEE) >= 2 / 3

    def test_a_newcomer_gets_popular_products(self, recs_shop, active_model) -> None:
        recs_shop.buy(33, 33, user=recs_shop.bob)
        recs_shop.view(33, 22, user=recs_shop.bob)
        recs = for_you(Shopper.for_user(recs_shop.alice), 2)
        assert recs.source == "popular" and recs.model_version == ""
        assert recs.product_ids[0] == "33"
        assert recs.items[0].reason == "Trending now"

    def test_two_shoppers_with_the_same_history_keep_their_own_purchases(
        self, recs_shop, active_model
    ) -> None:
        """The cache key is per shopper: Bob never gets Alice's list (nor she his)."""
        for user in (recs_shop.alice, recs_shop.bob):
            recs_shop.view(11, 12, user=user)
        top = for_you(Shopper.for_user(recs_shop.alice), 1).product_ids[0]
        recs_shop.buy(top, user=recs_shop.bob)
        recs_shop.view(11, 12, user=recs_shop.alice)  # same events again for both
        recs_shop.view(11, 12, user=recs_shop.bob)
        assert top in for_you(Shopper.for_user(recs_shop.alice), 3).product_ids
        assert top not in for_you(Shopper.for_user(recs_shop.bob), 10).product_ids

    def test_an_unknown_visitor_gets_a_list(self, recs_shop, active_model) -> None:
        recs_shop.view(12, 12, user=recs_shop.bob)
        assert for_you(Shopper(), 2).product_ids[0] == "12"


class TestFallbacks:
    def test_without_a_model_popular_products_of_the_shoppers_categories(
        self, recs_shop, caplog
    ) -> None:
        recs_shop.view(22, 22, 22, 35, user=recs_shop.bob)  # coffee 22 is popular
        recs_shop.view(21, user=recs_shop.alice)
        with caplog.at_level(logging.INFO, logger="shop_recs"):
            recs = for_you(Shopper.for_user(recs_shop.alice), 3)
        assert recs.source == "popular" and recs.model_version == ""
        assert recs.product_ids[0] == "22"
        assert recs.items[0].reason == "Popular in Coffee"
        assert "popularity fallback (no active model)" in caplog.text

    def test_a_corrupt_model_is_logged_and_replaced_by_the_fallback(
        self, recs_shop, corrupt_model, caplog
    ) -> None:
        recs_shop.view(11, 12, user=recs_shop.alice)
        with caplog.at_level(logging.INFO, logger="shop_recs"):
            recs = for_you(Shopper.for_user(recs_shop.alice), 3)
            similar_recs = similar(11, Shopper(), 3)
        assert recs.source == "popular" and len(recs) == 3
        assert similar_recs.source == "popular" and len(similar_recs) == 3
        assert f"Model {corrupt_model.label} could not be loaded" in caplog.text

    def test_a_model_that_fails_while_scoring_is_logged(
        self, recs_shop, active_model, monkeypatch, caplog
    ) -> None:
        def broken(*args, **kwargs):
            raise RuntimeError("scoring exploded")

        monkeypatch.setattr(active_model.recommender, "recommend_batch", broken)
        recs_shop.view(11, 12, user=recs_shop.alice)
        recs = for_you(Shopper.for_user(recs_shop.alice), 3)
        assert recs.source == "popular" and len(recs) == 3
        assert "failed on a for-you list" in caplog.text and "scoring exploded" in caplog.text

    def test_a_new_shop_shows_its_newest_products(self, recs_shop) -> None:
        recs = similar(31, Shopper(), 3)
        assert recs.product_ids == ["36", "35", "34"]
        assert recs.items[0].reason == "New in Kettles"


class TestSimilar:
    def test_similar_products_come_from_the_model(self, recs_shop, active_model) -> None:
        recs = similar(recs_shop.product(21), Shopper(), 4)
        assert recs.source == "model" and recs.model_version == active_model.label
        assert "21" not in recs.product_ids
        assert category_share(recs.product_ids, COFFEE) >= 0.75
        assert recs.items[0].reason == "Similar to Espresso Coffee Beans"

    def test_a_product_the_model_never_saw_gets_text_similarity(
        self, recs_shop, active_model
    ) -> None:
        recs = similar(NEW_TEA, Shopper(), 3)
        assert recs.source == "text"
        assert category_share(recs.product_ids, TEA) == 1.0

    def test_text_similarity_keeps_to_the_category_asked_for(
        self, recs_shop, active_model, monkeypatch
    ) -> None:
        # A catalogue larger than the pool of candidates: the teas, which read most like the
        # new tea, would fill it, and coffee must still come back.
        monkeypatch.setattr("shop_recs.services.recommendations._pool",
                            lambda limit, exclude: limit + len(exclude))
        coffee = str(recs_shop.categories["coffee"].pk)
        recs = similar(NEW_TEA, Shopper(), 3, category=coffee)
        assert recs.source == "text" and len(recs) == 3
        assert category_share(recs.product_ids, COFFEE) == 1.0

    def test_the_catalogue_job_embeds_a_new_product_ahead_of_its_page(
        self, recs_shop, active_model, monkeypatch
    ) -> None:
        from shop_recs.registry import text_encoder
        from tasks.jobs import embed_catalogue

        tea = recs_shop.categories["tea"]
        added = Product.objects.create(title="Hojicha Roasted Green Tea", category=tea,
                                       description=f"Loose leaf tea, batch {uuid.uuid4().hex}.",
                                       price=Decimal("8"))
        assert embed_catalogue() >= 1  # at least the new product's text (others may be cached)
        assert embed_catalogue() == 0  # nothing new since: a lookup per product
        encoder = text_encoder()
        monkeypatch.setattr(encoder, "_embed", lambda *args, **kwargs: pytest.fail(
            "the page ran the text encoder for a product the job had embedded"))
        recs = similar(added, Shopper(), 3)
        assert recs.source == "text" and category_share(recs.product_ids, TEA) == 1.0

    def test_the_catalogue_job_logs_its_progress_on_a_large_catalogue(
        self, recs_shop, caplog
    ) -> None:
        from tasks.jobs import embed_catalogue

        batch = uuid.uuid4().hex
        Product.objects.bulk_create(
            Product(title=f"Tea sampler {number}", description=f"Batch {batch}.",
                    category=recs_shop.categories["tea"], price=Decimal("3"))
            for number in range(150)
        )
        with caplog.at_level(logging.INFO, logger="shop_recs.export"):
            assert embed_catalogue() >= 150
        assert re.search(r"embedding product texts, \d+ of \d+ done", caplog.text)

    def test_a_new_product_without_a_text_encoder_gets_popular_neighbours(
        self, recs_shop, active_model, monkeypatch, caplog
    ) -> None:
        def missing_encoder():
            raise OSError("text model files are missing")

        monkeypatch.setattr("shop_recs.registry.text_encoder", missing_encoder)
        recs_shop.view(14, 14, user=recs_shop.bob)
        recs = similar(NEW_TEA, Shopper(), 3)
        assert recs.source == "popular" and recs.product_ids[0] == "14"
        assert "no text similarity for the new product 17" in caplog.text

    def test_the_models_lists_skip_the_shared_cache_and_fallbacks_use_it(
        self, recs_shop, active_model, caplog
    ) -> None:
        """The model answers from the neighbours it keeps, a new product placed in it too; a
        fallback's list is shared."""
        down = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                            "LOCATION": "redis://127.0.0.1:1/0"}}  # nothing listens on port 1
        with override_settings(CACHES=down), caplog.at_level(logging.WARNING, logger="shop_recs"):
            assert similar(21, Shopper(), 3).source == "model"
            assert similar(NEW_TEA, Shopper(), 3).source == "text"  # placed: its text neighbours
            assert "cache unavailable" not in caplog.text
            with override_settings(SHOP_RECS={**_settings(), "PLACE_NEW_PRODUCTS": False}):
                assert similar(NEW_TEA, Shopper(), 3).source == "text"  # the text fallback
            assert "cache unavailable" in caplog.text

    def test_an_unknown_product_is_refused(self, recs_shop, active_model) -> None:
        with pytest.raises(ProductNotFound):
            similar("999", Shopper())
        with pytest.raises(ProductNotFound):
            similar("not-a-number", Shopper())


class TestBoughtTogether:
    def test_co_purchases_come_first(self, recs_shop, active_model) -> None:
        for user in (recs_shop.alice, recs_shop.bob):
            recs_shop.buy(11, 32, user=user)  # tea with an electric kettle
        count_co_purchases()
        recs = bought_together(11, Shopper(), 4)
        assert recs.product_ids[0] == "32"
        assert recs.items[0].reason == "Often bought with Sencha Green Tea"
        assert recs.source == "co-purchase+model" and recs.model_version == active_model.label
        assert all(item.reason == "Goes well with Sencha Green Tea" for item in recs.items[1:])

    def test_purchases_far_apart_are_not_together(self, recs_shop) -> None:
        recs_shop.clock -= dt.timedelta(days=5)
        recs_shop.buy(11, user=recs_shop.alice)
        recs_shop.clock += dt.timedelta(days=3)
        recs_shop.buy(34, user=recs_shop.alice)
        recs_shop.buy(11, 35, user=recs_shop.bob)
        with override_settings(SHOP_RECS={**_settings(), "BOUGHT_TOGETHER_WINDOW_HOURS": 24}):
            count_co_purchases()
        recs = bought_together(11, Shopper(), 2)
        assert recs.product_ids[0] == "35" and "34" not in recs.product_ids[:1]
        assert recs.source == "co-purchase"

    def test_a_reseller_counts_once(self, recs_shop) -> None:
        recs_shop.buy(*[11, 33] * 5, user=recs_shop.alice)
        recs_shop.buy(11, 34, user=recs_shop.bob)
        recs_shop.buy(11, 34, session_key="guest-buyer")
        count_co_purchases()
        assert bought_together(11, Shopper(), 2).product_ids == ["34", "33"]

    def test_purchases_since_the_last_count_show_after_the_next(self, recs_shop) -> None:
        assert last_counted() is None
        recs_shop.buy(11, 34, user=recs_shop.alice)
        assert count_co_purchases() == 2  # the pair, both ways
        counted = last_counted()
        recs_shop.buy(11, 35, user=recs_shop.bob)
        recs_shop.buy(11, 35, user=recs_shop.staff)
        assert bought_together(11, Shopper(), 2).product_ids[0] == "34"
        cache.clear()  # the list is cached like any product's
        count_co_purchases()
        assert bought_together(11, Shopper(), 2).product_ids[:2] == ["35", "34"]
        assert last_counted() > counted

    def test_a_recount_writes_only_the_pairs_that_changed(self, recs_shop) -> None:
        recs_shop.buy(11, 34, user=recs_shop.alice)
        recs_shop.buy(11, 35, user=recs_shop.bob)
        count_co_purchases()
        before = {(r.product_id, r.other_id): r for r in CoPurchase.objects.all()}
        assert count_co_purchases() == 4  # nothing bought since: nothing written
        assert {(r.product_id, r.other_id): (r.pk, r.counted_at)
                for r in CoPurchase.objects.all()} == {
            pair: (r.pk, r.counted_at) for pair, r in before.items()}
        recs_shop.buy(11, 34, user=recs_shop.staff)
        with override_settings(SHOP_RECS={**_settings(), "BOUGHT_TOGETHER_WINDOW_HOURS": 0}):
            assert count_co_purchases() == 0  # a zero window: no pair is left
        assert not CoPurchase.objects.exists()
        assert count_co_purchases() == 4
        after = {(r.product_id, r.other_id): r for r in CoPurchase.objects.all()}
        assert after[("11", "34")].shoppers == 2 and after[("11", "35")].shoppers == 1

    def test_a_changed_count_replaces_its_row_and_leaves_the_others(self, recs_shop) -> None:
        recs_shop.buy(11, 34, user=recs_shop.alice)
        recs_shop.buy(11, 35, user=recs_shop.bob)
        count_co_purchases()
        before = {(r.product_id, r.other_id): r.pk for r in CoPurchase.objects.all()}
        recs_shop.buy(11, 34, user=recs_shop.staff)
        count_co_purchases()
        after = {(r.product_id, r.other_id): r for r in CoPurchase.objects.all()}
        assert after[("11", "34")].shoppers == 2 and after[("11", "34")].pk != before[("11", "34")]
        assert after[("11", "35")].pk == before[("11", "35")]  # unchanged: not written again
        assert last_counted() == after[("11", "34")].counted_at

    def test_guest_purchases_without_a_session_pair_with_nothing(self, recs_shop) -> None:
        for product in ("11", "34"):  # e.g. imported orders of unknown customers
            Event.objects.create(kind=EventKind.PURCHASE, product_id=product)
        assert count_co_purchases() == 0
        assert bought_together(11, Shopper(), 2).source != "co-purchase"


class TestRecentlyViewed:
    def test_newest_first_without_repeats_or_unavailable_products(self, recs_shop) -> None:
        recs_shop.view(11, 21, 38, 11, 31, user=recs_shop.alice)
        recs_shop.record("add_to_cart", 22, user=recs_shop.alice)
        recs = recently_viewed(Shopper.for_user(recs_shop.alice), 10, exclude=["31"])
        assert recs.product_ids == ["11", "21"]  # 38 is sold out, 31 excluded, 22 not viewed
        assert recs.items[0].reason == "You viewed this recently"

    def test_category_filter(self, recs_shop) -> None:
        recs_shop.view(31, 11, 32, 21, user=recs_shop.alice)
        kettles = recently_viewed(Shopper.for_user(recs_shop.alice), 10, category="3")
        assert kettles.product_ids == ["32", "31"]

    def test_another_shopper_sees_only_their_own(self, recs_shop) -> None:
        recs_shop.view(11, user=recs_shop.alice)
        assert not recently_viewed(Shopper.for_user(recs_shop.bob))


def test_a_web_process_serves_on_the_configured_threads(recs_shop, active_model) -> None:
    """torch and numpy's BLAS both: idle BLAS threads spin on cores other requests need."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from shop_recs.serving import model_holder

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    with threadpool_limits(limits=2, user_api="blas"):
        try:
            model_holder.reset()
            with override_settings(SHOP_RECS={**_settings(), "SERVING_THREADS": 1}):
                assert model_holder.get() is not None
                assert torch.get_num_threads() == 1
                assert blas_threads() == {1}
        finally:
            torch.set_num_threads(previous)
            model_holder.reset()


def test_history_is_the_latest_events_in_time_order(recs_shop) -> None:
    recs_shop.view(11, 12, 13, user=recs_shop.alice)
    with override_settings(SHOP_RECS={**_settings(), "HISTORY_LENGTH": 2}):
        history = load_history(Shopper.for_user(recs_shop.alice))
    assert history.product_ids == ("12", "13") and history.kinds == ("view", "view")


def test_the_history_query_reads_what_the_orm_query_reads(recs_shop) -> None:
    """The history SQL is written out for speed; it must select exactly the ORM's rows."""
    from shop_recs.models.events import HISTORY_KINDS
    from shop_recs.services.shopper import _history_rows

    alice, bob = recs_shop.alice, recs_shop.bob
    recs_shop.view(11, 12, user=alice)
    recs_shop.buy(13, user=alice)
    recs_shop.view(14, user=bob)
    recs_shop.view(15, 16, session_key="guest-1")
    recs_shop.view(17, user=alice, session_key="guest-1")  # a guest who signed in: alice's
    record_event(kind="rec_impression", user=alice, context={"placement": "for_you"})
    record_event(kind="search", user=alice, query="tea")  # no product
    record_event(kind="rec_click", product="12", session_key="guest-1",
                 context={"placement": "similar"})
    for shopper in (Shopper.for_user(alice), Shopper.for_user(bob),
                    Shopper(session_key="guest-1"), Shopper(session_key="nobody")):
        expected = list(shopper.events().filter(kind__in=HISTORY_KINDS).exclude(product_id="")
                        .order_by("-timestamp", "-id").values_list("id", "product_id", "kind")[:3])
        bought = shopper.events().filter(kind="purchase").exclude(product_id="")
        assert _history_rows(shopper, 3) == (expected, list(bought.values_list("product_id",
                                                                               flat=True)))
    latest, _ = _history_rows(Shopper(session_key="guest-1"), 10)
    assert [pid for _, pid, _ in latest] == ["12", "16", "15"]
    assert _history_rows(Shopper(), 10) == ([], [])


def test_showing_a_list_does_not_change_the_history(recs_shop) -> None:
    """Impressions are not behaviour: the model must not read them as the shopper's events."""
    shopper = Shopper.for_user(recs_shop.alice)
    recs_shop.view(11, user=recs_shop.alice)
    before = load_history(shopper).event_ids
    record_event(kind="rec_impression", user=recs_shop.alice, context={"placement": "for_you"})
    assert load_history(shopper).event_ids == before
    recs_shop.view(12, user=recs_shop.alice)
    assert load_history(shopper).event_ids != before


def test_limits_are_capped_and_checked(recs_shop) -> None:
    assert clamp_limit(None) == 8
    assert clamp_limit(500) == 50
    for bad in (0, -1, "3", 2.5, True):
        with pytest.raises(ValueError):
            clamp_limit(bad)


def _settings() -> dict:
    from django.conf import settings

    return dict(settings.SHOP_RECS)


def test_purchases_beyond_the_window_come_with_the_history_read(
    recs_shop, django_assert_num_queries
) -> None:
    """Lists leave out what the shopper bought, however long ago: the one history query says."""
    shopper = Shopper.for_user(recs_shop.alice)
    with override_settings(SHOP_RECS={**_settings(), "HISTORY_LENGTH": 2}):
        recs_shop.buy(11, user=recs_shop.alice)
        recs_shop.view(12, 13, user=recs_shop.alice)
        recs_shop.buy(14, user=recs_shop.bob)
        with django_assert_num_queries(1):
            history = load_history(shopper)
        assert history.product_ids == ("12", "13") and history.purchased == {"11"}


def test_a_purchase_imported_with_an_old_time_is_left_out_at_once(recs_shop) -> None:
    """An order imported late (``recs_import_orders``) is older than the whole window."""
    shopper = Shopper.for_user(recs_shop.alice)
    with override_settings(SHOP_RECS={**_settings(), "HISTORY_LENGTH": 2}):
        recs_shop.view(12, 13, user=recs_shop.alice)
        assert load_history(shopper).purchased == frozenset()
        assert "11" in {item.product_id for item in for_you(shopper, limit=20).items}
        record_event(kind="purchase", product="11", user=recs_shop.alice,
                     timestamp=timezone.now() - dt.timedelta(days=400))
        history = load_history(shopper)
        assert history.product_ids == ("12", "13") and history.purchased == {"11"}
        assert "11" not in {item.product_id for item in for_you(shopper, limit=20).items}
