"""Products bought together: counted from purchase events, no model needed.

Two products are bought together when one shopper bought both at most
BOUGHT_TOGETHER_WINDOW_HOURS apart (one order, or a second trip for the missing cable). Each
shopper counts once per pair, so a reseller buying a hundred of each cannot dominate. The latest
MAX_ANCHORS purchases of the product are looked at: two indexed queries. The caller caches the
list it makes from them (``recommendations.bought_together``).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django.db.models import Q

from ..conf import recs_settings
from ..models import Event, EventKind

MAX_ANCHORS = 200


def co_purchase_counts(product_id: str) -> list[tuple[str, int]]:
    """Other products with how many shoppers bought them with this one, most first."""
    window = timedelta(hours=recs_settings.BOUGHT_TOGETHER_WINDOW_HOURS)
    anchors = list(
        Event.objects.filter(kind=EventKind.PURCHASE, product_id=product_id)
        .order_by("-timestamp")
        .values_list("user_id", "session_key", "timestamp")[:MAX_ANCHORS]
    )
    if not anchors:
        return []
    bought_at: dict[str, list] = {}  # shopper -> when they bought this product
    for user_id, session_key, timestamp in anchors:
        bought_at.setdefault(_shopper(user_id, session_key), []).append(timestamp)
    users = {u for u, _, _ in anchors if u is not None}
    guests = {s for u, s, _ in anchors if u is None}
    # The anchors' shoppers' purchases around them, in one indexed query; the windows are
    # matched here (a query of one OR branch per anchor cost more than the whole list).
    rows = (
        Event.objects.filter(Q(user_id__in=users) | Q(user__isnull=True, session_key__in=guests),
                             kind=EventKind.PURCHASE,
                             timestamp__gte=min(t for _, _, t in anchors) - window,
                             timestamp__lte=max(t for _, _, t in anchors) + window)
        .exclude(product_id__in=[product_id, ""])
        .order_by()  # matched in Python: the model's default ordering would only sort
        .values_list("user_id", "session_key", "product_id", "timestamp")
    )
    pairs = set()
    for user_id, session_key, other, timestamp in rows:
        shopper = _shopper(user_id, session_key)
        if any(abs(timestamp - anchor) <= window for anchor in bought_at[shopper]):
            pairs.add((shopper, other))
    counts = Counter(p for _, p in pairs)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _shopper(user_id: object, session_key: str) -> str:
    return f"u{user_id}" if user_id is not None else f"s{session_key}"
