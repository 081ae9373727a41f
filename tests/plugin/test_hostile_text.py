"""Hostile text from the shop's database (product titles, category names, ad copy) or from a
shopper (a search query) comes out inert in everything the plugin renders: every tag, the demo
pages that use them, the admin pages, the browsable API, and the JSON API.

HTML must hold the text escaped (and must hold it: a renderer that drops it proves nothing), and
no ``<script>`` element may carry it. JSON must carry it as the exact string, served as
``application/json`` with ``nosniff`` so that no browser runs it as HTML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.db import SessionStore
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.utils.html import escape
from rest_framework.test import APIClient

from demo.models import Category, Product
from shop_recs.events import record_event
from shop_recs.models import AdCampaign
from tests.plugin.recs_fixtures import RecsShop

PAYLOADS = [
    '"><script>alert(1)</script>',
    "</script><img src=x onerror=alert(2)>",
    "'-alert(3)-'<svg/onload=alert(4)>",
]
SCRIPT_ELEMENT = re.compile(r"<script\b[^>]*>(.*?)</script>", re.S | re.I)


def make_hostile(recs_shop: RecsShop, payload: str) -> None:
    """Product titles, a category name, ad copy and a past search carry the payload; alice has a
    history."""
    for product in Product.objects.all():
        Product.objects.filter(pk=product.pk).update(title=f"{payload} {product.title}")
    Category.objects.filter(slug="tea").update(name=f"{payload} Tea")
    for kind, extra in ((AdCampaign.Kind.CREATIVE, {"target_url": "https://advertiser.example/"}),
                        (AdCampaign.Kind.PRODUCT, {"product_id": "22"})):
        AdCampaign.objects.create(
            name=f"{payload} campaign", kind=kind, title=f"{payload} ad", text=f"{payload} text",
            bid=Decimal("1"), daily_budget=Decimal("100"), **extra,
        )
    recs_shop.view(11, 12, 21, user=recs_shop.alice)
    recs_shop.buy(11, 33, user=recs_shop.bob)
    record_event(kind="search", query=f"{payload} tea", user=recs_shop.bob)  # a shopper typed it


def tag(source: str) -> Callable[[RecsShop, str], tuple[str, str]]:
    def render(recs_shop: RecsShop, payload: str) -> tuple[str, str]:
        request = RequestFactory().get("/")
        request.user = recs_shop.alice
        request.session = SessionStore()
        template = Template("{% load shop_recs %}" + source)
        html = template.render(Context({"request": request, "product": recs_shop.product(11)}))
        return html, "text/html"
    return render


def page(path: str, *, who: str = "alice", query: dict | None = None,
         accept: str = "text/html") -> Callable[[RecsShop, str], tuple[str, str]]:
    def render(recs_shop: RecsShop, payload: str) -> tuple[str, str]:
        client = Client()
        if who == "alice":
            client.force_login(recs_shop.alice)
        elif who == "admin":
            client.force_login(User.objects.create_superuser("root", password="x"))
        params = {k: v.format(payload=payload) for k, v in (query or {}).items()}
        response = client.get(path, params, HTTP_ACCEPT=accept)
        assert response.status_code == 200, (path, response.status_code)
        return response.content.decode(), response["Content-Type"]
    return render


HTML_RENDERERS = {
    "tag recommended_products": tag("{% recommended_products 12 %}"),
    "tag similar_products": tag("{% similar_products product 12 %}"),
    "tag bought_together": tag("{% bought_together product 12 %}"),
    "tag recently_viewed": tag("{% recently_viewed 12 %}"),
    "tag recommended_ads": tag('{% recommended_ads "home" 5 %}'),
    "page home": page("/"),
    "page product": page("/products/12/"),
    "page search (hostile query)": page("/search/", query={"q": "{payload} tea"}),
    "page search as a guest": page("/search/", who="guest", query={"q": "tea"}),
    "browsable API for-you": page("/recs/api/for-you/"),
    "browsable API similar": page("/recs/api/products/11/similar/", who="guest"),
    "admin ad campaigns": page("/admin/shop_recs/adcampaign/", who="admin"),
    "admin events": page("/admin/shop_recs/event/", who="admin"),
}

JSON_RENDERERS = {
    "api for-you": (page("/recs/api/for-you/", accept="application/json"), ["items", 0, "title"]),
    "api similar": (page("/recs/api/products/11/similar/", accept="application/json"),
                    ["items", 0, "title"]),
    "api bought-together": (page("/recs/api/products/11/bought-together/",
                                 accept="application/json"), ["items", 0, "title"]),
    "api search": (page("/recs/api/search/", query={"q": "tea"}, accept="application/json"),
                   ["items", 0, "title"]),
    "api ads": (page("/recs/api/ads/", query={"placement": "home"}, accept="application/json"),
                ["ads", 0, "title"]),
}


@pytest.fixture(params=PAYLOADS, ids=["attribute-break", "script-close", "quote-break"])
def payload(request, recs_shop, active_model) -> str:
    make_hostile(recs_shop, request.param)
    return request.param


@pytest.mark.parametrize("renderer", list(HTML_RENDERERS))
def test_html_holds_hostile_text_escaped(renderer: str, payload: str, recs_shop) -> None:
    html, content_type = HTML_RENDERERS[renderer](recs_shop, payload)
    assert content_type.startswith("text/html")
    assert escape(payload) in html, f"{renderer} did not render the hostile text at all"
    assert payload not in html
    for script in SCRIPT_ELEMENT.findall(html):
        assert "alert(" not in script, f"{renderer}: hostile text inside a <script> element"
    assert not re.search(r"<(img|svg)\b[^>]*\bon\w+=", html, re.I)


@pytest.mark.parametrize("renderer", list(JSON_RENDERERS))
def test_json_holds_hostile_text_as_inert_data(renderer: str, payload: str, recs_shop) -> None:
    render, path = JSON_RENDERERS[renderer]
    body, content_type = render(recs_shop, payload)
    assert content_type == "application/json"
    value = json.loads(body)
    for key in path:
        value = value[key]
    assert value.startswith(payload)


def test_json_responses_are_never_sniffed_as_html(recs_shop) -> None:
    response = APIClient().get("/recs/api/products/11/similar/")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_search_suggestions_carry_hostile_titles_as_data(recs_shop) -> None:
    make_hostile(recs_shop, PAYLOADS[0])
    response = APIClient().get("/recs/api/search/suggest/", {"q": '"><scr'})
    assert response["Content-Type"] == "application/json"
    assert all(isinstance(s, str) for s in response.json()["suggestions"])


def test_a_tag_for_an_anonymous_visitor_is_escaped_too(recs_shop, active_model) -> None:
    make_hostile(recs_shop, PAYLOADS[1])
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    request.session = SessionStore()
    html = Template("{% load shop_recs %}{% similar_products product 6 %}").render(
        Context({"request": request, "product": recs_shop.product(21)}))
    assert escape(PAYLOADS[1]) in html and PAYLOADS[1] not in html
