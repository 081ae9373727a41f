"""Business rules: availability, exclusions, purchases per scenario, category filter and cap, and
the shop's rerank hook; checked on lists the real model ranks and on the rule function itself."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.test import override_settings

from demo.models import Product
from recsys_core.inference import Recommender
from shop_recs.services import Candidate, Reason, Shopper, for_you, similar
from shop_recs.services.catalog import CatalogSnapshot, catalog
from shop_recs.services.rules import Rules, apply_rules
from tests.plugin.recs_fixtures import KETTLES, TEA

hook_calls: list[tuple[Shopper, str, list[str]]] = []


def promote_36_and_drop_35(shopper: Shopper, placement: str, candidates: list[Candidate]):
    """A shop's RERANK_HOOK: boost one product, bury nothing, drop another."""
    hook_calls.append((shopper, placement, [c.product_id for c in candidates]))
    for candidate in candidates:
        if candidate.product_id == "36":
            candidate.score += 100.0
    kept = [c for c in candidates if c.product_id != "35"]
    return sorted(kept, key=lambda c: c.score, reverse=True)


def add_a_retired_product(shopper, placement, candidates):
    return [Candidate("37", 1e9, Reason("trending")), *candidates]


def broken_hook(shopper, placement, candidates):
    raise RuntimeError("hook bug")


def recs_settings_with(**overrides):
    return override_settings(SHOP_RECS={**settings.SHOP_RECS, **overrides})


@pytest.fixture(autouse=True)
def _forget_hook_calls():
    hook_calls.clear()


class TestOnModelLists:
    def test_unavailable_products_are_never_recommended(self, recs_shop, active_model) -> None:
        Product.objects.filter(pk=32).update(stock=0)  # in the model, now sold out
        ids = similar(31, Shopper(), 20).product_ids
        assert "32" not in ids and "37" not in ids and "38" not in ids
        assert set(KETTLES) - {"31", "32"} <= set(ids)

    def test_a_product_that_sells_out_after_the_snapshot_is_not_shown(
        self, recs_shop, active_model
    ) -> None:
        first = similar(31, Shopper(), 3).product_ids
        Product.objects.filter(pk=first[0]).update(active=False)  # snapshot still lists it
        again = similar(31, Shopper(), 3).product_ids
        assert first[0] not in again and len(again) == 3

    def test_more_sold_out_products_than_spares_still_fill_the_list(
        self, recs_shop, active_model
    ) -> None:
        """The products of a list are fetched with a few spares; when more than that sold out
        since the snapshot, the next candidates are fetched."""
        first = similar(11, Shopper(), 8).product_ids
        Product.objects.filter(pk__in=first[:5]).update(active=False)  # snapshot still lists them
        again = similar(11, Shopper(), 3).product_ids
        assert len(again) == 3 and not set(again) & set(first[:5])

    def test_purchases_are_hidden_per_scenario(self, recs_shop, active_model) -> None:
        recs_shop.buy(12, user=recs_shop.alice)
        alice = Shopper.for_user(recs_shop.alice)
        assert "12" not in similar(11, alice, 20).product_ids
        assert "12" in similar(11, Shopper.for_user(recs_shop.bob), 20).product_ids
        with recs_settings_with(EXCLUDE_PURCHASED=["for_you"]):
            assert "12" in similar(11, alice, 20).product_ids

    def test_at_most_n_per_category(self, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, 13, user=recs_shop.alice)
        with recs_settings_with(MAX_PER_CATEGORY=1):
            recs = for_you(Shopper.for_user(recs_shop.alice), 3)
        assert len(recs) == 3
        assert sum(pid in TEA for pid in recs.product_ids) == 1

    def test_category_filter_and_exclude_list(self, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, 13, user=recs_shop.alice)  # a tea drinker...
        recs = for_you(Shopper.for_user(recs_shop.alice), 10, category="3", exclude=["33"])
        assert set(recs.product_ids) == set(KETTLES) - {"33"}  # ...asking for kettles

    def test_what_may_be_shown_is_resolved_once_per_snapshot_and_category(
        self, recs_shop, active_model, monkeypatch
    ) -> None:
        recs_shop.view(11, 12, 13, user=recs_shop.alice)
        alice = Shopper.for_user(recs_shop.alice)
        resolved = []
        item_mask = Recommender.item_mask

        def counted(model: Recommender, items):
            resolved.append(len(items))
            return item_mask(model, items)

        monkeypatch.setattr(Recommender, "item_mask", counted)
        for _ in range(2):
            assert for_you(alice, 5).source == "model"
            assert set(for_you(alice, 5, category="3").product_ids) <= set(KETTLES)
            similar(31, alice, 5)
        # The model with the new tea placed, which both lists use: the available products and
        # those of category 3.
        assert len(resolved) == 2
        # A category nobody has: nothing allowed, and nothing kept for it.
        for category in ("no-such-category", "another"):
            assert for_you(alice, 5, category=category).product_ids == []
        assert len(resolved) == 4 and resolved[2:] == [0, 0]
        catalog.invalidate()  # a new snapshot (products sold out, came back): resolved anew
        for_you(alice, 5)
        assert len(resolved) == 5

    def test_the_rerank_hook_boosts_and_drops(self, recs_shop, active_model) -> None:
        path = f"{__name__}.promote_36_and_drop_35"
        with recs_settings_with(RERANK_HOOK=path):
            recs = similar(31, Shopper.for_user(recs_shop.bob), 4)
        assert recs.product_ids[0] == "36" and "35" not in recs.product_ids
        shopper, placement, seen = hook_calls[0]
        assert shopper == Shopper.for_user(recs_shop.bob) and placement == "similar"
        assert "35" in seen and "31" not in seen  # the hook sees the list after the rules

    def test_products_a_hook_adds_still_pass_the_rules(self, recs_shop, active_model) -> None:
        with recs_settings_with(RERANK_HOOK=f"{__name__}.add_a_retired_product"):
            assert "37" not in similar(31, Shopper(), 4).product_ids

    def test_a_failing_hook_is_logged_and_the_list_served(
        self, recs_shop, active_model, caplog
    ) -> None:
        with recs_settings_with(RERANK_HOOK=f"{__name__}.broken_hook"), \
                caplog.at_level(logging.ERROR, logger="shop_recs"):
            recs = similar(31, Shopper(), 3)
        assert len(recs) == 3 and "RERANK_HOOK failed" in caplog.text


