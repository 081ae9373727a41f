"""Personalised ads: which campaigns a shopper sees, and what a click costs.

    ads = recommended_ads(Shopper.from_request(request), "search", category="3")
    record_ad_impressions(request, ads, channel="web")
    for ad in ads: ad.title, ad.text, ad.image_url, ad.click_url

**Ranking.** An eligible campaign's rank is its relevance to the shopper times its bid (expected
revenue per impression when relevance tracks click-through). Relevance is a *lift*: how much
likelier than average this shopper is to want what the ad shows. With a model and a history it
knows, the model's probability of the ad's product (or of its target categories' products)
over the average product's; otherwise the share of the shopper's history in the ad's categories
over their share of the catalogue (smoothed). A newcomer or an untargeted creative scores 1, so
the bid decides. Lift is bounded to [0.1, 10]: a guess cannot bury an ad completely, a bid
cannot buy any placement.

**Eligible** = active, between its start and end, within today's budget and pacing (by a time of
day a campaign may have spent its budget's share of the day so far plus ADS_PACING_SLACK of the
budget, so that spend is spread over the day), under the shopper's frequency cap for today,
targeted at this page's category or at a category the shopper browses (if it targets any), and,
for a sponsored product, available and not already bought.

**Billing.** Cost per click = the bid, charged by ``charge_click``: one conditional UPDATE that
adds the bid only where ``spend + bid <= budget``, so no number of concurrent clicks can take a
day's spend over the daily budget. A click after the budget is spent still leads to the target
(counted as unbilled). A repeated click (same list, same shopper) is charged once: the click
ledger's unique key decides.

**Redirects.** Clicks go through ``/ads/click/<signed token>/``: the token names the campaign,
and the redirect goes to that campaign's own target (validated when saved and again now) or its
product's page on this site; nothing in the request can choose the destination.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, IntegerField, Model, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from ..adapter import get_adapter
from ..conf import recs_settings
from ..events import EventError, record_event, request_shopper
from ..models import AdCampaign, AdClick, AdDailyStats, EventKind
from ..models.ads import validate_target_url
from ..serving import LoadedModel
from .catalog import CatalogSnapshot, catalog, categories_of, fetch_products
from .recommendations import active_model, known_items
from .rules import hides_purchases
from .shopper import History, Shopper, load_history
from .tokens import BadClickToken

logger = logging.getLogger(__name__)

SCENARIO = "ads"  # the name EXCLUDE_PURCHASED knows ads by
AD_SALT = "shop_recs.ad_click"
PLACEMENT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,50}$")
MIN_LIFT, MAX_LIFT = 0.1, 10.0
# Pseudo-count of the smoothing towards the catalogue's category shares (history fallback).
PRIOR_EVENTS = 2.0


class UnsafeAdTarget(ValueError):
    """The campaign's destination is not a safe address any more; no redirect."""


def clean_placement(placement: Any) -> str:
    if not isinstance(placement, str) or not PLACEMENT_PATTERN.match(placement):
        raise ValueError("placement must be 1 to 50 letters, digits, '-' or '_', "
                         f"not {str(placement)[:60]!r}")
    return placement


@dataclass(frozen=True)
class ShownAd:
    campaign: AdCampaign
    product: Model | None  # the sponsored product
    title: str
    text: str
    image_url: str
    relevance: float  # the lift, 0.1..10
    position: int  # 1-based
    click_token: str

    @property
    def product_id(self) -> str:
        return self.campaign.product_id

    @property
    def click_url(self) -> str:
        """Through the ad click endpoint (counts and bills the click); the destination itself
        when the shop has not routed the plugin's URLs."""
        try:
            return reverse("shop_recs:ad_click", args=[self.click_token])
        except NoReverseMatch:
            return self.campaign.target_url or get_adapter().product_url(self.product)


@dataclass
class AdList:
    placement: str
    ads: list[ShownAd]
    impression_id: str
    source: str  # how relevance was judged: "model", "categories" or "bid" (no history)

    def __iter__(self) -> Iterator[ShownAd]:
        return iter(self.ads)

    def __len__(self) -> int:
        return len(self.ads)

    def __bool__(self) -> bool:
        return bool(self.ads)


# --- Choosing ----------------------------------------------------------------------------------


