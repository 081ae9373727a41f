"""Products bought together: counted from purchase events, no model needed.

Two products are bought together when one shopper bought both at most
BOUGHT_TOGETHER_WINDOW_HOURS apart (one order, or a second trip for the missing cable). Each
shopper counts once per pair, so a reseller buying a hundred of each cannot dominate. The latest
MAX_ANCHORS purchases of the product are looked at: two indexed queries, cached per product.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import timedelta

from django.db.models import Q

from ..conf import recs_settings
from ..models import Event, EventKind
from .cache import cached

MAX_ANCHORS = 200


def co_purchase_counts(product_id: str) -> list[tuple[str, int]]:
    """Other products with how many shoppers bought them with this one, most first."""
    window_hours = recs_settings.BOUGHT_TOGETHER_WINDOW_HOURS
    digest = hashlib.sha1(product_id.encode(), usedforsecurity=False).hexdigest()[:16]
    key = f"shop_recs:copurchase:{digest}:{window_hours}"
    return cached(key, lambda: _count(product_id, timedelta(hours=window_hours)))


def _count(product_id: str, window: timedelta) -> list[tuple[str, int]]:
    anchors = list(
        Event.objects.filter(kind=EventKind.PURCHASE, product_id=product_id)
        .order_by("-timestamp")
        .values_list("user_id", "session_key", "timestamp")[:MAX_ANCHORS]
    )
    if not anchors:
        return []
    around = Q()
    for user_id, session_key, timestamp in anchors:
        who = Q(user_id=user_id) if user_id is not None else Q(
            user__isnull=True, session_key=session_key
        )
        around |= who & Q(timestamp__gte=timestamp - window, timestamp__lte=timestamp + window)
    rows = (
        Event.objects.filter(around, kind=EventKind.PURCHASE)
        .exclude(product_id=product_id)
        .exclude(product_id="")
        .order_by()
        .values_list("user_id", "session_key", "product_id")
        .distinct()
    )
    pairs = {(f"u{u}" if u is not None else f"s{s}", p) for u, s, p in rows}
    counts = Counter(p for _, p in pairs)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
