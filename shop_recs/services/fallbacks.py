"""Lists that need no model: popular in a category, trending, and text similarity for new products.

They serve a shop before its first model, a shopper with no history, a product the model has
never seen, and the moments when the model is missing or broken: a page always gets a list.
Popularity is a weighted count of recent events (a purchase says more than a view), computed by
one aggregate query and kept in each process, rebuilt in the background every
POPULARITY_REFRESH_SECONDS (``refreshed.py``).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from datetime import timedelta

import numpy as np
from django.db.models import Case, IntegerField, Sum, Value, When
from django.utils import timezone

from ..adapter import get_adapter
from ..conf import recs_settings
from ..models import Event, EventKind
from .catalog import CatalogSnapshot
from .items import Candidate, Reason
from .refreshed import Refreshed

logger = logging.getLogger(__name__)

WEIGHTS = {
    EventKind.VIEW: 1, EventKind.REC_CLICK: 1, EventKind.AD_CLICK: 1,
    EventKind.ADD_TO_CART: 3, EventKind.PURCHASE: 5,
}


def weighted_counts(since: timedelta) -> dict[str, int]:
    """Product id -> weighted number of events in the last ``since`` (one aggregate query)."""
    weight = Case(
        *(When(kind=kind, then=Value(w)) for kind, w in WEIGHTS.items()),
        default=Value(0), output_field=IntegerField(),
    )
    rows = (
        Event.objects.filter(kind__in=list(WEIGHTS), timestamp__gte=timezone.now() - since)
        .exclude(product_id="")
        .order_by()
        .values("product_id")
        .annotate(score=Sum(weight))
        .values_list("product_id", "score")
    )
    return dict(rows)


def _ranked(since: timedelta) -> list[tuple[str, int]]:
    """Product ids best first with their scores (ties by id)."""
    return sorted(weighted_counts(since).items(), key=lambda kv: (-kv[1], kv[0]))


def _refresh_seconds() -> float:
    return recs_settings.POPULARITY_REFRESH_SECONDS


popular_ranking: Refreshed[list[tuple[str, int]]] = Refreshed(
    lambda: _ranked(timedelta(days=recs_settings.POPULAR_DAYS)), _refresh_seconds,
    "popularity ranking",
)
trending_ranking: Refreshed[list[tuple[str, int]]] = Refreshed(
    lambda: _ranked(timedelta(hours=recs_settings.TRENDING_HOURS)), _refresh_seconds,
    "trending ranking",
)


def trending(snapshot: CatalogSnapshot, k: int) -> list[Candidate]:
    """The products with the most events lately, shop-wide."""
    found = []
    for product_id, score in trending_ranking.get():
        if product_id in snapshot.available:
            found.append(Candidate(product_id, float(score), Reason("trending")))
            if len(found) >= k:
                break
    return found


def popular_in(snapshot: CatalogSnapshot, category: str | None, k: int) -> list[Candidate]:
    """The category's (or the shop's) most popular products, then its newest (a shop without
    events yet); each says which category it is popular in."""
    members = snapshot.members.get(category) if category is not None else snapshot.available
    if not members:
        return []
    def reason(code: str, product_id: str) -> Reason:
        own = category if category is not None else snapshot.category_of.get(product_id)
        return Reason(code, category=own or "")

    found = []
    for product_id, score in popular_ranking.get():
        if product_id in members:
            found.append(Candidate(product_id, float(score), reason("popular_in", product_id)))
            if len(found) >= k:
                return found
    shown = {c.product_id for c in found}
    newest = heapq.nsmallest(k - len(found), (p for p in members if p not in shown),
                             key=_newest_first)
    found.extend(Candidate(pid, 0.0, reason("new_in", pid)) for pid in newest)
    return found


def for_categories(
    snapshot: CatalogSnapshot, categories: Iterable[str | None], k: int
) -> list[Candidate]:
    """Popular products of these categories in turn (a shopper's recent ones), then trending."""
    found: list[Candidate] = []
    for category in dict.fromkeys(c for c in categories if c is not None):
        found.extend(popular_in(snapshot, category, k))
        if len(found) >= 3 * k:
            break
    return found + trending(snapshot, k) + popular_in(snapshot, None, k)


def text_similar(
    recommender, product_id: str, k: int, allowed: np.ndarray | None = None
) -> list[Candidate]:
    """Products whose text reads like a product the model was never trained on.

    Uses the model's own text embeddings and the encoder that made them; [] when the model has
    none or the encoder differs (vectors of two encoders are not comparable). ``allowed``: the
    model's item mask of the products that may be shown.
    """
    if not recommender.has_text:
        return []
    from ..registry import text_encoder

    encoder = text_encoder()
    if recommender.text_model_id and encoder.model_id != recommender.text_model_id:
        logger.warning("shop_recs: the text encoder %s differs from the model's %s; no text "
                       "similarity for product %s", encoder.model_id, recommender.text_model_id,
                       product_id)
        return []
    text = get_adapter().texts_for_ids([product_id]).get(product_id, "")
    if not text:
        return []
    vector = encoder.encode([text])[0]
    reason = Reason("similar_to", product_id=product_id)
    return [Candidate(found.item, found.score, reason) for found in recommender.items_like_text(
        vector, k, exclude=[product_id], allowed=allowed)]


def _newest_first(product_id: str) -> tuple[int, int | str]:
    # Primary keys that are numbers grow with time; others keep a stable order.
    return (0, -int(product_id)) if product_id.isdigit() else (1, product_id)
