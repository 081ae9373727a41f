"""A campaign's spend never exceeds its daily budget, however many clicks arrive at once:
parallel requests to the ad click endpoint (and parallel charges) on real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from shop_recs.models import AdCampaign, AdClick, AdDailyStats, Event, EventKind
from shop_recs.services.ads import charge_click, local_day, make_ad_token

pytestmark = pytest.mark.services

PARALLEL = 24


def in_parallel(work: Callable[[int], object], n: int = PARALLEL) -> list[object]:
    """Run work(i) in n threads released together; each thread has its own connection."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # reported by the caller's asserts
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.fixture
def campaign(postgres, transactional_db) -> AdCampaign:
    return AdCampaign.objects.create(
        name="Five clicks a day", kind=AdCampaign.Kind.CREATIVE, title="Sale",
        target_url="https://advertiser.example/sale", bid=Decimal("1.25"),
        daily_budget=Decimal("6.40"),  # room for 5 clicks (6.25), not for a 6th
    )


def test_parallel_clicks_never_take_spend_over_the_budget(campaign: AdCampaign) -> None:
    token = make_ad_token(campaign.pk, "home", "list-1", 1)

    def click(_: int) -> int:
        # A fresh client: another shopper (session), so every click is a new, billable one.
        return Client().get(f"/recs/ads/click/{token}/").status_code

    statuses = in_parallel(click)
    assert statuses == [302] * PARALLEL
    stats = AdDailyStats.objects.get(campaign=campaign, day=local_day())
    assert stats.spend_cents == 625 <= campaign.budget_cents
    assert (stats.clicks, stats.unbilled_clicks) == (5, PARALLEL - 5)
    assert AdClick.objects.filter(cost_cents=125).count() == 5
    assert AdClick.objects.filter(cost_cents=0).count() == PARALLEL - 5
    charged = Event.objects.filter(kind=EventKind.AD_CLICK, context__charged=True).count()
    assert charged == 5


def test_the_same_click_sent_in_parallel_is_billed_once(campaign: AdCampaign) -> None:
    token = make_ad_token(campaign.pk, "home", "list-2", 1)
    shopper = Client()
    shopper.get("/")  # one shopper: the session cookie is shared by every request below
    session = shopper.cookies

    def click(_: int) -> int:
        client = Client()
        client.cookies = session
        return client.get(f"/recs/ads/click/{token}/").status_code

    assert in_parallel(click, 8) == [302] * 8
    stats = AdDailyStats.objects.get(campaign=campaign, day=local_day())
    assert (stats.spend_cents, stats.clicks) == (125, 1)


def test_parallel_charges_stop_exactly_at_the_budget(campaign: AdCampaign) -> None:
    day = local_day()
    outcomes = in_parallel(lambda _: charge_click(campaign, day))
    assert outcomes.count(True) == 5 and outcomes.count(False) == PARALLEL - 5
    assert AdDailyStats.objects.get(campaign=campaign, day=day).spend_cents == 625
