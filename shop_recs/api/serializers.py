"""Request and response shapes of the REST API (they also make its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..adapter import get_adapter
from ..conf import recs_settings
from ..models import EventKind
from ..services import RecommendationList, RecommendedItem

MAX_EXCLUDE = 100
ID_CHARS = 64
# What clients may report. Purchases come from the shop's own orders, impressions and clicks
# from the plugin's lists (clicks through the feedback endpoint).
CLIENT_EVENT_KINDS = [EventKind.VIEW, EventKind.ADD_TO_CART, EventKind.SEARCH]


class ListQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False, min_value=1,
        help_text="How many products (default DEFAULT_LIMIT; larger values are capped at "
                  "MAX_LIMIT).",
    )
    category = serializers.CharField(
        required=False, max_length=ID_CHARS, help_text="Only products of this category id.",
    )
    exclude = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_EXCLUDE * (ID_CHARS + 1),
        help_text=f"Comma-separated product ids to leave out (at most {MAX_EXCLUDE}).",
    )

    def validate_limit(self, value: int) -> int:
        return min(value, recs_settings.MAX_LIMIT)

    def validate_exclude(self, value: str) -> list[str]:
        ids = [part.strip() for part in value.split(",") if part.strip()]
        if len(ids) > MAX_EXCLUDE:
            raise serializers.ValidationError(
                f"At most {MAX_EXCLUDE} product ids can be excluded; got {len(ids)}."
            )
        too_long = [pid for pid in ids if len(pid) > ID_CHARS]
        if too_long:
            raise serializers.ValidationError(
                f"{too_long[0][:20]!r}... is longer than a product id ({ID_CHARS} characters)."
            )
        return ids


class ItemSerializer(serializers.Serializer):
    product_id = serializers.CharField()
    title = serializers.SerializerMethodField(help_text="The product's name (its str()).")
    url = serializers.CharField(source="product_url", help_text="The product's own page.")
    reason = serializers.CharField(help_text='Why it is shown, e.g. "Because you viewed …".')
    score = serializers.FloatField()
    position = serializers.IntegerField()
    click_token = serializers.CharField(
        help_text="Send it to the feedback endpoint when the shopper opens the product."
    )
    click_url = serializers.CharField(
        help_text="Or link here: records the click and redirects to the product."
    )

    def get_title(self, item: RecommendedItem) -> str:
        return str(item.product)

    @staticmethod
    def of(item: RecommendedItem) -> dict[str, Any]:
        """The declared fields' values, built directly: binding DRF fields for every item of
        every list cost more than making the list (a test keeps the two identical)."""
        return {
            "product_id": item.product_id, "title": str(item.product), "url": item.product_url,
            "reason": item.reason, "score": float(item.score), "position": item.position,
            "click_token": item.click_token, "click_url": item.click_url,
        }


class ListSerializer(serializers.Serializer):
    placement = serializers.CharField()
    model_version = serializers.CharField(help_text='The model\'s label, "" for a fallback list.')
    source = serializers.CharField(help_text='"model", "popular", "co-purchase+model", ...')
    items = ItemSerializer(many=True)

    @classmethod
    def of(cls, recs: RecommendationList) -> dict[str, Any]:
        """What ``cls(recs).data`` gives, without binding the fields per request."""
        return {"placement": recs.placement, "model_version": recs.model_version,
                "source": recs.source, "items": [ItemSerializer.of(item) for item in recs]}


class EventSerializer(serializers.Serializer):
    """One event reported by a client. It is recorded for the requester (the signed-in user or
    the guest's session), never for anyone named in the body."""

    kind = serializers.ChoiceField(choices=[str(k) for k in CLIENT_EVENT_KINDS])
    product = serializers.CharField(required=False, max_length=ID_CHARS,
                                    help_text="The product id (required but for search).")
    query = serializers.CharField(required=False, max_length=500, allow_blank=True)
    context = serializers.DictField(required=False)
    idempotency_key = serializers.CharField(
        required=False, max_length=128,
        help_text="Send the same key when retrying: the event is stored once.",
    )
    timestamp = serializers.CharField(
        required=False, help_text="ISO 8601 with a time zone; default: when it arrives."
    )
    quantity = serializers.IntegerField(required=False, min_value=1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({
                name: ["Unknown field: events are recorded for the requester, and this field is "
                       "not accepted."] if name in ("user", "session_key") else ["Unknown field."]
                for name in unknown
            })
        if attrs["kind"] != EventKind.SEARCH and not attrs.get("product"):
            raise serializers.ValidationError({"product": [f"A {attrs['kind']} event needs a "
                                                           "product id."]})
        if attrs.get("product"):
            try:
                attrs["product"] = get_adapter().to_product_id(attrs["product"])
            except ValueError as exc:
                raise serializers.ValidationError({"product": [str(exc)]}) from None
        return attrs


class EventBatchSerializer(serializers.Serializer):
    # Items are checked one by one with EventSerializer, so that one bad event is reported
    # in its own result and does not sink the others.
    events = serializers.ListField(
        allow_empty=False,
        help_text="The events, each as described by Event; at most API_MAX_BATCH per request.",
    )

    def validate_events(self, value: list[dict]) -> list[dict]:
        limit = recs_settings.API_MAX_BATCH
        if len(value) > limit:
            raise serializers.ValidationError(
                f"At most {limit} events per request; got {len(value)}. Send them in batches."
            )
        return value


class EventResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["stored", "duplicate", "conflict", "invalid"])
    errors = serializers.DictField(required=False)


class EventBatchResultSerializer(serializers.Serializer):
    stored = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    invalid = serializers.IntegerField()
    results = EventResultSerializer(many=True)


class FeedbackSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=2000, help_text="The item's click_token.")


class FeedbackResultSerializer(serializers.Serializer):
    product_id = serializers.CharField()
    url = serializers.CharField()
    recorded = serializers.BooleanField(
        help_text="False when the link is older than CLICK_TOKEN_MAX_AGE (not counted)."
    )
