"""No one reads what is not theirs, whether they sign in with a session or a token.

A shopper asking for another user's list is refused; an event cannot be posted for someone else
(it is bound to the requester); and every response that holds a shopper's own data, from the API
or a shop page with recommendation tags, is ``Cache-Control: private`` with the ``Vary`` that
names what identifies the shopper.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from shop_recs.models import Event, EventKind
from shop_recs.services import Shopper, for_you
from tests.plugin.recs_fixtures import RecsShop

API = "/recs/api"


def signed_in(how: str, user: User) -> APIClient:
    client = APIClient()
    if how == "session":
        client.force_login(user)
    else:
        token = Token.objects.get_or_create(user=user)[0]
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


AUTH = pytest.mark.parametrize("how", ["session", "token"])


OTHER_USERS_DATA = pytest.mark.parametrize("what", ["recommendations", "recently-viewed"])


@AUTH
@OTHER_USERS_DATA
def test_another_users_recommendations_and_history_are_refused(how, what, recs_shop,
                                                               active_model) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    response = signed_in(how, recs_shop.bob).get(f"{API}/users/{recs_shop.alice.pk}/{what}/")
    assert response.status_code == 403 and "items" not in response.json()


@OTHER_USERS_DATA
def test_a_guest_cannot_read_a_users_recommendations_or_history(what, recs_shop,
                                                                active_model) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    response = APIClient().get(f"{API}/users/{recs_shop.alice.pk}/{what}/")
    assert response.status_code in (401, 403) and "items" not in response.json()


@AUTH
def test_recently_viewed_is_always_the_requesters_own(how, recs_shop) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    recs_shop.view(21, 22, 23, user=recs_shop.bob)
    response = signed_in(how, recs_shop.alice).get(
        f"{API}/recently-viewed/", {"user": recs_shop.bob.pk, "user_id": recs_shop.bob.pk})
    assert [item["product_id"] for item in response.json()["items"]] == ["12", "11"]


def test_staff_can_read_a_users_history_and_an_unknown_user_is_404(recs_shop) -> None:
    recs_shop.view(11, 21, user=recs_shop.alice)
    staff = signed_in("token", recs_shop.staff)
    response = staff.get(f"{API}/users/{recs_shop.alice.pk}/recently-viewed/")
    assert [item["product_id"] for item in response.json()["items"]] == ["21", "11"]
    assert staff.get(f"{API}/users/999999/recently-viewed/").status_code == 404


@AUTH
def test_for_you_is_always_the_requesters_own(how, recs_shop, active_model) -> None:
    recs_shop.view(11, 12, 13, user=recs_shop.alice)
    recs_shop.view(21, 22, 23, user=recs_shop.bob)
    for user in (recs_shop.alice, recs_shop.bob):
        client = signed_in(how, user)
        # Query parameters naming someone else are not a way in.
        other = recs_shop.bob if user == recs_shop.alice else recs_shop.alice
        response = client.get(f"{API}/for-you/", {"limit": 4, "user": other.pk,
                                                   "user_id": other.pk})
        ids = [item["product_id"] for item in response.json()["items"]]
        assert ids == for_you(Shopper.for_user(user), 4).product_ids


@AUTH
@pytest.mark.parametrize("field", ["user", "user_id", "session_key"])
def test_an_event_for_another_shopper_is_refused(how, field, recs_shop) -> None:
    other = recs_shop.bob.pk if field != "session_key" else "someone-elses-session"
    response = signed_in(how, recs_shop.alice).post(
        f"{API}/events/", {"events": [{"kind": "view", "product": "11", field: other},
                                      {"kind": "view", "product": "12"}]}, format="json")
    first, second = response.json()["results"]
    assert first["status"] == "invalid" and field in first["errors"]
    assert second["status"] == "stored"
    assert not Event.objects.filter(user=recs_shop.bob).exists()
    assert not Event.objects.filter(session_key="someone-elses-session").exists()
    assert list(Event.objects.values_list("user_id", "product_id")) == [
        (recs_shop.alice.pk, "12")]


def test_a_guests_events_are_bound_to_its_own_session(recs_shop) -> None:
    guest = APIClient()
    guest.post(f"{API}/events/", {"events": [{"kind": "view", "product": "31"}]}, format="json")
    event = Event.objects.get()
    assert event.user is None and event.session_key == guest.session.session_key


@AUTH
def test_a_click_token_from_another_shopper_is_recorded_for_the_clicker(
    how, recs_shop, active_model
) -> None:
    recs_shop.view(11, 12, user=recs_shop.alice)
    item = signed_in(how, recs_shop.alice).get(f"{API}/for-you/").json()["items"][0]
    signed_in(how, recs_shop.bob).post(f"{API}/feedback/", {"token": item["click_token"]},
                                       format="json")
    click = Event.objects.get(kind=EventKind.REC_CLICK)
    assert click.user == recs_shop.bob


# --- Cache headers -------------------------------------------------------------------------------

PERSONAL_API = [
    ("get", f"{API}/for-you/", None),
    ("get", f"{API}/recently-viewed/", None),
    ("get", f"{API}/products/11/similar/", None),
    ("get", f"{API}/products/11/bought-together/", None),
    ("get", f"{API}/search/?q=tea", None),
    ("get", f"{API}/search/suggest/?q=te", None),
    ("get", f"{API}/ads/?placement=home", None),
    ("post", f"{API}/events/", {"events": [{"kind": "view", "product": "11"}]}),
    ("post", f"{API}/feedback/", {"token": "not-a-token"}),
]


def vary_of(response) -> set[str]:
    return {v.strip().lower() for v in response.get("Vary", "").split(",") if v.strip()}


@AUTH
@pytest.mark.parametrize(("method", "path", "body"), PERSONAL_API)
def test_api_answers_are_private_and_vary_on_the_credentials(how, method, path, body,
                                                             recs_shop, active_model) -> None:
    client = signed_in(how, recs_shop.alice)
    response = getattr(client, method)(path, body, format="json")
    assert "private" in response["Cache-Control"] and "public" not in response["Cache-Control"]
    assert {"cookie", "authorization"} <= vary_of(response)


def test_staff_reading_a_users_list_is_private_too(recs_shop, active_model) -> None:
    response = signed_in("token", recs_shop.staff).get(
        f"{API}/users/{recs_shop.alice.pk}/recommendations/")
    assert response.status_code == 200 and "private" in response["Cache-Control"]
    assert {"cookie", "authorization"} <= vary_of(response)


SHOP_PAGES_WITH_TAGS = ["/", "/products/12/", "/search/?q=tea"]


@pytest.mark.parametrize("who", ["alice", "guest"])
@pytest.mark.parametrize("path", SHOP_PAGES_WITH_TAGS)
def test_shop_pages_with_personal_lists_are_private(who, path, recs_shop: RecsShop,
                                                    active_model) -> None:
    client = Client()
    if who == "alice":
        recs_shop.view(11, 12, user=recs_shop.alice)
        client.force_login(recs_shop.alice)
    response = client.get(path)
    assert response.status_code == 200
    assert "private" in response.get("Cache-Control", ""), path
    assert "cookie" in vary_of(response)


def test_a_page_without_the_plugins_lists_is_left_alone(recs_shop) -> None:
    """The middleware marks only what the plugin made personal (the cart page stays as is)."""
    response = Client().get("/cart/")
    assert response.status_code == 200
    assert "private" not in response.get("Cache-Control", "")
