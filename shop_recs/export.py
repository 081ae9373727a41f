"""Export the shop's events and catalogue for training, as plain data for recsys_core.

Shoppers are keyed "u<id>" (signed in) or "s<session key>" (guests who never logged in), items by
the host product's primary key as text. The catalogue is every available product plus every
product that appears in an event (a product out of stock still tells us about taste).
``embed_catalogue`` prepares the catalogue's text side ahead of training (and of new products'
pages): the texts it would embed, already in the shared embedding cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from recsys_core.data import EVENT_KINDS, SequenceData, build_dataset

from .adapter import get_adapter
from .conf import recs_settings
from .models import Event

logger = logging.getLogger(__name__)


class TrainingDataError(ValueError):
    """The shop has too little data to train on; the message says what is missing."""


@dataclass
class TrainingSnapshot:
    data: SequenceData
    counts: dict[str, int]


def export_training_data(*, window_days: int | None = None) -> TrainingSnapshot:
    events = Event.objects.filter(kind__in=EVENT_KINDS).exclude(product_id="")
    if window_days:
        events = events.filter(timestamp__gte=timezone.now() - timedelta(days=window_days))
    rows = events.order_by("timestamp", "id").values_list(
        "user_id", "session_key", "product_id", "kind", "timestamp"
    )
    interactions = [
        (f"u{user_id}" if user_id else f"s{session_key}", product_id, kind, ts.timestamp())
        for user_id, session_key, product_id, kind, ts in rows.iterator(chunk_size=5000)
    ]
    adapter = get_adapter()
    available = {str(pk) for pk in adapter.available_products().values_list("pk", flat=True)}
    seen = {item for _, item, _, _ in interactions}
    item_ids = sorted(available | seen, key=_natural_key)
    texts = adapter.texts_for_ids(item_ids)
    users = {user for user, _, _, _ in interactions}
    counts = {"events": len(interactions), "users": len(users), "products": len(item_ids),
              "available_products": len(available)}
    if len(interactions) < recs_settings.MIN_TRAINING_EVENTS or len(users) < max(
        recs_settings.MIN_TRAINING_USERS, 3
    ):
        raise TrainingDataError(
            f"Not enough data to train yet: {counts['events']} events from {counts['users']} "
            f"shoppers; at least {recs_settings.MIN_TRAINING_EVENTS} events from "
            f"{max(recs_settings.MIN_TRAINING_USERS, 3)} shoppers are needed. Let the shop collect "
            "more views and orders (or import past orders with `manage.py recs_import_orders`)."
        )
    data = build_dataset(interactions, item_ids=item_ids, item_texts=texts)
    return TrainingSnapshot(data=data, counts=counts)


def embed_catalogue() -> int:
    """Embed the available products' texts that the shared embedding cache lacks: new products
    and changed texts (``shop_recs.embed_catalogue``, run by celery beat). Training then finds
    them there, and so does a web process serving a new product's page, which would otherwise
    run the text encoder in the request. How many products' texts were embedded."""
    from .registry import text_encoder

    adapter = get_adapter()
    texts = list(adapter.texts_for(adapter.available_products()).values())
    reports: list[int] = []  # texts done so far; encode() reports the cached ones first

    def progress(done: int, total: int) -> None:
        # A new shop's first run embeds the whole catalogue (minutes): log each tenth done.
        if reports and done < total and done * 10 // total > reports[-1] * 10 // total:
            logger.info("shop_recs: embedding product texts, %d of %d done", done, total)
        reports.append(done)

    text_encoder().encode(texts, progress=progress)
    embedded = len(texts) - reports[0] if reports else 0
    logger.info("shop_recs: embedded the texts of %d of %d available products", embedded,
                len(texts))
    return embedded


def _natural_key(pk: str) -> tuple[int, int | str]:
    return (0, int(pk)) if pk.isdigit() else (1, pk)
