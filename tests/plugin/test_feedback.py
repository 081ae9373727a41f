"""The feedback loop: the click endpoint records and redirects only to the product's own page,
impressions and clicks carry placement and model version, and the admin shows CTR from them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission, User
from django.core import signing
from django.test import RequestFactory
from django.urls import reverse, set_script_prefix
from django.utils import timezone

from shop_recs.models import Event, EventKind
from shop_recs.services import Shopper, for_you, record_impression, similar
from shop_recs.services.feedback import click_through_rates
from shop_recs.services.items import RecommendationList, RecommendedItem
from shop_recs.services.tokens import SALT, ClickData, make_click_token

FEEDBACK_ADMIN = "/admin/shop_recs/recommendationfeedback/"


def token_for(product_id: str, **fields) -> str:
    data = {"placement": "similar", "model_version": "v1", "impression_id": "imp1",
            "position": 1, **fields}
    return make_click_token(ClickData(product_id, **data))


class TestClickEndpoint:
    def test_records_the_click_and_redirects_to_the_product(self, client, recs_shop,
                                                           active_model) -> None:
        client.force_login(recs_shop.alice)
        item = similar(21, Shopper.for_user(recs_shop.alice), 3).items[2]
        response = client.get(item.click_url)
        assert response.status_code == 302
        assert response["Location"] == recs_shop.product(item.product_id).get_absolute_url()
        click = Event.objects.get(kind=EventKind.REC_CLICK)
        assert click.user == recs_shop.alice and click.product_id == item.product_id
        assert click.context == {"placement": "similar", "model_version": active_model.label,
                                 "impression_id": click.context["impression_id"], "position": 3,
                                 "channel": "web"}
        client.get(item.click_url)  # a double click
        assert Event.objects.filter(kind=EventKind.REC_CLICK).count() == 1

    def test_each_link_is_the_click_endpoint_with_its_own_token(self, recs_shop,
                                                                active_model) -> None:
        items = similar(21, Shopper.for_user(recs_shop.alice), 4).items
        assert len({item.click_token for item in items}) == 4
        for item in items:
            assert item.click_url == reverse("shop_recs:click", args=[item.click_token])

    def test_without_the_click_endpoint_links_go_to_the_products(self, recs_shop, active_model,
                                                                 settings) -> None:
        settings.ROOT_URLCONF = "tests.plugin.urls_without_the_plugin"
        items = similar(21, Shopper.for_user(recs_shop.alice), 3).items
        assert items and all(item.click_url == item.product_url ==
                             recs_shop.product(item.product_id).get_absolute_url()
                             for item in items)

    def test_links_follow_the_script_prefix_and_urlconf_of_each_request(
        self, recs_shop, active_model, settings
    ) -> None:
        shopper = Shopper.for_user(recs_shop.alice)
        assert similar(21, shopper, 2).items[0].click_url.startswith("/recs/click/")
        set_script_prefix("/shop/")  # a shop mounted below the site's root
        try:
            item = similar(21, shopper, 2).items[0]
            assert item.click_url == f"/shop/recs/click/{item.click_token}/"
        finally:
            set_script_prefix("/")
        settings.ROOT_URLCONF = "tests.plugin.urls_without_the_plugin"
        item = similar(21, shopper, 2).items[0]
        assert item.click_url == item.product_url

    def test_a_guest_click_is_recorded_for_the_session(self, client, recs_shop) -> None:
        response = client.get(f"/recs/click/{token_for('11')}/")
        assert response.status_code == 302
        click = Event.objects.get(kind=EventKind.REC_CLICK)
        assert click.user is None and click.session_key == client.session.session_key

    @pytest.mark.parametrize("target", [
        "//evil.example", "https://evil.example", "http:\\\\evil.example", "/\\evil.example",
        "javascript:alert(1)",
    ])
    def test_no_request_input_chooses_the_target(self, client, recs_shop, target) -> None:
        response = client.get(f"/recs/click/{token_for('11')}/", {"next": target, "url": target})
        assert response["Location"] == "/products/11/"

    @pytest.mark.parametrize("target", [
        "//evil.example", "https://evil.example/x", "http:\\\\evil.example", "/\\evil.example",
        "javascript:alert(1)", "",
    ])
    def test_a_product_url_off_the_site_is_refused(self, client, recs_shop, monkeypatch,
                                                   target) -> None:
        monkeypatch.setattr("demo.models.Product.get_absolute_url", lambda self: target)
        response = client.get(f"/recs/click/{token_for('11')}/")
        assert response.status_code == 404
        assert not Event.objects.filter(kind=EventKind.REC_CLICK).exists()

    def test_a_forged_or_altered_token_is_refused(self, client, recs_shop) -> None:
        forged = signing.dumps(["11", "similar", "v1", "i", 1, 0], salt="another-salt")
        tampered = token_for("11")[:-2] + "xx"
        unsigned = "https://evil.example"
        for token in (forged, tampered, unsigned):
            assert client.get(f"/recs/click/{token}/").status_code == 404
        assert not Event.objects.filter(kind=EventKind.REC_CLICK).exists()

    def test_a_well_signed_token_with_a_bad_payload_is_refused(self, client, recs_shop) -> None:
        token = signing.dumps({"url": "//evil.example"}, salt=SALT)
        assert client.get(f"/recs/click/{token}/").status_code == 404

    def test_an_old_link_still_leads_to_the_product_but_is_not_counted(
        self, client, recs_shop, monkeypatch
    ) -> None:
        token = token_for("12")
        later = timezone.now().timestamp() + 8 * 24 * 3600
        monkeypatch.setattr("shop_recs.services.tokens.time.time", lambda: later)
        response = client.get(f"/recs/click/{token}/")
        assert response.status_code == 302 and response["Location"] == "/products/12/"
        assert not Event.objects.filter(kind=EventKind.REC_CLICK).exists()

    def test_a_deleted_product_is_404(self, client, recs_shop) -> None:
        assert client.get(f"/recs/click/{token_for('999')}/").status_code == 404

    def test_only_get(self, client, recs_shop) -> None:
        assert client.post(f"/recs/click/{token_for('11')}/").status_code == 405


class TestImpressions:
    def test_a_cookieless_client_leaves_no_session_behind(self, client, recs_shop,
                                                          active_model) -> None:
        """A crawler calling the API made a session row per request: now only the impression."""
        from django.contrib.sessions.models import Session

        for _ in range(2):
            response = client.get("/recs/api/products/11/similar/?limit=3")
            assert response.status_code == 200 and "sessionid" not in response.cookies
            client.cookies.clear()
        assert Session.objects.count() == 0
        shown = Event.objects.filter(kind=EventKind.REC_IMPRESSION)
        assert shown.count() == 2
        assert {(e.user_id, e.session_key) for e in shown} == {(None, "")}

    def test_a_guest_with_a_session_keeps_their_impressions(self, client, recs_shop) -> None:
        client.get("/recs/click/" + token_for("11") + "/")  # gives the guest a session
        client.get("/recs/api/products/11/similar/?limit=3")
        shown = Event.objects.get(kind=EventKind.REC_IMPRESSION)
        assert shown.session_key == client.session.session_key

    @pytest.mark.django_db(transaction=True)
    def test_on_postgresql_an_impression_does_not_wait_for_the_disk(self, settings) -> None:
        """Only the impression's own transaction gets synchronous_commit off; a caller's
        transaction (ATOMIC_REQUESTS) is left alone, so its other writes stay durable. (Written
        in its request here; the batch writer's INSERT: tests/plugin/test_impressions.py.)"""
        from django.db import connection, transaction
        from django.test.utils import CaptureQueriesContext

        if connection.vendor != "postgresql":
            pytest.skip("PostgreSQL's synchronous_commit (pass 2 of scripts/test.sh, CI)")
        settings.SHOP_RECS = {**settings.SHOP_RECS, "IMPRESSION_FLUSH_SECONDS": 0}
        user = User.objects.create_user("imp")
        request = RequestFactory().get("/")
        request.user = user
        recs = RecommendationList("similar", [RecommendedItem(
            product=user, product_id="11", score=1.0, reason="", placement="similar",
            model_version="v1", position=1, click_token="t", product_url="/products/11/",
            click_url="/recs/click/t/",
        )], model_version="v1", source="model", impression_id="imp")

        def setting() -> str:
            with connection.cursor() as cursor:
                cursor.execute("SHOW synchronous_commit")
                return cursor.fetchone()[0]

        with CaptureQueriesContext(connection) as queries:
            record_impression(request, recs, channel="web")
        assert any("synchronous_commit TO OFF" in q["sql"] for q in queries.captured_queries)
        assert Event.objects.filter(kind=EventKind.REC_IMPRESSION, user=user).count() == 1
        assert setting() == "on"  # SET LOCAL ended with the impression's transaction
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            record_impression(request, recs, channel="web")
            assert setting() == "on"
        assert not any("synchronous_commit" in q["sql"] for q in queries.captured_queries
                       if "SHOW" not in q["sql"])
        assert Event.objects.filter(kind=EventKind.REC_IMPRESSION, user=user).count() == 2

    def test_only_impressions_may_have_no_shopper(self, recs_shop) -> None:
        from shop_recs.events import EventError, record_event

        with pytest.raises(EventError, match="needs a user or a guest's session_key"):
            record_event(kind="view", product=11)


def show_and_click(client, user: User, clicks: int) -> None:
    """Render the home page's lists for the user and click the first `clicks` for-you items."""
    client.force_login(user)
    recs = for_you(Shopper.for_user(user), 4)
    request = RequestFactory().get("/")
    request.user, request.session = user, client.session
    record_impression(request, recs, channel="web")
    for item in recs.items[:clicks]:
        client.get(item.click_url)


class TestClickThroughRates:
    def test_per_placement_and_model_version(self, client, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, user=recs_shop.alice)
        show_and_click(client, recs_shop.alice, clicks=2)
        show_and_click(client, recs_shop.bob, clicks=1)  # a newcomer: the popular fallback
        client.get(similar(11, Shopper(), 4).items[0].click_url)  # a click, no impression
        rows = {(r.placement, r.model_version): r for r in
                click_through_rates(since=timezone.now() - dt.timedelta(days=1))}
        model_row = rows[("for_you", active_model.label)]
        assert (model_row.lists, model_row.items, model_row.clicks) == (1, 4, 2)
        assert model_row.ctr == 0.5
        fallback_row = rows[("for_you", "")]
        assert (fallback_row.lists, fallback_row.items, fallback_row.clicks) == (1, 4, 1)
        assert rows[("similar", active_model.label)].clicks == 1
        assert rows[("similar", active_model.label)].ctr is None

    def test_old_events_are_outside_the_period(self, recs_shop) -> None:
        Event.objects.create(kind=EventKind.REC_CLICK, user=recs_shop.alice, product_id="11",
                             timestamp=timezone.now() - dt.timedelta(days=40),
                             context={"placement": "for_you", "model_version": "v1"})
        assert click_through_rates(since=timezone.now() - dt.timedelta(days=30)) == []

    def test_admin_page(self, client, recs_shop, active_model) -> None:
        recs_shop.view(11, 12, user=recs_shop.alice)
        show_and_click(client, recs_shop.alice, clicks=1)
        admin = User.objects.create_superuser("root", password="pw")
        client.force_login(admin)
        response = client.get(FEEDBACK_ADMIN, {"days": 7})
        assert response.status_code == 200
        html = response.content.decode()
        assert "Per placement" in html and "Per model version" in html
        assert f"<td>{active_model.label}</td>" in html and "25.0%" in html

    def test_admin_page_needs_the_view_permission(self, client, recs_shop) -> None:
        staff = recs_shop.staff
        client.force_login(staff)
        assert client.get(FEEDBACK_ADMIN).status_code == 403
        staff.user_permissions.add(Permission.objects.get(codename="view_recommendationfeedback"))
        assert client.get(FEEDBACK_ADMIN).status_code == 200
