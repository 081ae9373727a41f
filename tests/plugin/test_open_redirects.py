"""Neither click endpoint can be turned into an open redirect.

Every hostile target below is tried on both endpoints (``recs/click/<token>/`` for
recommendations, ``recs/ads/click/<token>/`` for ads) in every way an attacker could bring it in:
in the request, in a tampered token, as a product's URL, or as a campaign's target saved in the
database past the admin's checks. The answer is always the shop's own page or a 404 without a
``Location``; nothing off the site is ever redirected to.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from shop_recs.models import AdCampaign, AdDailyStats, Event, EventKind
from shop_recs.services.ads import AD_SALT, make_ad_token
from shop_recs.services.tokens import SALT, ClickData, make_click_token

HOSTILE = [
    "//evil.example",
    "https://evil.example",
    "http:\\\\evil.example",
    "/\\evil.example",
    "javascript:alert(document.cookie)",
    "https://shop.example@evil.example/",
    "\t//evil.example",
]
pytestmark = pytest.mark.parametrize("target", HOSTILE)


def rec_token(product_id: str = "11") -> str:
    return make_click_token(ClickData(product_id, "similar", "v1", "imp", 1))


def creative(target_url: str = "https://advertiser.example/sale") -> AdCampaign:
    return AdCampaign.objects.create(
        name="ad", kind=AdCampaign.Kind.CREATIVE, title="Sale", target_url=target_url,
        bid=Decimal("1"), daily_budget=Decimal("100"),
    )


def assert_on_site_or_refused(response, allowed: str | None = None) -> None:
    if response.status_code == 404:
        assert "Location" not in response
        return
    assert response.status_code == 302
    location = response["Location"]
    assert allowed is not None and location == allowed
    parts = urlsplit(location)
    assert parts.scheme in ("", "https") and "\\" not in location and not location.startswith("//")


class TestRecommendationClicks:
    def test_the_request_cannot_choose_the_target(self, target, recs_shop) -> None:
        response = Client().get(f"/recs/click/{rec_token()}/",
                                {"next": target, "url": target, "to": target},
                                HTTP_REFERER=target)
        assert_on_site_or_refused(response, allowed="/products/11/")
        assert response.status_code == 302

    def test_a_product_url_off_the_site_is_refused(self, target, recs_shop, monkeypatch) -> None:
        monkeypatch.setattr("demo.models.Product.get_absolute_url", lambda self: target)
        response = Client().get(f"/recs/click/{rec_token()}/")
        assert response.status_code == 404 and "Location" not in response
        api = APIClient().post("/recs/api/feedback/", {"token": rec_token()}, format="json")
        assert api.status_code == 404 and "url" not in api.json()
        assert not Event.objects.filter(kind=EventKind.REC_CLICK).exists()

    def test_a_tampered_token_is_refused(self, target, recs_shop) -> None:
        payload = [target, "similar", "v1", "imp", 1, 2_000_000_000]
        for token in (
            signing.dumps(payload, salt="not-the-salt", compress=True),  # signed elsewhere
            rec_token()[:-6] + signing.b64_encode(target.encode()).decode()[:6],  # altered
            signing.dumps(payload, salt=SALT, compress=True),  # validly signed, not a product
        ):
            response = Client().get(f"/recs/click/{token}/")
            assert response.status_code == 404 and "Location" not in response


class TestAdClicks:
    def test_a_creative_saved_with_the_target_is_refused_by_the_admin_checks(
        self, target, recs_shop, settings
    ) -> None:
        settings.SHOP_RECS = {**settings.SHOP_RECS,
                              "ADS_ALLOWED_TARGET_HOSTS": ["advertiser.example"]}
        ad = AdCampaign(name="ad", kind=AdCampaign.Kind.CREATIVE, title="Sale", target_url=target,
                        bid=Decimal("1"), daily_budget=Decimal("100"))
        with pytest.raises(ValidationError) as error:
            ad.full_clean()
        assert "target_url" in error.value.message_dict

    def test_a_target_written_past_the_checks_is_not_followed(self, target, recs_shop,
                                                              settings) -> None:
        settings.SHOP_RECS = {**settings.SHOP_RECS,
                              "ADS_ALLOWED_TARGET_HOSTS": ["advertiser.example"]}
        ad = creative(target_url=target)  # objects.create() skips the model's validation
        response = Client().get(f"/recs/ads/click/{make_ad_token(ad.pk, 'home', 'imp', 1)}/")
        assert response.status_code == 404 and "Location" not in response
        assert not AdDailyStats.objects.filter(clicks__gt=0).exists()  # nor billed

    def test_a_sponsored_products_url_off_the_site_is_refused(self, target, recs_shop,
                                                              monkeypatch) -> None:
        ad = AdCampaign.objects.create(name="ad", kind=AdCampaign.Kind.PRODUCT, product_id="22",
                                       bid=Decimal("1"), daily_budget=Decimal("100"))
        monkeypatch.setattr("demo.models.Product.get_absolute_url", lambda self: target)
        response = Client().get(f"/recs/ads/click/{make_ad_token(ad.pk, 'home', 'imp', 1)}/")
        assert response.status_code == 404 and "Location" not in response

    def test_the_request_cannot_choose_the_target(self, target, recs_shop) -> None:
        ad = creative()
        response = Client().get(f"/recs/ads/click/{make_ad_token(ad.pk, 'home', 'imp', 1)}/",
                                {"next": target, "url": target}, HTTP_REFERER=target)
        assert_on_site_or_refused(response, allowed="https://advertiser.example/sale")
        assert response.status_code == 302

    def test_a_tampered_token_is_refused(self, target, recs_shop) -> None:
        ad = creative()
        payload = [target, "home", "imp", 1, 2_000_000_000]
        good = make_ad_token(ad.pk, "home", "imp", 1)
        for token in (
            signing.dumps(payload, salt="not-the-salt", compress=True),
            signing.dumps([ad.pk, "home", "imp", 1, 2_000_000_000], salt=SALT),  # a rec salt
            good[:-6] + signing.b64_encode(target.encode()).decode()[:6],
            signing.dumps(payload, salt=AD_SALT, compress=True),  # validly signed, no campaign
        ):
            response = Client().get(f"/recs/ads/click/{token}/")
            assert response.status_code == 404 and "Location" not in response
