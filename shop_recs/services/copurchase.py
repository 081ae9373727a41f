"""Products bought together: counted from the purchase events in one pass, read per product.

Counting at request time cost two queries per product page, and for a best-seller (hundreds of
buyers, each with their other purchases) tens of milliseconds; so the counts are made in the
background (``recsys_core.copurchase``: each shopper once per pair, BOUGHT_TOGETHER_WINDOW_HOURS
apart at most) and a page reads its product's with one indexed query. Purchases since the last
count are not in it: counts are made after each training run and each order import, and by
``manage.py recs_co_purchases`` or the ``shop_recs.count_co_purchases`` task (celery beat).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import chain, islice

from django.db import IntegrityError, transaction
from django.utils import timezone

from recsys_core.copurchase import count_co_purchases as count_pairs

from ..conf import recs_settings
from ..models import CoPurchase, Event, EventKind

logger = logging.getLogger(__name__)

KEEP = 50  # products kept per product: more than any list shows
_WRITE_BATCH = 2000


def co_purchase_counts(product_id: str) -> list[tuple[str, int]]:
    """Other products with how many shoppers bought them with this one, most first (as of the
    last count)."""
    return list(
        CoPurchase.objects.filter(product_id=product_id)
        .order_by("-shoppers", "other_id")
        .values_list("other_id", "shoppers")[:KEEP]
    )


def count_co_purchases() -> int:
    """Count every pair from the purchase events and replace the stored counts; returns how
    many (product, other) rows were stored (0 when another count stored its own meanwhile).

    The old counts stay readable until the new ones are committed (one transaction)."""
    window = timedelta(hours=recs_settings.BOUGHT_TOGETHER_WINDOW_HOURS)
    counts = count_pairs(_purchases(), window, keep=KEEP)
    counted_at = timezone.now()
    rows = (CoPurchase(product_id=product, other_id=other, shoppers=shoppers,
                       counted_at=counted_at)
            for product, others in counts.items() for other, shoppers in others)
    stored = 0
    try:
        with transaction.atomic():
            CoPurchase.objects.all().delete()
            while batch := list(islice(rows, _WRITE_BATCH)):
                CoPurchase.objects.bulk_create(batch)
                stored += len(batch)
    except IntegrityError:  # a count that ran at the same time committed first: keep its
        logger.warning("shop_recs: another co-purchase count finished first; its counts are kept")
        return 0
    logger.info("shop_recs: co-purchases counted for %d products (%d pairs kept)", len(counts),
                stored)
    return stored


def last_counted() -> datetime | None:
    """When the stored counts were made (None: never, or no two products bought together)."""
    return CoPurchase.objects.order_by().values_list("counted_at", flat=True).first()


def _purchases() -> Iterator[tuple[str, str, datetime]]:
    """(shopper, product, time): each shopper's purchases together and in time order."""
    purchases = Event.objects.filter(kind=EventKind.PURCHASE).exclude(product_id="").order_by()
    users = (purchases.filter(user__isnull=False).order_by("user_id", "timestamp")
             .values_list("user_id", "product_id", "timestamp").iterator(chunk_size=10_000))
    guests = (purchases.filter(user__isnull=True).exclude(session_key="")
              .order_by("session_key", "timestamp")
              .values_list("session_key", "product_id", "timestamp").iterator(chunk_size=10_000))
    return chain(((f"u{user}", product, time) for user, product, time in users),
                 ((f"s{session}", product, time) for session, product, time in guests))