def snapshot() -> CatalogSnapshot:
    categories = {"1": "tea", "2": "tea", "3": "tea", "4": "cups", "5": "cups"}
    return CatalogSnapshot(
        available=frozenset(categories), category_of=categories,
        category_names={"tea": "Tea", "cups": "Cups"},
        members={"tea": frozenset({"1", "2", "3"}), "cups": frozenset({"4", "5"})},
    )


def candidates(*ids: str) -> list[Candidate]:
    return [Candidate(pid, float(10 - i), Reason("trending")) for i, pid in enumerate(ids)]


def ids(found: list[Candidate]) -> list[str]:
    return [c.product_id for c in found]


class TestRuleFunction:
    def test_rules_in_order(self) -> None:
        rules = Rules("for_you", Shopper(user_id=1), exclude=frozenset({"2"}),
                      purchased=frozenset({"4"}), max_per_category=1)
        found = apply_rules(candidates("9", "1", "2", "3", "4", "5", "1"), snapshot(), rules)
        # 9 unknown, 2 excluded, 4 bought, 3 over the tea cap, the second 1 a repeat
        assert ids(found) == ["1", "5"]
        assert [c.category for c in found] == ["tea", "cups"]

    def test_category_filter(self) -> None:
        rules = Rules("similar", Shopper(), category="cups")
        assert ids(apply_rules(candidates("1", "4", "5"), snapshot(), rules)) == ["4", "5"]

    def test_no_cap_by_default(self) -> None:
        rules = Rules("similar", Shopper())
        assert ids(apply_rules(candidates("1", "2", "3"), snapshot(), rules)) == ["1", "2", "3"]

    def test_the_hook_runs_unless_skipped(self) -> None:
        with recs_settings_with(RERANK_HOOK=f"{__name__}.promote_36_and_drop_35"):
            apply_rules(candidates("1", "2"), snapshot(), Rules("recently_viewed", Shopper(),
                                                                rerank=False))
            assert hook_calls == []
            apply_rules(candidates("1", "2"), snapshot(), Rules("for_you", Shopper()))
            assert hook_calls == [(Shopper(), "for_you", ["1", "2"])]
