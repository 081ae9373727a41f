"""REST views: parse and check the request, call the service layer, shape the answer.

Lists are always the requester's own (the signed-in user, a token's user, or the guest's
session); only staff may read another user's list. Responses that depend on who asks carry
``Cache-Control: private`` and ``Vary: Cookie, Authorization`` so that no shared cache can hand
one shopper's list to another.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import QueryDict
from django.utils.cache import patch_cache_control, patch_vary_headers
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from ..conf import recs_settings
from ..events import bulk_record_events, request_shopper
from ..services import (
    BadClickToken,
    ProductNotFound,
    RecommendationList,
    Shopper,
    UnsafeProductURL,
    bought_together,
    for_you,
    recently_viewed,
    record_click,
    record_impression,
    similar,
)
from ..services.catalog import catalog
from .serializers import (
    EventBatchResultSerializer,
    EventBatchSerializer,
    EventSerializer,
    FeedbackResultSerializer,
    FeedbackSerializer,
    ListQuerySerializer,
    ListSerializer,
)

logger = logging.getLogger(__name__)


class RecsThrottle(ScopedRateThrottle):
    """DRF's scoped throttle with the plugin's default rates, and open when the cache is down."""

    def get_rate(self) -> str | None:
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        if self.scope in rates:
            return rates[self.scope]
        return recs_settings.API_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # the cache backend is unreachable: serve rather than fail
            logger.warning("shop_recs: throttling skipped, cache unavailable: %s", exc)
            return True


class RecsAPIView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [RecsThrottle]
    throttle_scope = "shop_recs"

    def finalize_response(self, request: Request, response: Response, *args: Any,
                          **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        patch_cache_control(response, private=True, max_age=0)
        patch_vary_headers(response, ("Cookie", "Authorization"))
        return response

    def list_query(self, request: Request) -> dict[str, Any]:
        limit, category, exclude = _list_query(request.META.get("QUERY_STRING", ""))
        return {"limit": limit, "category": category, "exclude": list(exclude)}


@lru_cache(maxsize=256)
def _list_query(query_string: str) -> tuple[int | None, str | None, tuple[str, ...]]:
    """The validated list parameters of a query string (ValidationError: a 400). Most requests
    send one of a few query strings, so their validation is kept rather than repeated: it cost
    more than the list's own rules. (The services cap the limit at MAX_LIMIT again.)"""
    query = ListQuerySerializer(data=QueryDict(query_string))
    query.is_valid(raise_exception=True)
    data = query.validated_data
    return data.get("limit"), data.get("category"), tuple(data.get("exclude", ()))


def _listed(request: Request, recs: RecommendationList) -> Response:
    record_impression(request, recs, channel="api")
    return Response(ListSerializer.of(recs))


class ForYouView(RecsAPIView):
    """Recommendations for the requester: the signed-in user, a token's user, or the guest's
    session. Each item has a reason and a click token for the feedback endpoint."""

    @extend_schema(parameters=[ListQuerySerializer], responses=ListSerializer,
                   summary="Recommendations for the requester (signed-in user or guest session)")
    def get(self, request: Request) -> Response:
        query = self.list_query(request)
        return _listed(request, for_you(Shopper.from_request(request), **query))


class RecentlyViewedView(RecsAPIView):
    """The requester's own recently viewed products, newest first (their browsing history)."""

    @extend_schema(parameters=[ListQuerySerializer], responses=ListSerializer,
                   summary="The requester's recently viewed products")
    def get(self, request: Request) -> Response:
        query = self.list_query(request)
        return _listed(request, recently_viewed(Shopper.from_request(request), **query))


class StaffUserView(RecsAPIView):
    """Another user's personal data: staff only (support, checking a model); shoppers get 403.

    A staff member looking is not an impression of the shopper: nothing is recorded.
    """

    permission_classes = [IsAdminUser]

    def shopper(self, user_id: str) -> Shopper:
        user_model = get_user_model()
        try:
            pk = user_model._meta.pk.to_python(user_id)
        except DjangoValidationError:
            raise NotFound(f"There is no user {user_id!r}.") from None
        if not user_model._default_manager.filter(pk=pk).exists():
            raise NotFound(f"There is no user {user_id!r}.")
        return Shopper(user_id=pk)


class UserRecommendationsView(StaffUserView):
    """A given user's recommendations (staff only)."""

    @extend_schema(parameters=[ListQuerySerializer], responses=ListSerializer,
                   summary="A given user's recommendations (staff only)")
    def get(self, request: Request, user_id: str) -> Response:
        query = self.list_query(request)
        return Response(ListSerializer.of(for_you(self.shopper(user_id), **query)))


