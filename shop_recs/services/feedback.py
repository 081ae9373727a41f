"""The feedback loop: what was shown (impressions) and what was clicked, as events.

Both carry the placement and the model version, so the admin can show click-through rates per
placement and per model version, and the next training run reads the clicks as behaviour.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError
from django.db.models import Count, IntegerField, Model, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

from ..adapter import get_adapter
from ..conf import recs_settings
from ..events import EventError, record_event, request_shopper, validated_event
from ..models import Event, EventKind
from .impressions import store_impression
from .items import RecommendationList
from .tokens import read_click_token

logger = logging.getLogger(__name__)


class UnsafeProductURL(ValueError):
    """The product's own URL points off this site; the click endpoint will not redirect there."""


def record_impression(request: HttpRequest, recs: RecommendationList, *, channel: str) -> None:
    """Store one rec_impression event for a list as shown (nothing for an empty list), now or
    with the process's next batch of impressions (``services.impressions``).

    A visitor without a session gets none for it: the impression is stored without a shopper.

    Never raises: an impression that cannot be stored is logged, the page is still served.
    """
    if not recs:
        return
    context: dict[str, Any] = {
        "placement": recs.placement, "model_version": recs.model_version, "source": recs.source,
        "impression_id": recs.impression_id, "channel": channel, "n": len(recs),
        "products": recs.product_ids,
    }
    _fit(context)
    try:
        store_impression(validated_event(kind=EventKind.REC_IMPRESSION, context=context,
                                         **request_shopper(request, create_session=False)))
    except (EventError, DatabaseError) as exc:
        logger.warning("shop_recs: impression of %s not recorded: %s", recs.placement, exc)


@dataclass(frozen=True)
class Click:
    product: Model
    url: str
    recorded: bool


def record_click(request: HttpRequest, token: str, *, channel: str) -> Click:
    """Record a click on a recommendation and say where the product lives.

    Raises BadClickToken (a forged or altered token), LookupError (the product is gone) or
    UnsafeProductURL. The same shopper clicking the same item of the same list twice stores one
    click; a token older than CLICK_TOKEN_MAX_AGE still leads to the product but is not counted.
    """
    data, fresh = read_click_token(token, max_age=recs_settings.CLICK_TOKEN_MAX_AGE)
    adapter = get_adapter()
    product = adapter.get_product(data.product_id)
    if product is None:
        raise LookupError(f"Product {data.product_id!r} no longer exists.")
    url = adapter.product_url(product)
    if not url or not url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        raise UnsafeProductURL(
            f"Product {data.product_id!r} has no URL on this site ({url!r}); not redirecting."
        )
    if not fresh:
        return Click(product, url, recorded=False)
    who = request_shopper(request)
    identity = f"{getattr(who['user'], 'pk', '')}|{who['session_key'] or ''}"
    key = hashlib.sha256(
        f"{data.impression_id}|{data.product_id}|{identity}".encode()
    ).hexdigest()[:40]
    try:
        record_event(
            kind=EventKind.REC_CLICK, product=data.product_id, idempotency_key=f"click:{key}",
            context={"placement": data.placement, "model_version": data.model_version,
                     "impression_id": data.impression_id, "position": data.position,
                     "channel": channel},
            **who,
        )
    except (EventError, DatabaseError) as exc:
        logger.warning("shop_recs: click on %s not recorded: %s", data.product_id, exc)
        return Click(product, url, recorded=False)
    return Click(product, url, recorded=True)


def _fit(context: dict[str, Any]) -> None:
    """Drop trailing product ids until the context fits MAX_EVENT_CONTEXT_BYTES."""
    limit = recs_settings.MAX_EVENT_CONTEXT_BYTES
    products = context["products"]
    while products and len(json.dumps(context, separators=(",", ":")).encode()) > limit:
        products.pop()
        context["truncated"] = True


# --- Click-through rates (the admin's feedback page) --------------------------------------------


@dataclass
class ClickThrough:
    """Impressions and clicks of one group of lists (a placement, a model version, or both)."""

    placement: str
    model_version: str
    lists: int = 0  # lists shown
    items: int = 0  # products shown in them
    clicks: int = 0

    @property
    def ctr(self) -> float | None:
        """Clicks per product shown (None when nothing was shown)."""
        return self.clicks / self.items if self.items else None

    @property
    def ctr_percent(self) -> str:
        return "—" if self.ctr is None else f"{100 * self.ctr:.1f}%"


def click_through_rates(since: dt.datetime) -> list[ClickThrough]:
    """Per (placement, model version) since a time, from the impression and click events.

    Two aggregate queries over the (kind, timestamp) index, grouped by JSON keys of the context.
    """
    group = {"placement": KT("context__placement"), "version": KT("context__model_version")}
    rows: dict[tuple[str, str], ClickThrough] = {}

    def row(placement: str | None, version: str | None) -> ClickThrough:
        key = (placement or "", version or "")
        return rows.setdefault(key, ClickThrough(*key))

    shown = (
        Event.objects.filter(kind=EventKind.REC_IMPRESSION, timestamp__gte=since)
        .order_by().values(**group)
        .annotate(lists=Count("id"), items=Sum(Cast(KT("context__n"), IntegerField())))
    )
    for r in shown:
        target = row(r["placement"], r["version"])
        target.lists, target.items = r["lists"], r["items"] or 0
    clicked = (
        Event.objects.filter(kind=EventKind.REC_CLICK, timestamp__gte=since)
        .order_by().values(**group).annotate(clicks=Count("id"))
    )
    for r in clicked:
        row(r["placement"], r["version"]).clicks = r["clicks"]
    return sorted(rows.values(), key=lambda r: (r.placement, r.model_version))


def totals_by(rows: list[ClickThrough], attribute: str) -> list[ClickThrough]:
    """The rows summed per placement (``attribute="placement"``) or per model version."""
    totals: dict[str, ClickThrough] = {}
    for r in rows:
        value = getattr(r, attribute)
        total = totals.setdefault(value, ClickThrough(
            value if attribute == "placement" else "", value if attribute != "placement" else ""
        ))
        total.lists += r.lists
        total.items += r.items
        total.clicks += r.clicks
    return [totals[k] for k in sorted(totals)]
