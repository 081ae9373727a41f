"""Personalised ads on the tea / coffee / kettle shop: target URL checks, ranking (relevance x
bid, with the model and without), targeting, pacing, budgets, frequency caps, the click redirect
and its billing, the template tag, the REST endpoint and the admin."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core import signing
from django.core.exceptions import ValidationError
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from shop_recs.models import AdCampaign, AdClick, AdDailyStats, Event, EventKind
from shop_recs.models.ads import validate_target_url
from shop_recs.services import Shopper
from shop_recs.services.ads import (
    AD_SALT,
    charge_click,
    local_day,
    make_ad_token,
    paced_allowance_cents,
    recommended_ads,
)
from tests.plugin.recs_fixtures import RecsShop

API = "/recs/api"
NEWCOMER = Shopper(session_key="newcomer")
NOON = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC)


def campaign(**fields) -> AdCampaign:
    """A validated, saved campaign (the admin's checks run): a creative unless told otherwise."""
    values = {"name": "ad", "kind": AdCampaign.Kind.CREATIVE, "title": "Summer sale",
              "target_url": "https://advertiser.example/sale", "bid": Decimal("1.00"),
              "daily_budget": Decimal("100.00"), **fields}
    if values["kind"] == AdCampaign.Kind.PRODUCT:
        values.setdefault("target_url", "")
    ad = AdCampaign(**values)
    ad.full_clean()
    ad.save()
    return ad


def sponsored(product_id: int, **fields) -> AdCampaign:
    return campaign(kind=AdCampaign.Kind.PRODUCT, product_id=str(product_id), title="",
                    target_url="", **fields)


def shown(ads) -> list[int]:
    return [ad.campaign.pk for ad in ads]


@pytest.fixture
def api() -> APIClient:
    return APIClient()


class TestTargetUrls:
    @pytest.mark.parametrize("url", [
        "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<script>alert(1)</script>",
        "//evil.example", "/\\evil.example", "http:\\\\evil.example", "https:/\\evil.example",
        "https://shop.example@evil.example/", "ftp://files.example/x", "https://",
        " https://advertiser.example", "https://advertiser.example/\nSet-Cookie:x", "evil.example",
    ])
    def test_hostile_targets_are_refused(self, url: str) -> None:
        with pytest.raises(ValidationError):
            validate_target_url(url)

    @pytest.mark.parametrize("url", [
        "https://advertiser.example/sale?utm=1", "http://advertiser.example", "/sale/tea/",
    ])
    def test_http_targets_and_site_paths_are_accepted(self, url: str) -> None:
        validate_target_url(url)

    def test_the_shop_can_allow_only_its_partners(self, settings) -> None:
        settings.SHOP_RECS = {**settings.SHOP_RECS,
                              "ADS_ALLOWED_TARGET_HOSTS": ["partner.example"]}
        validate_target_url("https://PARTNER.example/offer")
        validate_target_url("/on-this-site/")
        with pytest.raises(ValidationError, match="partner.example"):
            validate_target_url("https://evil.example/")

    def test_a_campaign_is_checked_before_it_is_saved(self, recs_shop: RecsShop) -> None:
        with pytest.raises(ValidationError) as error:
            campaign(target_url="javascript:alert(1)", bid=Decimal("5"), daily_budget=Decimal("2"),
                     starts_at=NOON, ends_at=NOON - dt.timedelta(hours=1),
                     target_categories="tea")
        assert set(error.value.message_dict) == {"target_url", "bid", "ends_at",
                                                 "target_categories"}
        with pytest.raises(ValidationError, match="no product '999'"):
            sponsored(999)
        with pytest.raises(ValidationError, match="needs a title"):
            campaign(title="")
        assert not AdCampaign.objects.exists()


class TestRanking:
    def test_a_newcomer_sees_the_highest_bids_first(self, recs_shop) -> None:
        low, high = campaign(bid=Decimal("1.00")), campaign(bid=Decimal("2.50"))
        ads = recommended_ads(NEWCOMER, "home", 5)
        assert shown(ads) == [high.pk, low.pk] and ads.source == "bid"
        assert [ad.position for ad in ads] == [1, 2]

    def test_the_model_ranks_the_shoppers_category_first(self, recs_shop, active_model) -> None:
        recs_shop.view(21, 22, 23, user=recs_shop.alice)  # a coffee drinker
        kettle, coffee = sponsored(31), sponsored(25)
        ads = recommended_ads(Shopper.for_user(recs_shop.alice), "home", 2)
        assert ads.source == "model" and shown(ads) == [coffee.pk, kettle.pk]
        assert ads.ads[0].relevance > 1 > ads.ads[1].relevance
        assert ads.ads[0].title == "French Roast Coffee Beans"  # the product's name by default

    def test_without_a_model_the_shoppers_categories_decide(self, recs_shop) -> None:
        recs_shop.view(31, 32, session_key="kettle-fan")
        coffee, kettle = sponsored(25), sponsored(33)
        kettle_sale = campaign(target_categories=[str(recs_shop.categories["kettles"].pk)])
        ads = recommended_ads(Shopper(session_key="kettle-fan"), "home", 3)
        assert ads.source == "categories"
        assert shown(ads)[-1] == coffee.pk and set(shown(ads)[:2]) == {kettle.pk, kettle_sale.pk}

    def test_a_much_higher_bid_beats_relevance_but_not_any_bid(self, recs_shop,
                                                              active_model) -> None:
        recs_shop.view(21, 22, 23, user=recs_shop.alice)
        coffee = sponsored(25, bid=Decimal("0.50"))
        kettle = sponsored(31, bid=Decimal("0.60"), daily_budget=Decimal("500"))
        alice = Shopper.for_user(recs_shop.alice)
        assert shown(recommended_ads(alice, "home", 1)) == [coffee.pk]
        kettle.bid = Decimal("60.00")  # 120 times the coffee's bid: beyond any relevance gap
        kettle.save()
        assert shown(recommended_ads(alice, "home", 1)) == [kettle.pk]

    def test_targeted_campaigns_need_the_page_or_the_shopper_in_their_categories(
        self, recs_shop
    ) -> None:
        kettles = str(recs_shop.categories["kettles"].pk)
        targeted = campaign(target_categories=[kettles])
        recs_shop.view(21, session_key="coffee-only")
        coffee_only = Shopper(session_key="coffee-only")
        assert shown(recommended_ads(coffee_only, "home")) == []
        assert shown(recommended_ads(coffee_only, "category", category=kettles)) == [targeted.pk]
        recs_shop.view(32, session_key="coffee-only")
        assert shown(recommended_ads(coffee_only, "home")) == [targeted.pk]

    def test_only_live_campaigns_of_available_products_not_yet_bought(self, recs_shop) -> None:
        now = timezone.now()
        live = campaign()
        campaign(active=False)
        campaign(starts_at=now + dt.timedelta(hours=1))
        campaign(ends_at=now - dt.timedelta(minutes=1), starts_at=now - dt.timedelta(days=1))
        sponsored(37)  # no longer sold
        sponsored(38)  # out of stock
        bought = sponsored(26)
        recs_shop.buy(26, user=recs_shop.bob)
        bob = Shopper.for_user(recs_shop.bob)
        assert shown(recommended_ads(bob, "home", 10)) == [live.pk]
        assert bought.pk in shown(recommended_ads(NEWCOMER, "home", 10))

    def test_one_ad_per_product_and_the_limit(self, recs_shop) -> None:
        better = sponsored(24, bid=Decimal("3.00"))
        sponsored(24, bid=Decimal("2.00"))
        other = sponsored(23, bid=Decimal("1.00"))
        campaign(bid=Decimal("0.50"))
        assert shown(recommended_ads(NEWCOMER, "home", 2)) == [better.pk, other.pk]
        with pytest.raises(ValueError, match="placement"):
            recommended_ads(NEWCOMER, "../etc/passwd")
        with pytest.raises(ValueError, match="limit"):
            recommended_ads(NEWCOMER, "home", 0)


class TestBudgetAndPacing:
    def test_spend_is_spread_over_the_day(self, recs_shop) -> None:
        ad = campaign(daily_budget=Decimal("10.00"))
        at = dt.datetime(2030, 5, 1, tzinfo=dt.UTC)
        assert paced_allowance_cents(ad, at) == 100  # the 10% slack at midnight
        assert paced_allowance_cents(ad, at + dt.timedelta(hours=6)) == 350
        assert paced_allowance_cents(ad, at + dt.timedelta(hours=23, minutes=59)) == 1000
        afternoon = campaign(daily_budget=Decimal("10.00"), starts_at=at + dt.timedelta(hours=12))
        assert paced_allowance_cents(afternoon, at + dt.timedelta(hours=18)) == 600

    def test_a_campaign_ahead_of_its_pace_or_out_of_budget_is_not_shown(self, recs_shop) -> None:
        ad = campaign(daily_budget=Decimal("10.00"), bid=Decimal("1.00"))
        morning = dt.datetime(2030, 5, 1, 6, tzinfo=dt.UTC)
        AdDailyStats.objects.create(campaign=ad, day=morning.date(), spend_cents=400)
        assert shown(recommended_ads(NEWCOMER, "home", now=morning)) == []  # 4.00 > 3.50 paced
        assert shown(recommended_ads(NEWCOMER, "home", now=NOON)) == [ad.pk]  # 6.50 by noon
        AdDailyStats.objects.filter(campaign=ad).update(spend_cents=950)
        evening = dt.datetime(2030, 5, 1, 23, tzinfo=dt.UTC)
        assert shown(recommended_ads(NEWCOMER, "home", now=evening)) == []  # 9.50 + 1.00 > 10
        tomorrow = dt.datetime(2030, 5, 2, 12, tzinfo=dt.UTC)
        assert shown(recommended_ads(NEWCOMER, "home", now=tomorrow)) == [ad.pk]

    def test_a_click_is_charged_only_within_the_budget(self, recs_shop) -> None:
        ad = campaign(daily_budget=Decimal("2.50"), bid=Decimal("1.00"))
        day = local_day()
        assert [charge_click(ad, day) for _ in range(4)] == [True, True, False, False]
        stats = AdDailyStats.objects.get(campaign=ad, day=day)
        assert (stats.spend_cents, stats.clicks, stats.unbilled_clicks) == (200, 2, 2)


class TestFrequencyCap:
    def test_a_shopper_sees_a_capped_campaign_at_most_cap_times_a_day(self, api,
                                                                      recs_shop) -> None:
        capped, free = campaign(frequency_cap=2, bid=Decimal("2")), campaign()
        api.force_login(recs_shop.alice)
        seen = [[ad["campaign_id"] for ad in api.get(f"{API}/ads/", {"placement": "home"})
                 .json()["ads"]] for _ in range(3)]
        assert seen == [[capped.pk, free.pk], [capped.pk, free.pk], [free.pk]]
        # Yesterday's impressions do not count today.
        Event.objects.filter(kind=EventKind.AD_IMPRESSION).update(
            timestamp=timezone.now() - dt.timedelta(days=1, hours=1))
        alice = Shopper.for_user(recs_shop.alice)
        assert shown(recommended_ads(alice, "home")) == [capped.pk, free.pk]
        # Another shopper has their own count.
        assert capped.pk in shown(recommended_ads(Shopper.for_user(recs_shop.bob), "home"))


class TestClicks:
    def ad_link(self, api, placement: str = "home") -> dict:
        ads = api.get(f"{API}/ads/", {"placement": placement}).json()["ads"]
        assert ads, "no ad shown"
        return ads[0]

    def test_a_click_is_recorded_billed_and_redirected_to_the_campaigns_target(
        self, api, recs_shop
    ) -> None:
        ad = campaign(bid=Decimal("0.75"))
        link = self.ad_link(api)
        assert link["click_url"].startswith("/recs/ads/click/")
        response = api.get(link["click_url"], {"next": "https://evil.example/"})
        assert response.status_code == 302
        assert response["Location"] == "https://advertiser.example/sale"
        stats = AdDailyStats.objects.get(campaign=ad)
        assert (stats.impressions, stats.clicks, stats.spend_cents) == (1, 1, 75)
        click = Event.objects.get(kind=EventKind.AD_CLICK)
        assert click.context["campaign"] == ad.pk and click.context["charged"] is True
        assert click.context["placement"] == "home"
        # The same click again leads there too, but is neither counted nor billed twice.
        assert api.get(link["click_url"]).status_code == 302
        assert AdDailyStats.objects.get(campaign=ad).spend_cents == 75
        assert AdClick.objects.count() == 1 and Event.objects.filter(
            kind=EventKind.AD_CLICK).count() == 1

    def test_a_sponsored_product_leads_to_its_page(self, api, recs_shop) -> None:
        sponsored(22)
        response = api.get(self.ad_link(api)["click_url"])
        assert response.status_code == 302 and response["Location"] == "/products/22/"
        assert Event.objects.get(kind=EventKind.AD_CLICK).product_id == "22"

    def test_forged_and_stale_links_go_nowhere(self, api, recs_shop) -> None:
        ad = campaign()
        forged = signing.dumps([ad.pk, "home", "x", 1, 0], salt="another-salt")
        assert api.get(f"/recs/ads/click/{forged}/").status_code == 404
        link = self.ad_link(api)["click_url"]
        assert api.get(link[:-5] + "AAAA/").status_code == 404  # altered signature
        gone = make_ad_token(987654, "home", "x", 1)
        assert api.get(f"/recs/ads/click/{gone}/").status_code == 404
        assert not AdDailyStats.objects.filter(clicks__gt=0).exists()

    def test_a_target_tampered_with_in_the_database_is_not_followed(self, api,
                                                                     recs_shop) -> None:
        ad = campaign()
        link = self.ad_link(api)["click_url"]
        for hostile in ("javascript:alert(1)", "//evil.example", "/\\evil.example"):
            AdCampaign.objects.filter(pk=ad.pk).update(target_url=hostile)  # skips validation
            response = api.get(link)
            assert response.status_code == 404 and "Location" not in response

    def test_clicks_after_the_budget_is_spent_lead_on_but_are_not_billed(self, recs_shop) -> None:
        ad = campaign(bid=Decimal("1.00"), daily_budget=Decimal("2.00"))
        token = make_ad_token(ad.pk, "home", "list-1", 1)
        statuses = [APIClient().get(f"/recs/ads/click/{token}/").status_code for _ in range(3)]
        assert statuses == [302, 302, 302]  # three different shoppers (sessions)
        stats = AdDailyStats.objects.get(campaign=ad)
        assert (stats.spend_cents, stats.clicks, stats.unbilled_clicks) == (200, 2, 1)
        assert sorted(AdClick.objects.values_list("cost_cents", flat=True)) == [0, 100, 100]
        charged = [e.context["charged"] for e in Event.objects.filter(kind=EventKind.AD_CLICK)]
        assert sorted(charged) == [False, True, True]

    def test_an_old_link_still_leads_there_but_is_not_billed(self, api, recs_shop,
                                                             settings) -> None:
        ad = campaign()
        issued = int(timezone.now().timestamp()) - 3600
        old = signing.dumps([ad.pk, "home", "list-1", 1, issued], salt=AD_SALT, compress=True)
        settings.SHOP_RECS = {**settings.SHOP_RECS, "CLICK_TOKEN_MAX_AGE": 60}
        assert api.get(f"/recs/ads/click/{old}/").status_code == 302
        assert not AdClick.objects.exists() and not Event.objects.filter(
            kind=EventKind.AD_CLICK).exists()


class TestTagAndApi:
    def render(self, source: str, request) -> str:
        return Template("{% load shop_recs %}" + source).render(Context({"request": request}))

    def request(self, user=None):
        request = RequestFactory().get("/")
        request.user = user or AnonymousUser()
        request.session = SessionStore()
        return request

    def test_the_tag_renders_escaped_ads_and_records_impressions(self, recs_shop) -> None:
        ad = campaign(title='"><script>alert(1)</script>', text="</a><img src=x onerror=alert(1)>",
                      image_url="https://cdn.example/a.png")
        html = self.render('{% recommended_ads "home" %}', self.request(recs_shop.alice))
        assert "<script>" not in html and "<img src=x" not in html
        assert "&lt;script&gt;" in html and "Sponsored" in html
        assert 'href="/recs/ads/click/' in html and 'rel="sponsored nofollow noopener"' in html
        assert 'src="https://cdn.example/a.png"' in html
        impression = Event.objects.get(kind=EventKind.AD_IMPRESSION)
        assert impression.user == recs_shop.alice and impression.context["campaign"] == ad.pk
        assert AdDailyStats.objects.get(campaign=ad).impressions == 1

    def test_no_ads_render_nothing(self, recs_shop) -> None:
        assert self.render('{% recommended_ads "home" %}', self.request()).strip() == ""
        assert self.render('{% recommended_ads "bad/placement" %}', self.request()).strip() == ""

    @pytest.mark.parametrize(("params", "field"), [
        ({}, "placement"), ({"placement": "../x"}, "placement"),
        ({"placement": "home", "limit": "0"}, "limit"),
    ])
    def test_the_api_answers_400_with_what_is_wrong(self, api, recs_shop, params, field) -> None:
        response = api.get(f"{API}/ads/", params)
        assert response.status_code == 400 and response.json()[field]

    def test_the_api_lists_ads_with_their_links(self, api, recs_shop) -> None:
        ad = sponsored(12, text="Fresh from Assam")
        body = api.get(f"{API}/ads/", {"placement": "sidebar", "limit": 3}).json()
        assert body["placement"] == "sidebar" and body["impression_id"]
        assert body["ads"] == [{
            "campaign_id": ad.pk, "kind": "product", "product_id": "12",
            "title": "Assam Black Tea", "text": "Fresh from Assam", "image_url": "",
            "position": 1, "click_url": body["ads"][0]["click_url"],
        }]
        assert Event.objects.get(kind=EventKind.AD_IMPRESSION).context["channel"] == "api"


class TestAdmin:
    def test_ctr_and_spend_per_campaign(self, client, recs_shop, django_user_model) -> None:
        ad = campaign(name="Kettle week")
        AdDailyStats.objects.create(campaign=ad, day=local_day(), impressions=8, clicks=2,
                                    spend_cents=200)
        AdDailyStats.objects.create(campaign=ad, day=local_day() - dt.timedelta(days=1),
                                    impressions=2, clicks=0, spend_cents=0)
        admin = django_user_model.objects.create_superuser("boss", password="pw")
        client.force_login(admin)
        page = client.get("/admin/shop_recs/adcampaign/").content.decode()
        assert "Kettle week" in page and "20.0%" in page and "2.00" in page
        assert client.get(f"/admin/shop_recs/adcampaign/{ad.pk}/change/").status_code == 200

    def test_the_admin_refuses_a_hostile_target(self, client, recs_shop,
                                                django_user_model) -> None:
        client.force_login(django_user_model.objects.create_superuser("boss", password="pw"))
        response = client.post("/admin/shop_recs/adcampaign/add/", {
            "name": "x", "active": "on", "kind": "creative", "title": "x",
            "target_url": "javascript:alert(1)", "bid": "1.00", "daily_budget": "5.00",
            "target_categories": "[]",
            "daily_stats-TOTAL_FORMS": "0", "daily_stats-INITIAL_FORMS": "0",
        })
        assert response.status_code == 200 and "http:// or https://" in response.content.decode()
        assert not AdCampaign.objects.exists()
