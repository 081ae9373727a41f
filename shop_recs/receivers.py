"""Signal receivers: purchases from the host's order lines, guest events merged at login.

Connected once from ``ShopRecsConfig.ready()``. Both only ever log a failure: a problem in
the recommender must not break the shop's checkout or login.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.db import DatabaseError, transaction
from django.db.models import Model
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest

from .adapter import get_adapter
from .conf import recs_settings
from .events import EventError, merge_guest_events, purchase_event, record_event
from .middleware import GUEST_KEY_ATTRIBUTE

logger = logging.getLogger(__name__)


# Connected for every sender and filtered here, so that overriding SHOP_RECS (tests, a shop that
# sets ORDER_LINE_MODEL late) needs no reconnecting; the filter is one string comparison.
@receiver(post_save, dispatch_uid="shop_recs.record_purchase")
def record_purchase(
    sender: type[Model], instance: Model, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    """Record a purchase event when a new order line of the configured model is saved.

    Runs inside the shop's transaction, so a rolled-back order leaves no purchase behind.
    The idempotency key is the order line's, so ``recs_import_orders`` will not store it again.
    """
    label = recs_settings.ORDER_LINE_MODEL
    if not created or raw or not label or not recs_settings.RECORD_PURCHASES_ON_SAVE:
        return
    if sender._meta.label_lower != label.lower():
        return
    try:
        with transaction.atomic():
            purchase = get_adapter().purchase_for_line(instance)
            if purchase is None:
                return
            record_event(**purchase_event(purchase))
    except (EventError, DatabaseError) as exc:
        logger.warning(
            "shop_recs: no purchase event for %s %s: %s", sender._meta.label, instance.pk, exc
        )


@receiver(user_logged_in, dispatch_uid="shop_recs.merge_guest_events")
def attach_guest_events(
    sender: Any, request: HttpRequest | None, user: Model, **kwargs: Any
) -> None:
    """Give the events a guest made before signing in to the account they signed in to."""
    session_key = getattr(request, GUEST_KEY_ATTRIBUTE, None) if request is not None else None
    if not session_key:
        return
    try:
        moved = merge_guest_events(session_key=session_key, user=user)
    except DatabaseError:
        logger.exception("shop_recs: could not attach guest events to user %s", user.pk)
        return
    if moved:
        logger.info("shop_recs: attached %d guest events to user %s", moved, user.pk)
