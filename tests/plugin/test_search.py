"""Personalised search on the tea / coffee / kettle shop: words, meaning, typos, the shopper's
behaviour (with the tiny trained model and without any), rules, the REST endpoints, recording,
suggestions, and the demo's search page."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from rest_framework.test import APIClient

from shop_recs.events import record_event
from shop_recs.models import Event, EventKind
from shop_recs.services import Shopper
from shop_recs.services.new_products import placed_model
from shop_recs.services.search import (
    SearchQueryError,
    _database_keyword_scores,
    _keyword_in_database,
    search,
    search_index,
    suggest,
)
from tests.plugin.recs_fixtures import COFFEE, NEW_TEA, TEA, RecsShop, activate

API = "/recs/api"
TEAS = [*TEA, str(NEW_TEA)]
ANYONE = Shopper()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def ids(results) -> list[str]:
    return [item.product_id for item in results.items]


def share(product_ids: list[str], category: list[str]) -> float:
    return sum(pid in category for pid in product_ids) / len(product_ids)


def in_top_six(results, category: list[str]) -> int:
    """How many of the first six results (a category's size) are of the category."""
    return sum(pid in category for pid in ids(results)[:6])


class TestFinding:
    def test_by_words(self, recs_shop: RecsShop) -> None:
        results = search(ANYONE, "Darjeeling", 5)
        assert ids(results)[0] == "15" and not results.corrected

    def test_by_meaning_when_no_product_uses_the_word(self, recs_shop: RecsShop) -> None:
        # No product text says "caffeine" or "latte"; the meaning points at coffee.
        results = search(ANYONE, "latte caffeine", 3)
        assert share(ids(results), COFFEE) == 1

    def test_a_misspelt_query_still_finds_its_product(self, recs_shop: RecsShop) -> None:
        results = search(ANYONE, "darjeling", 5)
        assert results.corrected and results.searched == "darjeeling"
        assert ids(results)[0] == "15"
        assert ids(search(ANYONE, "gooseneck kettel", 3))[0] == "33"

    def test_a_product_the_model_never_saw_is_found(self, recs_shop, active_model) -> None:
        assert ids(search(ANYONE, "genmaicha", 3))[0] == str(NEW_TEA)

    def test_unavailable_products_are_never_found(self, recs_shop: RecsShop) -> None:
        found = ids(search(ANYONE, "kettle", 20))
        assert "31" in found and "37" not in found and "38" not in found

    def test_category_filter(self, recs_shop: RecsShop) -> None:
        coffee = str(recs_shop.categories["coffee"].pk)
        found = ids(search(ANYONE, "brewing", 10, category=coffee))
        assert found and set(found) <= set(COFFEE)

    def test_the_model_versions_embeddings_are_used(self, recs_shop, active_model) -> None:
        search(ANYONE, "tea", 3)
        index = search_index.get()
        assert index.model_version_id == active_model.version_id
        assert index.search.dense is not None and index.embedding is None

    def test_a_new_model_version_rebuilds_the_index_in_the_background(
        self, transactional_db, recs_shop, trained_artifact
    ) -> None:
        before = search_index.get()
        assert before.model_version_id is None
        version = activate(*trained_artifact)
        assert search_index.get() is before  # searches go on with the old index meanwhile
        rebuilding = search_index._rebuilding
        assert rebuilding is not None
        rebuilding.join(timeout=120)
        after = search_index.get()
        assert after.model_version_id == version.pk and after.available == before.available

    def test_a_large_catalogue_is_embedded_in_the_background(self, recs_shop, settings) -> None:
        settings.SHOP_RECS = {**settings.SHOP_RECS, "SEARCH_INLINE_EMBED_LIMIT": 0}
        index = search_index.get()
        assert index.embedding is not None  # words serve while the meaning is computed
        index.embedding.join(timeout=120)
        assert share(ids(search(ANYONE, "latte caffeine", 3)), COFFEE) == 1


class TestPersonalisation:
    """"brewing" is a word of every tea and every coffee; meaning leans to coffee ("Cold Brew").
    The shopper's taste moves their category up, compared with a newcomer's list."""

    def test_the_model_moves_the_shoppers_category_up(self, recs_shop, active_model) -> None:
        recs_shop.view(21, 22, 23, user=recs_shop.alice)
        recs_shop.view(11, 12, 13, user=recs_shop.bob)
        newcomer = search(Shopper(session_key="new-guest"), "brewing", 6)
        for_alice = search(Shopper.for_user(recs_shop.alice), "brewing", 6)
        for_bob = search(Shopper.for_user(recs_shop.bob), "brewing", 6)
        assert for_alice.results.source == "search+model"
        assert for_alice.results.model_version == active_model.label
        assert in_top_six(for_alice, COFFEE) > in_top_six(newcomer, COFFEE)
        assert in_top_six(for_bob, TEAS) > in_top_six(newcomer, TEAS)

    def test_without_a_model_the_shoppers_categories_move_up(self, recs_shop) -> None:
        recs_shop.view(21, 22, user=recs_shop.alice)
        recs_shop.view(11, 12, session_key="guest-tea")
        newcomer = search(Shopper(session_key="new-guest"), "brewing", 6)
        for_alice = search(Shopper.for_user(recs_shop.alice), "brewing", 6)
        for_guest = search(Shopper(session_key="guest-tea"), "brewing", 6)
        assert for_alice.results.source == "search+categories"
        assert in_top_six(for_alice, COFFEE) > in_top_six(newcomer, COFFEE)
        assert in_top_six(for_guest, TEAS) > in_top_six(newcomer, TEAS)

    def test_the_shopper_does_not_bury_the_best_match(self, recs_shop, active_model) -> None:
        recs_shop.view(21, 22, 23, 24, user=recs_shop.alice)  # a coffee lover
        assert ids(search(Shopper.for_user(recs_shop.alice), "Darjeeling", 5))[0] == "15"

    def test_a_new_product_is_ranked_by_the_model_as_placed(self, recs_shop, active_model,
                                                            settings) -> None:
        recs_shop.view(11, 12, 13, user=recs_shop.bob)  # a tea lover
        bob = Shopper.for_user(recs_shop.bob)
        settings.SHOP_RECS = {**settings.SHOP_RECS, "PLACE_NEW_PRODUCTS": False}
        assert str(NEW_TEA) not in ids(search(bob, "brewing", 8))  # the least liked, unknown
        settings.SHOP_RECS = {**settings.SHOP_RECS, "PLACE_NEW_PRODUCTS": True}
        placed_model.invalidate()
        results = search(bob, "brewing", 8)
        assert str(NEW_TEA) in ids(results) and results.results.source == "search+model"

    def test_a_newcomer_gets_the_plain_ranking(self, recs_shop, active_model) -> None:
        results = search(Shopper(session_key="new-guest"), "brewing", 4)
        assert results.results.source == "search" and results.results.model_version == ""


class TestBadInput:
    @pytest.mark.parametrize("query", ["", "   ", "\t\n"])
    def test_an_empty_query_is_refused(self, recs_shop, query) -> None:
        with pytest.raises(SearchQueryError, match="empty"):
            search(ANYONE, query)

    def test_an_overlong_query_is_refused(self, recs_shop) -> None:
        with pytest.raises(SearchQueryError, match="201 characters"):
            search(ANYONE, "t" * 201)

    @pytest.mark.parametrize(("params", "field", "words"), [
        ({}, "q", "required"),
        ({"q": ""}, "q", "empty"),
        ({"q": "   "}, "q", "empty"),
        ({"q": "tea " * 60}, "q", "at most 200"),
        ({"q": "tea", "limit": "0"}, "limit", "greater than or equal to 1"),
        ({"q": "tea", "limit": "many"}, "limit", "valid integer"),
    ])
    def test_the_api_answers_400_with_what_is_wrong(self, api, recs_shop, params, field,
                                                    words) -> None:
        response = api.get(f"{API}/search/", params)
        assert response.status_code == 400
        assert words in " ".join(response.json()[field])
        assert not Event.objects.filter(kind=EventKind.SEARCH).exists()

    def test_suggest_refuses_an_empty_prefix(self, api, recs_shop) -> None:
        response = api.get(f"{API}/search/suggest/", {"q": " "})
        assert response.status_code == 400 and "q" in response.json()


class TestApi:
    def test_search_records_the_query_and_the_results_shown(self, api, recs_shop) -> None:
        api.force_login(recs_shop.alice)
        response = api.get(f"{API}/search/", {"q": "earl grye", "limit": 3})
        assert response.status_code == 200
        body = response.json()
        assert body["query"] == "earl grye" and body["searched"] == "earl grey"
        assert body["corrected"] is True and body["placement"] == "search"
        assert body["items"][0]["product_id"] == "13" and body["items"][0]["title"]
        assert response["Cache-Control"].startswith("private")
        searched = Event.objects.get(kind=EventKind.SEARCH)
        assert searched.user == recs_shop.alice and searched.query == "earl grye"
        assert searched.context["searched"] == "earl grey"
        shown = Event.objects.get(kind=EventKind.REC_IMPRESSION)
        assert shown.context["placement"] == "search"
        assert shown.context["products"][: len(body["items"])] == [
            item["product_id"] for item in body["items"]]

    def test_a_click_on_a_result_is_recorded_as_a_search_click(self, api, recs_shop) -> None:
        body = api.get(f"{API}/search/", {"q": "oolong"}).json()
        first = body["items"][0]
        response = api.get(first["click_url"])
        assert response.status_code == 302 and response["Location"] == first["url"]
        click = Event.objects.get(kind=EventKind.REC_CLICK)
        assert click.product_id == first["product_id"] == "16"
        assert click.context["placement"] == "search"

    def test_suggestions_complete_titles_and_popular_queries(self, api, recs_shop) -> None:
        for who in ("s1", "s2", "s3"):
            record_event(kind="search", query="Espresso machine", session_key=who)
        record_event(kind="search", query="espresso for my ex", user=recs_shop.bob)
        response = api.get(f"{API}/search/suggest/", {"q": "espr", "limit": 5})
        assert response.status_code == 200
        suggestions = response.json()["suggestions"]
        # Typed by three shoppers: suggested first; typed by one: private, never suggested.
        assert suggestions[0] == "espresso machine"
        assert "Espresso Coffee Beans" in suggestions
        assert not any("my ex" in s for s in suggestions)
        assert suggest("kett", 3) == ["Electric Kettle", "Glass Electric Kettle",
                                      "Gooseneck Pour-over Kettle"]


class TestDemoPage:
    def test_the_search_page_uses_the_service(self, client, recs_shop) -> None:
        response = client.get("/search/", {"q": "darjeling"})
        assert response.status_code == 200
        page = response.content.decode()
        assert "Darjeeling Black Tea" in page and "darjeeling" in page
        assert Event.objects.filter(kind=EventKind.SEARCH, query="darjeling").count() == 1


class TestKeywordBackends:
    def test_words_by_postgresql_full_text_search(self, recs_shop) -> None:
        if connection.vendor != "postgresql":
            pytest.skip("PostgreSQL full-text search (pass 2 of scripts/test.sh, CI)")
        assert _keyword_in_database()  # "auto" on PostgreSQL
        index = search_index.get()
        scores = _database_keyword_scores(index, "teapots")  # stemmed by PostgreSQL
        matched = {index.product_ids[i] for i in np.flatnonzero(scores)}
        assert matched == set(TEAS)  # "teapot" is in every tea's description, nowhere else
        scores = _database_keyword_scores(index, "assam")
        assert index.product_ids[int(np.argmax(scores))] == "12"

    def test_the_backend_setting_is_checked(self, recs_shop, settings) -> None:
        settings.SHOP_RECS = {**settings.SHOP_RECS, "SEARCH_KEYWORD_BACKEND": "memory"}
        assert not _keyword_in_database()
        assert ids(search(ANYONE, "assam", 1)) == ["12"]
        settings.SHOP_RECS = {**settings.SHOP_RECS, "SEARCH_KEYWORD_BACKEND": "elastic"}
        with pytest.raises(ImproperlyConfigured, match="elastic"):
            search(ANYONE, "assam")
        if connection.vendor != "postgresql":
            settings.SHOP_RECS = {**settings.SHOP_RECS, "SEARCH_KEYWORD_BACKEND": "postgres"}
            with pytest.raises(ImproperlyConfigured, match="sqlite"):
                search(ANYONE, "assam")