def recommended_ads(
    shopper: Shopper, placement: str, limit: int | None = None, *,
    category: str | None = None, now: datetime | None = None,
) -> AdList:
    """The best ads for this shopper on this placement (ValueError on a bad placement/limit)."""
    placement = clean_placement(placement)
    if limit is None:
        limit = recs_settings.ADS_PER_PLACEMENT
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number of at least 1, not {limit!r}")
    limit = min(limit, recs_settings.MAX_LIMIT)
    now = now or timezone.now()
    snapshot = catalog.get()
    history = load_history(shopper)
    campaigns = [c for c in live_campaigns(now) if within_budget(c, now)]
    campaigns = _under_caps(campaigns, shopper, now)
    purchased = history.purchased if hides_purchases(SCENARIO) else frozenset()
    browsed = {c for c in categories_of(history.product_ids, snapshot).values() if c is not None}
    campaigns = [
        c for c in campaigns
        if _shows_something(c, snapshot, purchased)
        and (not c.target_categories or set(c.target_categories) & (browsed | {category}))
    ]
    impression_id = uuid.uuid4().hex[:16]
    if not campaigns:
        return AdList(placement, [], impression_id, "bid")
    lifts, source = relevance(campaigns, history, active_model(), snapshot)
    ranked = sorted(zip(campaigns, lifts, strict=True),
                    key=lambda cl: (-cl[1] * float(cl[0].bid), -float(cl[0].bid), cl[0].pk))
    chosen: list[tuple[AdCampaign, float]] = []
    products_shown: set[str] = set()
    for campaign, lift in ranked:
        if campaign.product_id:
            if campaign.product_id in products_shown:
                continue  # two campaigns for one product: the better one only
            products_shown.add(campaign.product_id)
        chosen.append((campaign, lift))
        if len(chosen) == limit:
            break
    products, _ = fetch_products([c.product_id for c, _ in chosen if c.product_id])
    ads = []
    for campaign, lift in chosen:
        product = products.get(campaign.product_id) if campaign.product_id else None
        if campaign.kind == AdCampaign.Kind.PRODUCT and product is None:
            continue  # deleted since the snapshot
        position = len(ads) + 1
        ads.append(ShownAd(
            campaign=campaign, product=product,
            title=campaign.title or (str(product) if product is not None else ""),
            text=campaign.text, image_url=campaign.image_url, relevance=lift,
            position=position,
            click_token=make_ad_token(campaign.pk, placement, impression_id, position),
        ))
    return AdList(placement, ads, impression_id, source)


def live_campaigns(now: datetime) -> list[AdCampaign]:
    """Active campaigns running at ``now``, each with today's spend (``spent_cents``)."""
    today = AdDailyStats.objects.filter(campaign=OuterRef("pk"), day=local_day(now))
    return list(
        AdCampaign.objects.filter(active=True)
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now))
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .annotate(spent_cents=Coalesce(Subquery(today.values("spend_cents")[:1]), Value(0),
                                       output_field=IntegerField()))
        .order_by("pk")
    )


def local_day(now: datetime | None = None) -> Any:
    """The shop's calendar day (settings.TIME_ZONE): budgets and caps reset at its midnight."""
    return timezone.localtime(now or timezone.now()).date()


def paced_allowance_cents(campaign: AdCampaign, now: datetime) -> int:
    """How much of today's budget the campaign may have spent by ``now``.

    Its budget's share of the part of today it runs (from midnight or its start, to midnight or
    its end), plus ADS_PACING_SLACK of the budget; never more than the budget.
    """
    local = timezone.localtime(now)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    day_end = day_start + timedelta(days=1)
    run_start = max(day_start, campaign.starts_at or day_start)
    run_end = min(day_end, campaign.ends_at or day_end)
    span = (run_end - run_start).total_seconds()
    fraction = 1.0 if span <= 0 else min(1.0, max(0.0, (now - run_start).total_seconds() / span))
    budget = campaign.budget_cents
    return min(budget, math.ceil(budget * (fraction + recs_settings.ADS_PACING_SLACK)))


def within_budget(campaign: AdCampaign, now: datetime) -> bool:
    """Can pay one more click today, and is not ahead of its pacing."""
    spent = getattr(campaign, "spent_cents", None)
    if spent is None:
        stats = AdDailyStats.objects.filter(campaign=campaign, day=local_day(now)).first()
        spent = stats.spend_cents if stats else 0
    return (spent + campaign.bid_cents <= campaign.budget_cents
            and spent < paced_allowance_cents(campaign, now))


def _under_caps(campaigns: list[AdCampaign], shopper: Shopper,
                now: datetime) -> list[AdCampaign]:
    """Drop the campaigns this shopper has already seen their frequency cap's worth today."""
    capped = [c for c in campaigns if c.frequency_cap is not None]
    if not capped or not shopper.is_known:
        return campaigns
    day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    seen = Counter(
        str(campaign_id) for campaign_id in shopper.events()
        .filter(kind=EventKind.AD_IMPRESSION, timestamp__gte=day_start)
        .values_list("context__campaign", flat=True)
    )
    return [c for c in campaigns
            if c.frequency_cap is None or seen[str(c.pk)] < c.frequency_cap]


