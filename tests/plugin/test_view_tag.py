"""{% record_view product %} records a view and never breaks the page it is on."""

from __future__ import annotations

import logging

from django.contrib.sessions.backends.db import SessionStore
from django.template import engines
from django.test import RequestFactory

from demo.models import Product
from shop_recs.models import Event, EventKind

TEMPLATE = engines["django"].from_string(
    "{% load shop_recs_events %}[{% record_view product %}]{{ product.title }}"
)


def request_for(user):
    request = RequestFactory().get("/products/1/")
    request.user, request.session = user, SessionStore()
    return request


def test_it_records_a_view_of_the_signed_in_shopper_and_renders_nothing(shop) -> None:
    html = TEMPLATE.render({"product": shop.green_tea}, request_for(shop.alice))
    assert html == "[]Sencha Green Tea"
    event = Event.objects.get()
    assert (event.kind, event.user, event.product_id) == (
        EventKind.VIEW, shop.alice, str(shop.green_tea.pk)
    )


def test_without_the_request_it_logs_and_the_page_still_renders(shop, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="shop_recs"):
        html = TEMPLATE.render({"product": shop.green_tea})
    assert html == "[]Sencha Green Tea"
    assert "needs the 'request' context processor" in caplog.text
    assert not Event.objects.exists()


def test_a_bad_product_is_logged_and_the_page_still_renders(shop, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="shop_recs"):
        html = TEMPLATE.render({"product": Product(title="Draft")}, request_for(shop.alice))
    assert html == "[]Draft"
    assert "view of <Product: Draft> not recorded" in caplog.text
    assert not Event.objects.exists()
