"""Products bought together: counted from the purchase events in one pass, read per product.

Counting at request time cost two queries per product page, the most for a best-seller (the
other purchases of hundreds of buyers); so the counts are made in the background
(``recsys_core.copurchase``: each shopper once per pair, BOUGHT_TOGETHER_WINDOW_HOURS apart at
most) and a page reads its product's with one indexed query. Purchases since the last count
are not in it yet: a purchase schedules the next count (``jobs.schedule_co_purchase_count``,
CO_PURCHASE_COUNT_DELAY), and training runs, order imports and ``manage.py recs_co_purchases``
count too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import chain, islice

from django.db import IntegrityError, transaction
from django.db.models import Max
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
    """Count every pair from the purchase events and store what changed; returns how many pairs
    are stored (0 when a count that ran at the same time stored its own first).

    Only the pairs whose count changed are written (most of them, the first time; a few at the
    next count), in one transaction: the old counts stay readable until the new ones are
    committed."""
    window = timedelta(hours=recs_settings.BOUGHT_TOGETHER_WINDOW_HOURS)
    counts = count_pairs(_purchases(), window, keep=KEEP)
    fresh = {(product, other): shoppers
             for product, others in counts.items() for other, shoppers in others}
    stored = {(product, other): (pk, shoppers) for pk, product, other, shoppers in
              CoPurchase.objects.values_list("pk", "product_id", "other_id", "shoppers")
              .iterator(chunk_size=10_000)}
    stale = [pk for pair, (pk, shoppers) in stored.items() if fresh.get(pair) != shoppers]
    counted_at = timezone.now()
    changed = (CoPurchase(product_id=product, other_id=other, shoppers=shoppers,
                          counted_at=counted_at)
               for (product, other), shoppers in fresh.items()
               if stored.get((product, other), (None, None))[1] != shoppers)
    written = 0
    try:
        with transaction.atomic():
            for start in range(0, len(stale), _WRITE_BATCH):
                CoPurchase.objects.filter(pk__in=stale[start : start + _WRITE_BATCH]).delete()
            while batch := list(islice(changed, _WRITE_BATCH)):
                CoPurchase.objects.bulk_create(batch)
                written += len(batch)
    except IntegrityError:  # a count that ran at the same time committed first: keep its
        logger.warning("shop_recs: another co-purchase count finished first; its counts are kept")
        return 0
    gone = sum(1 for pair in stored if pair not in fresh)
    logger.info("shop_recs: co-purchases counted for %d products: %d pairs, %d written, %d "
                "removed", len(counts), len(fresh), written, gone)
    return len(fresh)


def last_counted() -> datetime | None:
    """When the stored counts last changed (None: never counted, or nothing bought together)."""
    return CoPurchase.objects.aggregate(latest=Max("counted_at"))["latest"]


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