class UserRecentlyViewedView(StaffUserView):
    """A given user's recently viewed products (staff only)."""

    @extend_schema(parameters=[ListQuerySerializer], responses=ListSerializer,
                   summary="A given user's recently viewed products (staff only)")
    def get(self, request: Request, user_id: str) -> Response:
        query = self.list_query(request)
        return Response(ListSerializer.of(recently_viewed(self.shopper(user_id), **query)))


class SimilarView(RecsAPIView):
    """Products similar to this one (404 if it does not exist)."""

    @extend_schema(parameters=[ListQuerySerializer], responses=ListSerializer,
                   summary="Products similar to a product")
    def get(self, request: Request, product_id: str) -> Response:
        query = self.list_query(request)
        try:
            recs = similar(product_id, Shopper.from_request(request), **query)
        except ProductNotFound as exc:
            raise NotFound(str(exc)) from None
        return _listed(request, recs)


class BoughtTogetherView(RecsAPIView):
    """Products shoppers buy with this one, blended with the model's neighbours."""

    @extend_schema(parameters=[ListQuerySerializer], responses=ListSerializer,
                   summary="Products often bought with a product")
    def get(self, request: Request, product_id: str) -> Response:
        query = self.list_query(request)
        try:
            recs = bought_together(product_id, Shopper.from_request(request), **query)
        except ProductNotFound as exc:
            raise NotFound(str(exc)) from None
        return _listed(request, recs)


class EventsView(RecsAPIView):
    """Record a batch of the requester's events (view, add_to_cart, search). Each event gets its
    own status; resending an idempotency_key stores nothing new."""

    throttle_scope = "shop_recs_events"

    @extend_schema(
        request=inline_serializer("EventBatch", {"events": EventSerializer(many=True)}),
        responses={
            200: EventBatchResultSerializer,
            400: OpenApiResponse(EventBatchResultSerializer, description="No event was valid."),
            409: OpenApiResponse(EventBatchResultSerializer,
                                 description="Every key was already used for another event."),
        },
        summary="Record a batch of the requester's events (idempotent by idempotency_key)",
    )
    def post(self, request: Request) -> Response:
        batch = EventBatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        events = batch.validated_data["events"]
        who = request_shopper(request)
        results: list[dict[str, Any] | None] = [None] * len(events)
        accepted: list[tuple[int, dict[str, Any]]] = []
        # One serializer checks every event (what is_valid() does, without building the
        # serializer's fields again per event: that was a third of a batch's CPU time).
        checker = EventSerializer()
        for index, raw in enumerate(events):
            checker.initial_data = raw  # EventSerializer.validate reads it for unknown fields
            try:
                accepted.append((index, {**checker.run_validation(raw), **who}))
            except ValidationError as exc:
                results[index] = {"index": index, "status": "invalid", "errors": exc.detail}
        # Products in the catalogue snapshot exist: only the others are looked up.
        outcome = bulk_record_events([event for _, event in accepted],
                                     known_products=catalog.get().available)
        for (index, _), item in zip(accepted, outcome.items, strict=True):
            results[index] = {"index": index, "status": item.status}
            if item.error:
                results[index]["errors"] = {"non_field_errors": [item.error]}
        counts = {s: sum(1 for r in results if r and r["status"] == s)
                  for s in ("stored", "duplicate", "conflict", "invalid")}
        body = {"stored": counts["stored"], "duplicates": counts["duplicate"],
                "conflicts": counts["conflict"], "invalid": counts["invalid"],
                "results": results}
        if counts["stored"] or counts["duplicate"]:
            code = status.HTTP_200_OK
        elif counts["conflict"]:
            code = status.HTTP_409_CONFLICT
        else:
            code = status.HTTP_400_BAD_REQUEST
        return Response(body, status=code)


class FeedbackView(RecsAPIView):
    """Record that the requester opened a recommended product (send the item's click_token)."""

    throttle_scope = "shop_recs_events"

    @extend_schema(request=FeedbackSerializer, responses=FeedbackResultSerializer,
                   summary="Record that the requester opened a recommended product")
    def post(self, request: Request) -> Response:
        feedback = FeedbackSerializer(data=request.data)
        feedback.is_valid(raise_exception=True)
        try:
            click = record_click(request, feedback.validated_data["token"], channel="api")
        except BadClickToken as exc:
            raise ValidationError({"token": [str(exc)]}) from None
        except (LookupError, UnsafeProductURL) as exc:
            raise NotFound(str(exc)) from None
        return Response(FeedbackResultSerializer({
            "product_id": str(click.product.pk), "url": click.url, "recorded": click.recorded,
        }).data)

