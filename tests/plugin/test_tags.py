"""The template tags: each list renders, links through the click endpoint, records one impression,
escapes hostile product text, and never breaks the page (no model, a corrupt model, a bug)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import connection
from django.template import Context, Template
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext

from demo.models import Product
from shop_recs.models import Event, EventKind
from shop_recs.services.copurchase import count_co_purchases
from tests.plugin.recs_fixtures import COFFEE, TEA

HOSTILE_TITLE = '"><script>alert(1)</script>'
HOSTILE_TITLE_2 = "</script><img src=x onerror=alert(2)>"


def request_for(user=None):
    request = RequestFactory().get("/somewhere/")
    SessionMiddleware(lambda r: None).process_request(request)
    request.user = user or AnonymousUser()
    return request


def render(source: str, request=None, **context) -> str:
    template = Template("{% load shop_recs %}" + source)
    if request is not None:
        context["request"] = request
    return template.render(Context(context))


def links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


def impressions() -> list[dict]:
    return [e.context for e in Event.objects.filter(kind=EventKind.REC_IMPRESSION).order_by("id")]


class TestEachTag:
    def test_recommended_products(self, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, 13, user=recs_shop.alice)
        html = render("{% recommended_products 3 %}", request_for(recs_shop.alice))
        assert 'data-placement="for_you"' in html and "Recommended for you" in html
        hrefs = links(html)
        assert len(hrefs) == 3 and all(h.startswith("/recs/click/") for h in hrefs)
        assert "Because you viewed" in html
        [shown] = impressions()
        assert shown["placement"] == "for_you" and shown["channel"] == "web"
        assert shown["model_version"] == active_model.label and shown["n"] == 3
        assert sum(pid in TEA for pid in shown["products"]) >= 2
        event = Event.objects.get(kind=EventKind.REC_IMPRESSION)
        assert event.user_id == recs_shop.alice.pk

    def test_similar_products(self, recs_shop, active_model) -> None:
        request = request_for()
        request.session.save()  # a guest who has a session (e.g. from their first view)
        html = render("{% similar_products product 4 %}", request,
                      product=recs_shop.product(21))
        assert 'data-placement="similar"' in html and "Similar to Espresso Coffee Beans" in html
        [shown] = impressions()
        assert shown["placement"] == "similar" and len(shown["products"]) == 4
        assert sum(pid in COFFEE for pid in shown["products"]) >= 3
        event = Event.objects.get(kind=EventKind.REC_IMPRESSION)
        assert event.session_key == request.session.session_key

    def test_bought_together(self, recs_shop, active_model) -> None:
        recs_shop.buy(11, 32, user=recs_shop.bob)
        count_co_purchases()
        html = render('{% bought_together product 2 title="Complete the set" %}',
                      request_for(recs_shop.alice), product=recs_shop.product(11))
        assert "Complete the set" in html and "Often bought with Sencha Green Tea" in html
        assert impressions()[0]["placement"] == "bought_together"

    def test_recently_viewed(self, recs_shop) -> None:
        recs_shop.view(11, 21, 31, user=recs_shop.alice)
        html = render("{% recently_viewed 5 exclude=product %}", request_for(recs_shop.alice),
                      product=recs_shop.product(31))
        assert html.index("Espresso Coffee Beans") < html.index("Sencha Green Tea")
        assert "Stovetop Kettle" not in html
        assert impressions()[0]["products"] == ["21", "11"]

    def test_record_view_is_available_from_the_same_library(self, recs_shop) -> None:
        render("{% record_view product %}", request_for(recs_shop.alice),
               product=recs_shop.product(11))
        assert Event.objects.filter(kind=EventKind.VIEW, product_id="11",
                                    user=recs_shop.alice).count() == 1

    def test_an_empty_list_renders_nothing_and_records_nothing(self, recs_shop) -> None:
        assert render("{% recently_viewed %}", request_for(recs_shop.alice)).strip() == ""
        assert impressions() == []

    def test_without_the_request_context_processor_nothing_renders(
        self, recs_shop, caplog
    ) -> None:
        assert render("{% recommended_products %}").strip() == ""
        assert "needs the 'request' context processor" in caplog.text


def history_reads(queries: CaptureQueriesContext) -> int:
    return sum('FROM "shop_recs_event"' in q["sql"] and '"kind" IN' in q["sql"]
               and "ORDER BY" in q["sql"] for q in queries.captured_queries)


class TestOneHistoryReadPerPage:
    def test_the_lists_of_a_page_share_one_history_read(self, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, user=recs_shop.alice)
        request = request_for(recs_shop.alice)
        with CaptureQueriesContext(connection) as queries:
            html = render("{% recommended_products 3 %}{% similar_products product 3 %}"
                          "{% bought_together product 3 %}{% recently_viewed 3 %}", request,
                          product=recs_shop.product(21))
        assert html.count("data-placement=") == 4
        assert history_reads(queries) == 1
        with CaptureQueriesContext(connection) as queries:  # the next page reads it again
            render("{% recently_viewed 3 %}", request_for(recs_shop.alice))
        assert history_reads(queries) == 1

    def test_a_view_recorded_between_two_lists_is_in_the_second(self, recs_shop) -> None:
        recs_shop.view(11, user=recs_shop.alice)
        html = render("{% recently_viewed 5 %}|{% record_view product %}{% recently_viewed 5 %}",
                      request_for(recs_shop.alice), product=recs_shop.product(12))
        before, after = html.split("|")
        assert "Sencha Green Tea" in before and "Assam Black Tea" not in before  # 11, not 12
        assert "Assam Black Tea" in after

    def test_a_shopper_kept_outside_a_request_reads_afresh(self, recs_shop) -> None:
        """A job or a shell holding a Shopper sees events written by other processes."""
        from shop_recs.services import Shopper
        from shop_recs.services.shopper import load_history

        shopper = Shopper.for_user(recs_shop.alice)
        assert not load_history(shopper)
        Event.objects.create(kind=EventKind.VIEW, user=recs_shop.alice, product_id="11")
        assert load_history(shopper).product_ids == ("11",)

    def test_a_shopper_who_signs_in_mid_request_gets_their_own_history(self, recs_shop) -> None:
        recs_shop.view(11, user=recs_shop.alice)
        request = request_for()
        request.session.save()
        assert render("{% recently_viewed 5 %}", request) == ""  # the guest saw nothing yet
        request.user = recs_shop.alice
        assert "Sencha Green Tea" in render("{% recently_viewed 5 %}", request)


class TestHostileText:
    def test_titles_are_escaped_in_items_and_reasons(self, recs_shop, active_model) -> None:
        Product.objects.filter(pk=11).update(title=HOSTILE_TITLE)
        Product.objects.filter(pk=12).update(title=HOSTILE_TITLE_2)
        recs_shop.view(11, user=recs_shop.alice)
        html = render("{% recommended_products 6 %}{% similar_products product 6 %}",
                      request_for(recs_shop.alice), product=recs_shop.product(13))
        assert "<script>" not in html and "<img" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text
        assert "Because you viewed &quot;&gt;&lt;script&gt;" in html
        assert "&lt;img src=x onerror=alert(2)&gt;" in html


class TestPagesNeverBreak:
    def test_product_page_with_two_tags(self, client, recs_shop, active_model) -> None:
        client.force_login(recs_shop.alice)
        response = client.get(recs_shop.product(21).get_absolute_url())
        assert response.status_code == 200
        html = response.content.decode()
        assert 'data-placement="similar"' in html and 'data-placement="bought_together"' in html
        assert Event.objects.filter(kind=EventKind.VIEW, product_id="21").count() == 1
        assert sorted(c["placement"] for c in impressions()) == ["bought_together", "similar"]

    def test_home_page_lists(self, client, recs_shop, active_model) -> None:
        client.force_login(recs_shop.alice)
        client.get(recs_shop.product(21).get_absolute_url())
        html = client.get("/").content.decode()
        assert 'data-placement="for_you"' in html and 'data-placement="recently_viewed"' in html

    def test_product_page_without_a_model(self, client, recs_shop) -> None:
        response = client.get(recs_shop.product(21).get_absolute_url())
        assert response.status_code == 200
        assert 'data-placement="similar"' in response.content.decode()

    def test_product_page_with_a_corrupt_model(self, client, recs_shop, corrupt_model,
                                               caplog) -> None:
        response = client.get(recs_shop.product(21).get_absolute_url())
        assert response.status_code == 200
        assert 'data-placement="similar"' in response.content.decode()
        assert "could not be loaded" in caplog.text

    def test_a_failing_list_leaves_the_page_intact(self, client, recs_shop, monkeypatch,
                                                   caplog) -> None:
        def explode(*args, **kwargs):
            raise RuntimeError("service bug")

        monkeypatch.setattr("shop_recs.templatetags.shop_recs.similar", explode)
        with caplog.at_level(logging.ERROR, logger="shop_recs"):
            response = client.get(recs_shop.product(21).get_absolute_url())
        assert response.status_code == 200
        html = response.content.decode()
        assert "Espresso Coffee Beans" in html and 'data-placement="similar"' not in html
        assert "the similar list could not be rendered" in caplog.text


def test_a_shop_can_override_one_placements_template(recs_shop, active_model,
                                                     tmp_path: Path) -> None:
    (tmp_path / "shop_recs").mkdir()
    (tmp_path / "shop_recs" / "similar.html").write_text(
        "<div class=my-similar>{% for item in recs %}[{{ item.product.title }}]{% endfor %}</div>"
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    with override_settings(TEMPLATES=templates):
        html = render("{% similar_products product 2 %}{% bought_together product 2 %}",
                      request_for(), product=recs_shop.product(21))
    assert html.count("<div class=my-similar>") == 1  # similar: the shop's own template
    assert 'data-placement="bought_together"' in html  # the others: the plugin's


@pytest.mark.parametrize("tag", ["recommended_products", "recently_viewed"])
def test_list_tags_take_a_limit(recs_shop, active_model, tag: str) -> None:
    recs_shop.view(11, 12, 13, 14, user=recs_shop.alice)
    html = render(f"{{% {tag} 2 %}}", request_for(recs_shop.alice))
    assert len(links(html)) == 2


def test_a_template_showing_categories_costs_no_query_per_item(recs_shop, active_model,
                                                               tmp_path: Path) -> None:
    """The category (a foreign key) comes with the products: PRODUCT_SELECT_RELATED's default."""
    (tmp_path / "shop_recs").mkdir()
    (tmp_path / "shop_recs" / "similar.html").write_text(
        "{% for item in recs %}[{{ item.product.category.name }}]{% endfor %}"
    )
    templates = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    product = recs_shop.product(21)
    counts = {}
    with override_settings(TEMPLATES=templates):
        render("{% similar_products product 2 %}", request_for(), product=product)  # warm caches
        for limit in (2, 6):
            with CaptureQueriesContext(connection) as queries:
                html = render(f"{{% similar_products product {limit} %}}", request_for(),
                              product=product)
            assert html.count("[") == limit and "[coffee]" in html.lower()
            counts[limit] = len(queries)
    assert counts[6] == counts[2]
