"""Ads over REST, and the ad click redirect (the service layer decides; these only shape it)."""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..conf import recs_settings
from ..services import BadClickToken, Shopper
from ..services.ads import (
    PLACEMENT_PATTERN,
    AdList,
    UnsafeAdTarget,
    recommended_ads,
    record_ad_click,
    record_ad_impressions,
)
from .serializers import ID_CHARS
from .views import RecsAPIView

logger = logging.getLogger(__name__)


class AdsQuerySerializer(serializers.Serializer):
    placement = serializers.RegexField(
        PLACEMENT_PATTERN, max_length=50,
        error_messages={"invalid": "1 to 50 letters, digits, '-' or '_'."},
        help_text='Where the ads are shown, e.g. "search" or "product-sidebar".',
    )
    limit = serializers.IntegerField(required=False, min_value=1,
                                     help_text="How many ads (default ADS_PER_PLACEMENT).")
    category = serializers.CharField(required=False, max_length=ID_CHARS,
                                     help_text="The category id of the page the ads are on.")

    def validate_limit(self, value: int) -> int:
        return min(value, recs_settings.MAX_LIMIT)


class AdSerializer(serializers.Serializer):
    campaign_id = serializers.IntegerField(source="campaign.pk")
    kind = serializers.CharField(source="campaign.kind")
    product_id = serializers.CharField(help_text='The sponsored product ("" for a creative).')
    title = serializers.CharField()
    text = serializers.CharField()
    image_url = serializers.CharField()
    position = serializers.IntegerField()
    click_url = serializers.CharField(help_text="Link here: counts the click and redirects to "
                                                "the ad's target.")


class AdListSerializer(serializers.Serializer):
    placement = serializers.CharField()
    impression_id = serializers.CharField()
    ads = AdSerializer(many=True)

    @classmethod
    def of(cls, ads: AdList) -> dict[str, Any]:
        return cls(ads).data


class AdsView(RecsAPIView):
    """Sponsored products and creatives for the requester on a placement, best first
    (relevance to the requester times bid, within budgets, pacing and frequency caps)."""

    @extend_schema(parameters=[AdsQuerySerializer], responses=AdListSerializer,
                   summary="Ads for the requester on a placement")
    def get(self, request: Request) -> Response:
        query = AdsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        ads = recommended_ads(Shopper.from_request(request), data["placement"],
                              data.get("limit"), category=data.get("category"))
        record_ad_impressions(request, ads, channel="api")
        return Response(AdListSerializer.of(ads))


@never_cache
@require_GET
def ad_click(request: HttpRequest, token: str) -> HttpResponseRedirect:
    """Count (and bill) a click, then redirect to the campaign's own target: never anywhere
    the request names."""
    try:
        result = record_ad_click(request, token, channel="web")
    except BadClickToken as exc:
        raise Http404(str(exc)) from None
    except LookupError as exc:
        raise Http404(str(exc)) from None
    except UnsafeAdTarget as exc:
        logger.error("shop_recs: %s", exc)
        raise Http404("This ad has no valid destination.") from None
    return HttpResponseRedirect(result.url)