def _shows_something(campaign: AdCampaign, snapshot: CatalogSnapshot,
                     purchased: frozenset[str]) -> bool:
    if campaign.kind != AdCampaign.Kind.PRODUCT:
        return True
    return campaign.product_id in snapshot.available and campaign.product_id not in purchased


def _targets(campaign: AdCampaign, snapshot: CatalogSnapshot) -> set[str] | None:
    """The categories an ad is about (its product's, or its targets); None: everything."""
    if campaign.kind == AdCampaign.Kind.PRODUCT:
        category = snapshot.category_of.get(campaign.product_id)
        return {category} if category is not None else None
    return set(campaign.target_categories) or None


def relevance(
    campaigns: list[AdCampaign], history: History, model: LoadedModel | None,
    snapshot: CatalogSnapshot,
) -> tuple[list[float], str]:
    """Each campaign's lift for this shopper (see the module's docstring), and its source."""
    if not history:
        return [1.0] * len(campaigns), "bid"
    if model is not None and known_items(model).intersection(history.product_ids):
        try:
            return _model_lifts(campaigns, history, model, snapshot), "model"
        except Exception:
            logger.exception("shop_recs: model %s failed to score ads; using the shopper's "
                             "categories", model.label)
    return _category_lifts(campaigns, history, snapshot), "categories"


def _model_lifts(campaigns: list[AdCampaign], history: History, model: LoadedModel,
                 snapshot: CatalogSnapshot) -> list[float]:
    """p(the ad's products | history) / (their share of the catalogue), p = softmax of the
    model's scores over every product it knows."""
    recommender = model.recommender
    scores = recommender.score_all(list(history.product_ids),
                                   kinds=list(history.kinds)).astype(np.float64)
    probability = np.exp(scores - scores.max())
    probability /= probability.sum()
    lifts = []
    for campaign in campaigns:
        if campaign.kind == AdCampaign.Kind.PRODUCT:
            members: set[str] | frozenset[str] = {campaign.product_id}
        elif campaign.target_categories:
            members = set().union(*(snapshot.members.get(c, frozenset())
                                    for c in campaign.target_categories))
        else:
            members = set()
        rows = recommender.positions(members)
        if not len(rows):
            lifts.append(1.0)  # untargeted, or nothing the model knows: neutral
            continue
        lift = float(probability[rows].sum()) / (len(rows) / len(probability))
        lifts.append(min(MAX_LIFT, max(MIN_LIFT, lift)))
    return lifts


def _category_lifts(campaigns: list[AdCampaign], history: History,
                    snapshot: CatalogSnapshot) -> list[float]:
    """Share of the shopper's history in the ad's categories over their catalogue share."""
    seen = [c for c in categories_of(history.product_ids, snapshot).values() if c is not None]
    total = len(snapshot.available) or 1
    lifts = []
    for campaign in campaigns:
        targets = _targets(campaign, snapshot)
        prior = sum(len(snapshot.members.get(c, ())) for c in targets or ()) / total
        if targets is None or prior <= 0:
            lifts.append(1.0)
            continue
        hits = sum(1 for c in seen if c in targets)
        smoothed = (hits + PRIOR_EVENTS * prior) / (len(seen) + PRIOR_EVENTS)
        lifts.append(min(MAX_LIFT, max(MIN_LIFT, smoothed / prior)))
    return lifts


# --- Impressions -------------------------------------------------------------------------------


def record_ad_impressions(request: HttpRequest, ads: AdList, *, channel: str) -> None:
    """One ad_impression event per ad shown (frequency caps count them) and the campaigns'
    impression counters. Never raises: the page is served regardless."""
    if not ads:
        return
    who = request_shopper(request)
    day = local_day()
    for ad in ads:
        try:
            record_event(
                kind=EventKind.AD_IMPRESSION, product=ad.product_id or None,
                context={"campaign": ad.campaign.pk, "placement": ads.placement,
                         "impression_id": ads.impression_id, "position": ad.position,
                         "channel": channel},
                **who,
            )
            row = _stats_row(ad.campaign, day)
            AdDailyStats.objects.filter(pk=row.pk).update(impressions=F("impressions") + 1)
        except (EventError, DatabaseError) as exc:
            logger.warning("shop_recs: impression of ad %s not recorded: %s", ad.campaign.pk, exc)


def _stats_row(campaign: AdCampaign, day: Any) -> AdDailyStats:
    """Today's row of the campaign (two requests creating it at once: one wins, both use it)."""
    row, _ = AdDailyStats.objects.get_or_create(campaign=campaign, day=day)
    return row


# --- Clicks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdClickData:
    campaign_id: int
    placement: str
    impression_id: str
    position: int


