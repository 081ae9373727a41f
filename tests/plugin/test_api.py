"""The REST API: every endpoint, who may read what, bad input, idempotent event batches, click
feedback, throttling, cache headers, and the OpenAPI schema."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from shop_recs.models import Event, EventKind
from shop_recs.services import Shopper, for_you
from shop_recs.services.copurchase import count_co_purchases
from tests.plugin.recs_fixtures import COFFEE, TEA

API = "/recs/api"


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def share(ids: list[str], category: list[str]) -> float:
    return sum(pid in category for pid in ids) / len(ids)


def item_ids(response) -> list[str]:
    return [item["product_id"] for item in response.json()["items"]]


class TestForYou:
    def test_signed_in_shopper(self, api, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, 13, user=recs_shop.alice)
        api.force_login(recs_shop.alice)
        response = api.get(f"{API}/for-you/", {"limit": 3})
        assert response.status_code == 200
        body = response.json()
        assert body["placement"] == "for_you" and body["model_version"] == active_model.label
        assert len(body["items"]) == 3 and share(item_ids(response), TEA) >= 2 / 3
        item = body["items"][0]
        assert item["url"] == f"/products/{item['product_id']}/"
        assert item["click_url"].startswith("/recs/click/") and item["reason"] and item["title"]
        shown = Event.objects.get(kind=EventKind.REC_IMPRESSION)
        assert shown.user == recs_shop.alice and shown.context["channel"] == "api"

    def test_token_auth(self, api, recs_shop, active_model) -> None:
        recs_shop.view(21, 22, 23, user=recs_shop.bob)
        token = Token.objects.create(user=recs_shop.bob)
        api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        response = api.get(f"{API}/for-you/", {"limit": 3})
        assert response.status_code == 200 and share(item_ids(response), COFFEE) >= 2 / 3

    def test_a_guest_by_session(self, api, recs_shop, active_model) -> None:
        api.post(f"{API}/events/", {"events": [{"kind": "view", "product": "31"},
                                               {"kind": "view", "product": "32"}]},
                 format="json")
        response = api.get(f"{API}/for-you/", {"limit": 3})
        assert response.status_code == 200
        assert {"31", "32"}.isdisjoint(item_ids(response))
        assert response.json()["source"] == "model"

    def test_personal_responses_are_private(self, api, recs_shop, active_model) -> None:
        api.force_login(recs_shop.alice)
        for url in (f"{API}/for-you/", f"{API}/products/11/similar/",
                    f"{API}/products/11/bought-together/"):
            response = api.get(url)
            assert "private" in response["Cache-Control"], url
            vary = {v.strip().lower() for v in response["Vary"].split(",")}
            assert {"cookie", "authorization"} <= vary, url

    def test_limit_category_and_exclude(self, api, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, user=recs_shop.alice)
        api.force_login(recs_shop.alice)
        response = api.get(f"{API}/for-you/", {"limit": 500, "category": "2",
                                                "exclude": "21, 22"})
        assert response.status_code == 200
        assert sorted(item_ids(response)) == ["23", "24", "25", "26"]
        assert len(item_ids(api.get(f"{API}/for-you/", {"limit": 500}))) > 2
        with override_settings(SHOP_RECS={**settings.SHOP_RECS, "MAX_LIMIT": 2}):
            assert len(item_ids(api.get(f"{API}/for-you/", {"limit": 500}))) == 2

    @pytest.mark.parametrize(("query", "field"), [
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": -3}, "limit"),
        ({"category": "x" * 65}, "category"),
        ({"exclude": ",".join(str(i) for i in range(101))}, "exclude"),
        ({"exclude": "1," + "9" * 65}, "exclude"),
    ])
    def test_bad_input_is_a_400_naming_the_field(self, api, recs_shop, query, field) -> None:
        for _ in range(2):  # the same bad query is refused again (validations are kept)
            response = api.get(f"{API}/for-you/", query)
            assert response.status_code == 400
            assert response["Content-Type"] == "application/json"
            assert field in response.json() and response.json()[field][0]


def test_list_bodies_are_exactly_what_the_schema_declares(recs_shop, active_model) -> None:
    """ListSerializer.of builds the body by hand for speed; it must match the declared fields
    (which make the OpenAPI schema) value for value."""
    from shop_recs.api.serializers import ListSerializer

    recs_shop.view(11, 12, user=recs_shop.alice)
    recs = for_you(Shopper.for_user(recs_shop.alice), 4)
    assert len(recs) == 4
    assert ListSerializer.of(recs) == ListSerializer(recs).data


class TestAnotherUsersList:
    def url(self, user) -> str:
        return f"{API}/users/{user.pk}/recommendations/"

    def test_anonymous_is_refused(self, api, recs_shop) -> None:
        assert api.get(self.url(recs_shop.alice)).status_code in (401, 403)

    def test_another_shopper_is_refused(self, api, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, user=recs_shop.alice)
        api.force_login(recs_shop.bob)
        response = api.get(self.url(recs_shop.alice))
        assert response.status_code == 403 and "detail" in response.json()
        assert "items" not in response.json()

    def test_staff_reads_the_users_list(self, api, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, 13, user=recs_shop.alice)
        api.force_login(recs_shop.staff)
        response = api.get(self.url(recs_shop.alice), {"limit": 4})
        assert response.status_code == 200
        expected = for_you(Shopper.for_user(recs_shop.alice), 4).product_ids
        assert item_ids(response) == expected
        assert not Event.objects.filter(kind=EventKind.REC_IMPRESSION).exists()

    def test_unknown_user_is_404(self, api, recs_shop) -> None:
        api.force_login(recs_shop.staff)
        assert api.get(f"{API}/users/999999/recommendations/").status_code == 404
        assert api.get(f"{API}/users/abc/recommendations/").status_code == 404
        assert api.get(f"{API}/users/{'9' * 30}/recommendations/").status_code == 404


class TestProductLists:
    def test_similar(self, api, recs_shop, active_model) -> None:
        response = api.get(f"{API}/products/21/similar/", {"limit": 4})
        assert response.status_code == 200 and response.json()["placement"] == "similar"
        assert "21" not in item_ids(response) and share(item_ids(response), COFFEE) >= 0.75

    def test_bought_together(self, api, recs_shop, active_model) -> None:
        recs_shop.buy(11, 33, user=recs_shop.alice)
        count_co_purchases()
        response = api.get(f"{API}/products/11/bought-together/", {"limit": 2})
        assert response.status_code == 200 and item_ids(response)[0] == "33"

    @pytest.mark.parametrize("kind", ["similar", "bought-together"])
    @pytest.mark.parametrize("product", ["999", "not-a-product", "9" * 30, "-1"])
    def test_unknown_product_is_404(self, api, recs_shop, kind, product) -> None:
        response = api.get(f"{API}/products/{product}/{kind}/")
        assert response.status_code == 404 and response.json()["detail"]

    def test_json_carries_hostile_titles_as_inert_text(self, api, recs_shop, active_model) -> None:
        from demo.models import Product

        Product.objects.filter(pk=22).update(title="<script>alert(1)</script>")
        response = api.get(f"{API}/products/21/similar/", {"limit": 10})
        assert response["Content-Type"] == "application/json"
        titles = {item["product_id"]: item["title"] for item in response.json()["items"]}
        assert titles["22"] == "<script>alert(1)</script>"


class TestEvents:
    def post(self, api, *events, **extra):
        return api.post(f"{API}/events/", {"events": list(events)}, format="json", **extra)

    def test_a_batch_is_recorded_for_the_requester(self, api, recs_shop) -> None:
        api.force_login(recs_shop.alice)
        response = self.post(
            api, {"kind": "view", "product": "11"},
            {"kind": "search", "query": "green tea"},
            {"kind": "add_to_cart", "product": "12", "quantity": 2},
        )
        assert response.status_code == 200
        assert response.json()["stored"] == 3
        rows = Event.objects.filter(user=recs_shop.alice).order_by("id")
        assert [(e.kind, e.product_id) for e in rows] == [
            ("view", "11"), ("search", ""), ("add_to_cart", "12")]

    def test_idempotent_by_key(self, api, recs_shop) -> None:
        api.force_login(recs_shop.alice)
        event = {"kind": "view", "product": "11", "idempotency_key": "k-1"}
        first = self.post(api, event)
        second = self.post(api, event)
        assert first.json()["results"][0]["status"] == "stored"
        assert second.status_code == 200 and second.json()["results"][0]["status"] == "duplicate"
        assert Event.objects.filter(idempotency_key="k-1").count() == 1
        conflict = self.post(api, {**event, "product": "12"})
        assert conflict.status_code == 409
        assert conflict.json()["results"][0]["status"] == "conflict"

    def test_a_mixed_batch_keeps_the_valid_events(self, api, recs_shop) -> None:
        api.force_login(recs_shop.alice)
        response = self.post(
            api,
            {"kind": "view", "product": "11"},
            {"kind": "view", "product": "999"},  # no such product
            {"kind": "view", "product": "12", "timestamp": "yesterday"},
            {"kind": "teleport", "product": "12"},
            {"kind": "view", "product": "12", "user": recs_shop.bob.pk},
            {"kind": "view", "product": "12", "context": {"blob": "x" * 5000}},
            {"kind": "purchase", "product": "12"},
            "not an object",
        )
        body = response.json()
        assert response.status_code == 200
        assert body["stored"] == 1 and body["invalid"] == 7
        results = body["results"]
        assert [r["index"] for r in results] == list(range(8))
        assert "Unknown product" in results[1]["errors"]["non_field_errors"][0]
        assert "ISO 8601" in results[2]["errors"]["non_field_errors"][0]
        assert "kind" in results[3]["errors"]
        assert "user" in results[4]["errors"]
        assert "bytes" in results[5]["errors"]["non_field_errors"][0]
        assert "kind" in results[6]["errors"]  # purchases come from orders
        assert results[7]["status"] == "invalid"
        assert not Event.objects.filter(user=recs_shop.bob).exists()

    def test_an_id_beyond_the_database_range_is_just_invalid(self, api, recs_shop) -> None:
        response = self.post(api, {"kind": "view", "product": "9" * 30},
                             {"kind": "view", "product": "11"})
        assert response.status_code == 200
        assert [r["status"] for r in response.json()["results"]] == ["invalid", "stored"]

    def test_nothing_valid_is_a_400(self, api, recs_shop) -> None:
        response = self.post(api, {"kind": "view"})
        assert response.status_code == 400
        assert "product" in response.json()["results"][0]["errors"]

    @pytest.mark.parametrize("body", [{}, {"events": []}, {"events": "view"}, []])
    def test_malformed_batches(self, api, recs_shop, body) -> None:
        response = api.post(f"{API}/events/", body, format="json")
        assert response.status_code == 400 and response.json()

    def test_batch_size_is_capped(self, api, recs_shop) -> None:
        with override_settings(SHOP_RECS={**settings.SHOP_RECS, "API_MAX_BATCH": 2}):
            response = self.post(api, *[{"kind": "view", "product": "11"}] * 3)
        assert response.status_code == 400 and "At most 2" in response.json()["events"][0]

    def test_not_json(self, api, recs_shop) -> None:
        response = api.post(f"{API}/events/", "{nope", content_type="application/json")
        assert response.status_code == 400 and "detail" in response.json()


class TestFeedback:
    def test_a_click_is_recorded_once(self, api, recs_shop, active_model) -> None:
        recs_shop.view(11, user=recs_shop.alice)
        api.force_login(recs_shop.alice)
        item = api.get(f"{API}/for-you/", {"limit": 2}).json()["items"][1]
        for _ in range(2):
            response = api.post(f"{API}/feedback/", {"token": item["click_token"]}, format="json")
            assert response.status_code == 200
            assert response.json() == {"product_id": item["product_id"], "url": item["url"],
                                       "recorded": True}
        click = Event.objects.get(kind=EventKind.REC_CLICK)
        assert click.user == recs_shop.alice and click.product_id == item["product_id"]
        assert click.context["placement"] == "for_you" and click.context["position"] == 2
        assert click.context["model_version"] == active_model.label

    @pytest.mark.parametrize("token", ["garbage", "", "a" * 3000])
    def test_a_bad_token_is_a_400(self, api, recs_shop, token) -> None:
        response = api.post(f"{API}/feedback/", {"token": token}, format="json")
        assert response.status_code == 400 and "token" in response.json()
        assert not Event.objects.filter(kind=EventKind.REC_CLICK).exists()


def test_throttled_requests_get_a_429(api, recs_shop) -> None:
    rates = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"shop_recs": "2/min"}}
    with override_settings(REST_FRAMEWORK=rates):
        codes = [api.get(f"{API}/products/11/similar/").status_code for _ in range(3)]
        response = api.get(f"{API}/products/11/similar/")
    assert codes == [200, 200, 429]
    assert response.status_code == 429 and "throttled" in response.json()["detail"]


def test_lists_still_answer_when_the_cache_is_down(api, recs_shop, active_model, caplog) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    api.force_login(recs_shop.alice)
    unreachable = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                               "LOCATION": "redis://127.0.0.1:1/0"}}
    with override_settings(CACHES=unreachable):
        for url in (f"{API}/for-you/", f"{API}/products/11/similar/",
                    f"{API}/products/11/bought-together/"):
            response = api.get(url, {"limit": 3})
            assert response.status_code == 200 and len(response.json()["items"]) == 3, url
    assert "cache unavailable" in caplog.text


def test_openapi_schema_and_browsable_api(api, recs_shop) -> None:
    schema = api.get(f"{API}/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {f"{API}/for-you/", f"{API}/events/", f"{API}/feedback/",
            f"{API}/users/{{user_id}}/recommendations/", f"{API}/products/{{product_id}}/similar/",
            f"{API}/products/{{product_id}}/bought-together/"} <= set(paths)
    html = api.get(f"{API}/for-you/", HTTP_ACCEPT="text/html")
    assert html.status_code == 200 and b"Recommendations for the requester" in html.content
