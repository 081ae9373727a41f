"""The event table: everything a shopper did that the recommender learns from.

Rows are written only through ``shop_recs.events`` (``record_event``, ``bulk_record_events``),
which validates them. The host's product model is swappable, so the product is stored as its
primary key in text form (``product_id``) rather than as a foreign key.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class EventKind(models.TextChoices):
    VIEW = "view", "Product view"
    ADD_TO_CART = "add_to_cart", "Add to cart"
    PURCHASE = "purchase", "Purchase"
    SEARCH = "search", "Search"
    REC_IMPRESSION = "rec_impression", "Recommendation shown"
    REC_CLICK = "rec_click", "Recommendation clicked"
    AD_IMPRESSION = "ad_impression", "Ad shown"
    AD_CLICK = "ad_click", "Ad clicked"


# What shoppers did to products: the sequence the model reads (recsys_core.data.EVENT_KINDS
# without searches). Impressions outnumber these many times over, so serving reads a shopper's
# history through partial indexes on these kinds only.
HISTORY_KINDS: tuple[str, ...] = (
    EventKind.VIEW, EventKind.ADD_TO_CART, EventKind.PURCHASE, EventKind.REC_CLICK,
    EventKind.AD_CLICK,
)
_IN_HISTORY = models.Q(kind__in=[str(kind) for kind in HISTORY_KINDS])
_PURCHASES = models.Q(kind=str(EventKind.PURCHASE))


class Event(models.Model):
    # Who: a signed-in user, or a guest known by the session key (merged into the user at login).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="shop_recs_events",
    )
    session_key = models.CharField(max_length=64, blank=True, default="")
    # The host product's primary key as text ("" for events about no single product).
    product_id = models.CharField(max_length=64, blank=True, default="")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    timestamp = models.DateTimeField(default=timezone.now)
    quantity = models.PositiveIntegerField(default=1)
    # The search text of a search (or of the result list a click came from).
    query = models.CharField(max_length=500, blank=True, default="")
    # Placement, model version, campaign, ...; size-capped by MAX_EVENT_CONTEXT_BYTES.
    context = models.JSONField(default=dict, blank=True)
    # Set by clients that retry: the same key is stored once (NULLs never collide).
    idempotency_key = models.CharField(max_length=128, null=True, blank=True, unique=True)
    # sha256 of the body sent with the key, to refuse the same key with a different body.
    request_hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [
            # A signed-in shopper's history, in time order (serving, training export).
            models.Index(fields=["user", "timestamp"], name="shop_recs_ev_user_time"),
            # A guest's history, in time order; and the guest-to-user merge at login.
            models.Index(fields=["session_key", "timestamp"], name="shop_recs_ev_session_time"),
            # The same, for history kinds only: what every recommendation request reads.
            models.Index(fields=["user", "timestamp"], condition=_IN_HISTORY,
                         name="shop_recs_ev_user_history"),
            models.Index(fields=["session_key", "timestamp"], condition=_IN_HISTORY,
                         name="shop_recs_ev_session_history"),
            # Everything a shopper bought (read with the history: lists leave those out).
            models.Index(fields=["user", "product_id"], condition=_PURCHASES,
                         name="shop_recs_ev_user_bought"),
            models.Index(fields=["session_key", "product_id"], condition=_PURCHASES,
                         name="shop_recs_ev_session_bought"),
            # Everything since a time (training export).
            models.Index(fields=["timestamp"], name="shop_recs_ev_time"),
            # One kind since a time (popularity, CTR per placement).
            models.Index(fields=["kind", "timestamp"], name="shop_recs_ev_kind_time"),
            # One product's events (similar / bought together / popularity in a category).
            models.Index(fields=["product_id", "kind"], name="shop_recs_ev_product_kind"),
        ]

    def __str__(self) -> str:
        who = f"user {self.user_id}" if self.user_id else f"guest {self.session_key[:8]}"
        what = f" product {self.product_id}" if self.product_id else ""
        return f"{self.kind} by {who}{what} at {self.timestamp:%Y-%m-%d %H:%M:%S}"
