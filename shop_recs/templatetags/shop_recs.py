"""The recommendation tags for shop pages::

    {% load shop_recs %}
    {% recommended_products 8 %}             the signed-in shopper's (or the guest's) list
    {% similar_products product 6 %}         products like this one
    {% bought_together product 4 %}          what shoppers buy with it
    {% recently_viewed 6 exclude=product %}  what the shopper looked at last
    {% recommended_ads "search" %}           the shopper's ads for a placement (services.ads)
    {% record_view product %}                records the product view (from shop_recs_events)

Optional keywords: ``category=`` (an id or a category object), ``exclude=`` (a product, an id or
a list of them), ``title=`` (the heading). Each list renders ``shop_recs/<placement>.html`` if the
shop has one, else ``shop_recs/product_list.html`` (override either in your templates folder),
and records one impression. Links go through the click endpoint so clicks are counted.

A tag never breaks the page: whatever goes wrong is logged and the tag renders nothing. The
tags need ``django.template.context_processors.request``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from django import template
from django.db.models import Model
from django.template.loader import render_to_string

from ..adapter import get_adapter
from ..services import (
    Placement,
    RecommendationList,
    Shopper,
    bought_together,
    for_you,
    recently_viewed,
    record_impression,
    similar,
)
from ..services.ads import recommended_ads as choose_ads
from ..services.ads import record_ad_impressions
from . import shop_recs_events

logger = logging.getLogger(__name__)
register = template.Library()
register.tag("record_view", shop_recs_events.register.tags["record_view"])

TITLES = {
    Placement.FOR_YOU: "Recommended for you",
    Placement.SIMILAR: "Similar products",
    Placement.BOUGHT_TOGETHER: "Frequently bought together",
    Placement.RECENTLY_VIEWED: "Recently viewed",
}


@register.simple_tag(takes_context=True)
def recommended_products(
    context: template.Context, limit: int | None = None, *, category: Any = None,
    exclude: Any = None, title: str | None = None,
) -> str:
    return _render(context, Placement.FOR_YOU, title, lambda shopper: for_you(
        shopper, limit, category=_category_id(category), exclude=_product_ids(exclude)))


@register.simple_tag(takes_context=True)
def similar_products(
    context: template.Context, product: Any, limit: int | None = None, *, category: Any = None,
    exclude: Any = None, title: str | None = None,
) -> str:
    return _render(context, Placement.SIMILAR, title, lambda shopper: similar(
        product, shopper, limit, category=_category_id(category), exclude=_product_ids(exclude)))


@register.simple_tag(takes_context=True, name="bought_together")
def bought_together_tag(
    context: template.Context, product: Any, limit: int | None = None, *, category: Any = None,
    exclude: Any = None, title: str | None = None,
) -> str:
    return _render(context, Placement.BOUGHT_TOGETHER, title, lambda shopper: bought_together(
        product, shopper, limit, category=_category_id(category), exclude=_product_ids(exclude)))


@register.simple_tag(takes_context=True, name="recently_viewed")
def recently_viewed_tag(
    context: template.Context, limit: int | None = None, *, exclude: Any = None,
    title: str | None = None,
) -> str:
    return _render(context, Placement.RECENTLY_VIEWED, title, lambda shopper: recently_viewed(
        shopper, limit, exclude=_product_ids(exclude)))


@register.simple_tag(takes_context=True)
def recommended_ads(
    context: template.Context, placement: str, limit: int | None = None, *,
    category: Any = None,
) -> str:
    """Renders ``shop_recs/ads_<placement>.html`` or ``shop_recs/ads.html``; records the
    impressions (frequency caps count them). ``category``: the page's category, for targeting."""
    request = context.get("request")
    if request is None:
        logger.warning("shop_recs: {%% recommended_ads %%} needs the 'request' context "
                       "processor; nothing rendered")
        return ""
    try:
        ads = choose_ads(Shopper.from_request(request), placement, limit,
                         category=_category_id(category))
        if not ads:
            return ""
        html = render_to_string([f"shop_recs/ads_{placement}.html", "shop_recs/ads.html"],
                                {"ads": ads})
    except Exception:  # an ad box must never take the shop's page down
        logger.exception("shop_recs: the ads for %r could not be rendered", placement)
        return ""
    record_ad_impressions(request, ads, channel="web")
    return html


def _render(
    context: template.Context, placement: str, title: str | None,
    build: Callable[[Shopper], RecommendationList],
) -> str:
    request = context.get("request")
    if request is None:
        logger.warning("shop_recs: {%% %s %%} needs the 'request' context processor; nothing "
                       "rendered", placement)
        return ""
    try:
        recs = build(Shopper.from_request(request))
        if not recs:
            return ""
        html = render_to_string(
            [f"shop_recs/{placement}.html", "shop_recs/product_list.html"],
            {"recs": recs, "title": TITLES[placement] if title is None else title},
        )
    except Exception:  # a recommendation box must never take the shop's page down
        logger.exception("shop_recs: the %s list could not be rendered", placement)
        return ""
    record_impression(request, recs, channel="web")
    return html


def _category_id(category: Any) -> str | None:
    if category is None or category == "":
        return None
    return str(category.pk) if isinstance(category, Model) else str(category)


def _product_ids(products: Any) -> list[str]:
    if products is None or products == "":
        return []
    if isinstance(products, Model | str | int) or not isinstance(products, Iterable):
        products = [products]
    adapter = get_adapter()
    ids = []
    for product in products:
        try:
            ids.append(adapter.to_product_id(product))
        except ValueError:
            logger.warning("shop_recs: cannot exclude %r: not a product", product)
    return ids
