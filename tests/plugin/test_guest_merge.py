"""A guest's events follow them into their account when they sign in through the real login view.

The product page here is a minimal shop view that renders ``{% record_view product %}``, so
the whole path is the real one: session cookie, the tag, GuestSessionMiddleware, Django's
LoginView (which cycles the session key), the user_logged_in receiver.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template import engines
from django.test import Client, override_settings
from django.urls import path

from demo.models import Product
from shop_recs.events import merge_guest_events, record_event
from shop_recs.models import Event

PAGE = engines["django"].from_string(
    "{% load shop_recs_events %}<h1>{{ product.title }}</h1>{% record_view product %}"
)


def product_page(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product, pk=pk)
    return HttpResponse(PAGE.render({"product": product}, request))


urlpatterns = [
    path("products/<int:pk>/", product_page),
    # A successful POST redirects without rendering, so no login template is needed.
    path("login/", auth_views.LoginView.as_view()),
]
pytestmark = pytest.mark.urls(__name__)


def log_in(client: Client, username: str, password: str) -> None:
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content[:500]


def test_guest_views_become_the_users_at_login(shop) -> None:
    guest, other_guest = Client(), Client()
    guest.get(f"/products/{shop.green_tea.pk}/")
    guest.get(f"/products/{shop.black_tea.pk}/")
    other_guest.get(f"/products/{shop.green_tea.pk}/")
    guest_key = guest.cookies["sessionid"].value
    assert Event.objects.filter(session_key=guest_key, user=None).count() == 2

    log_in(guest, "alice", "alice-pw")

    assert guest.cookies["sessionid"].value != guest_key  # Django cycled the key at login
    alices = Event.objects.filter(user=shop.alice)
    assert sorted(alices.values_list("product_id", flat=True)) == sorted(
        [str(shop.green_tea.pk), str(shop.black_tea.pk)]
    )
    # The other guest's event stays theirs.
    assert Event.objects.filter(user=None).count() == 1

    guest.get(f"/products/{shop.old_kettle.pk}/")  # signed in now: recorded for the user
    assert alices.count() == 3


def test_without_the_middleware_nothing_is_merged(shop) -> None:
    middleware = [m for m in settings.MIDDLEWARE if "shop_recs" not in m]
    with override_settings(MIDDLEWARE=middleware):
        guest = Client()  # loads its middleware on the first request
        guest.get(f"/products/{shop.green_tea.pk}/")
        log_in(guest, "alice", "alice-pw")
    assert Event.objects.filter(user=None).count() == 1
    assert not Event.objects.filter(user=shop.alice).exists()


def test_a_user_signing_in_on_a_fresh_session_takes_nothing(shop) -> None:
    record_event(kind="view", product=shop.green_tea, session_key="someone-else")
    log_in(Client(), "alice", "alice-pw")
    assert not Event.objects.filter(user=shop.alice).exists()


def test_merge_only_moves_guest_events(shop) -> None:
    record_event(kind="view", product=shop.green_tea, session_key="shared", user=shop.bob)
    record_event(kind="view", product=shop.black_tea, session_key="shared")
    assert merge_guest_events(session_key="shared", user=shop.alice) == 1
    assert Event.objects.get(product_id=str(shop.green_tea.pk)).user == shop.bob
    assert merge_guest_events(session_key="", user=shop.alice) == 0