def make_ad_token(campaign_id: int, placement: str, impression_id: str, position: int) -> str:
    payload = [campaign_id, placement, impression_id, position, int(time.time())]
    return signing.dumps(payload, salt=AD_SALT)  # too short to shrink: not compressed


def read_ad_token(token: str, *, max_age: float) -> tuple[AdClickData, bool]:
    """The token's data and whether it is fresh enough to count (BadClickToken if forged)."""
    try:
        campaign_id, placement, impression_id, position, issued = signing.loads(
            token, salt=AD_SALT)
        data = AdClickData(int(campaign_id), str(placement), str(impression_id), int(position))
        fresh = time.time() - float(issued) <= max_age
    except (signing.BadSignature, TypeError, ValueError) as exc:
        raise BadClickToken("This ad link is invalid.") from exc
    return data, fresh


@dataclass(frozen=True)
class AdClickResult:
    campaign: AdCampaign
    url: str
    recorded: bool  # False: a repeated or expired click (not counted, not billed)
    charged: bool


def destination_url(campaign: AdCampaign, request: HttpRequest) -> str:
    """Where a click on the campaign goes; UnsafeAdTarget when that is not a safe address."""
    if campaign.target_url:
        try:
            validate_target_url(campaign.target_url)
        except ValidationError as exc:
            raise UnsafeAdTarget(f"Campaign {campaign.pk}'s target is refused: "
                                 f"{' '.join(exc.messages)}") from None
        return campaign.target_url
    product = get_adapter().get_product(campaign.product_id) if campaign.product_id else None
    if product is None:
        raise LookupError(f"Campaign {campaign.pk}'s product no longer exists.")
    url = get_adapter().product_url(product)
    if not url or not url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        raise UnsafeAdTarget(f"Campaign {campaign.pk}'s product has no page on this site.")
    return url


def charge_click(campaign: AdCampaign, day: Any) -> bool:
    """Add the bid to the day's spend if it stays within the daily budget; False if it would
    not (the click is counted as unbilled). Safe under any number of concurrent clicks: the
    budget check and the addition are one UPDATE, which the database applies to the row one
    transaction at a time (re-checking the condition on the latest spend)."""
    row = _stats_row(campaign, day)
    bid, budget = campaign.bid_cents, campaign.budget_cents
    charged = AdDailyStats.objects.filter(pk=row.pk, spend_cents__lte=budget - bid).update(
        spend_cents=F("spend_cents") + bid, clicks=F("clicks") + 1)
    if not charged:
        AdDailyStats.objects.filter(pk=row.pk).update(unbilled_clicks=F("unbilled_clicks") + 1)
    return bool(charged)


def record_ad_click(request: HttpRequest, token: str, *, channel: str) -> AdClickResult:
    """Count and bill a click, and say where it goes.

    Raises BadClickToken (forged or altered), LookupError (campaign or product gone) or
    UnsafeAdTarget. A token older than CLICK_TOKEN_MAX_AGE still leads to the target but is
    neither counted nor billed.
    """
    data, fresh = read_ad_token(token, max_age=recs_settings.CLICK_TOKEN_MAX_AGE)
    campaign = AdCampaign.objects.filter(pk=data.campaign_id).first()
    if campaign is None:
        raise LookupError("This ad is no longer running.")
    url = destination_url(campaign, request)
    if not fresh:
        return AdClickResult(campaign, url, recorded=False, charged=False)
    who = request_shopper(request)
    identity = f"{getattr(who['user'], 'pk', '')}|{who['session_key'] or ''}"
    key = hashlib.sha256(
        f"{data.impression_id}|{campaign.pk}|{data.position}|{identity}".encode()
    ).hexdigest()[:40]
    day = local_day()
    with transaction.atomic():
        try:
            with transaction.atomic():
                click = AdClick.objects.create(campaign=campaign, key=key, day=day)
        except IntegrityError:
            return AdClickResult(campaign, url, recorded=False, charged=False)
        charged = charge_click(campaign, day)
        if charged:
            click.cost_cents = campaign.bid_cents
            click.save(update_fields=["cost_cents"])
    try:
        record_event(
            kind=EventKind.AD_CLICK, product=campaign.product_id or None,
            idempotency_key=f"adclick:{key}",
            context={"campaign": campaign.pk, "placement": data.placement,
                     "impression_id": data.impression_id, "position": data.position,
                     "charged": charged, "channel": channel},
            **who,
        )
    except (EventError, DatabaseError) as exc:
        logger.warning("shop_recs: click on ad %s not recorded as an event: %s", campaign.pk, exc)
    return AdClickResult(campaign, url, recorded=True, charged=charged)
