"""Products added after training enter for-you lists and product pages' lists (search:
tests/plugin/test_search.py), placed by their text, without retraining; the trained model is left
as it was."""

from __future__ import annotations

import logging
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.test import override_settings

from demo.models import Product
from shop_recs.services import Shopper, bought_together, for_you, similar
from shop_recs.services.catalog import catalog
from shop_recs.services.new_products import place_new_products, placed_model, with_new_products
from shop_recs.serving import LoadedModel, model_holder
from tests.plugin.recs_fixtures import NEW_TEA, TEA, RecsShop

ALL_TEAS = [int(pid) for pid in TEA]


def place_new_products_off():
    return override_settings(SHOP_RECS={**settings.SHOP_RECS, "PLACE_NEW_PRODUCTS": False})


def test_a_tea_added_after_training_is_recommended_to_a_tea_shopper(
    recs_shop: RecsShop, active_model
) -> None:
    recs_shop.view(*ALL_TEAS, user=recs_shop.alice)  # every tea the model knows, seen
    shopper = Shopper.for_user(recs_shop.alice)
    with place_new_products_off():
        before = for_you(shopper, 3)
    assert str(NEW_TEA) not in before.product_ids
    placed_model.invalidate()
    after = for_you(shopper, 3)
    assert after.source == "model" and after.model_version == active_model.label
    assert after.product_ids[0] == str(NEW_TEA)
    assert after.items[0].reason.startswith("Because you viewed ")


def test_a_shopper_who_saw_only_new_products_gets_the_models_list(
    recs_shop: RecsShop, active_model
) -> None:
    recs_shop.view(NEW_TEA, user=recs_shop.bob)
    shopper = Shopper.for_user(recs_shop.bob)
    with place_new_products_off():
        assert for_you(shopper, 3).source == "popular"  # the trained model knows none of it
    placed_model.invalidate()
    recs = for_you(shopper, 3)
    assert recs.source == "model"
    assert sum(pid in TEA for pid in recs.product_ids) >= 2


def test_the_trained_model_is_left_as_it_was_and_a_new_products_page_lists_by_text(
    recs_shop: RecsShop, active_model
) -> None:
    placed = place_new_products()
    assert placed.trained is active_model and placed.unknown == {str(NEW_TEA)}
    assert placed.model.version_id == active_model.version_id
    assert str(NEW_TEA) in placed.model.recommender.item_ids
    assert str(NEW_TEA) not in active_model.recommender.item_ids
    assert model_holder.get() is active_model
    page = similar(NEW_TEA, Shopper(), len(TEA))
    assert page.source == "text" and page.model_version == active_model.label
    assert set(page.product_ids) == set(TEA)  # its text: a tea like the others


def test_a_new_tea_is_listed_on_the_other_teas_pages_after_them(
    recs_shop: RecsShop, active_model
) -> None:
    limit = len(TEA) + 1  # the other five teas, the new one, one more
    with place_new_products_off():
        assert str(NEW_TEA) not in similar(TEA[0], Shopper(), limit).product_ids
        assert str(NEW_TEA) not in bought_together(TEA[0], Shopper(), limit).product_ids
    placed_model.invalidate()
    page = similar(TEA[0], Shopper(), limit)
    assert page.source == "model" and page.model_version == active_model.label
    assert page.product_ids.index(str(NEW_TEA)) == len(TEA) - 1  # after the teas it knows
    assert str(NEW_TEA) in bought_together(TEA[0], Shopper(), limit).product_ids


def test_a_shared_list_is_made_again_once_new_products_are_placed(
    recs_shop: RecsShop, active_model
) -> None:
    limit = len(TEA) + 1
    with place_new_products_off():  # cached in the shared cache without the new tea
        assert str(NEW_TEA) not in bought_together(TEA[0], Shopper(), limit).product_ids
    placed_model.invalidate()
    assert str(NEW_TEA) in bought_together(TEA[0], Shopper(), limit).product_ids
    added = Product.objects.create(title="Rooibos Tea", description="Loose leaf tea.",
                                   category=recs_shop.categories["tea"], price=Decimal("6"))
    catalog.invalidate()
    placed_model.invalidate()
    assert str(added.pk) in bought_together(TEA[0], Shopper(), limit + 1).product_ids


def test_the_placement_is_reused_until_other_products_are_new(
    recs_shop: RecsShop, active_model
) -> None:
    first = placed_model.get()
    catalog.invalidate()  # a catalogue refresh with the same products
    again = place_new_products()
    assert again.snapshot is not first.snapshot
    assert again.model is first.model  # nothing encoded or copied again
    added = Product.objects.create(title="Rooibos Tea", description="Caffeine-free tea.",
                                   category=recs_shop.categories["tea"], price=Decimal("6"))
    catalog.invalidate()
    grown = place_new_products()
    assert grown.unknown == {str(NEW_TEA), str(added.pk)}
    assert str(added.pk) in grown.model.recommender.item_ids


def test_another_active_version_is_served_at_once(recs_shop: RecsShop, active_model) -> None:
    placed_model.get()  # placed for the active version
    other = LoadedModel(active_model.version_id + 1, "other", active_model.recommender)
    assert with_new_products(other) is other  # not the placement made for another version


def test_a_failed_placement_is_logged_and_the_trained_model_serves(
    recs_shop: RecsShop, active_model, monkeypatch, caplog
) -> None:
    def missing_encoder():
        raise OSError("text model files are missing")

    monkeypatch.setattr("shop_recs.registry.text_encoder", missing_encoder)
    recs_shop.view(11, 12, user=recs_shop.alice)
    with caplog.at_level(logging.ERROR, logger="shop_recs.services.new_products"):
        recs = for_you(Shopper.for_user(recs_shop.alice), 3)
    assert recs.source == "model" and str(NEW_TEA) not in recs.product_ids
    assert "could not be placed" in caplog.text
    assert placed_model.get().model is active_model  # kept until the catalogue changes


def test_a_failed_placement_is_tried_again_after_the_next_catalogue_refresh(
    recs_shop: RecsShop, active_model, monkeypatch
) -> None:
    from shop_recs import registry

    def missing_encoder():
        raise OSError("text model files are missing")

    working = registry.text_encoder
    monkeypatch.setattr(registry, "text_encoder", missing_encoder)
    assert placed_model.get().failed
    monkeypatch.setattr(registry, "text_encoder", working)  # the files are back
    catalog.invalidate()  # the next refresh, with the same new products
    placed = place_new_products()
    assert not placed.failed and str(NEW_TEA) in placed.model.recommender.item_ids


def test_the_new_product_boost_scales_the_placed_products(
    recs_shop: RecsShop, active_model
) -> None:
    plain = placed_model.get()
    boost = {**settings.SHOP_RECS, "NEW_PRODUCT_BOOST": 2.5}
    with override_settings(SHOP_RECS=boost):
        boosted = place_new_products()  # the same new products, another boost: placed again
    assert (plain.boost, boosted.boost) == (1.0, 2.5) and boosted.model is not plain.model
    row = plain.model.recommender.item_ids.index(str(NEW_TEA))
    vectors = [placed.model.recommender.item_vectors()[row] for placed in (plain, boosted)]
    np.testing.assert_allclose(vectors[1], 2.5 * vectors[0], rtol=1e-5)
