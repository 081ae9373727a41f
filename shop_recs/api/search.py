"""REST search and query suggestions (the service layer does the work; this shapes it)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..conf import recs_settings
from ..services import Shopper
from ..services.search import SearchQueryError, clean_query, record_search, search, suggest
from .serializers import ID_CHARS, ListSerializer
from .views import RecsAPIView


def _query(value: str) -> str:
    try:
        return clean_query(value)
    except SearchQueryError as exc:
        raise serializers.ValidationError(str(exc)) from None


class SearchQuerySerializer(serializers.Serializer):
    q = serializers.CharField(
        trim_whitespace=False, allow_blank=True,
        help_text="What the shopper typed (at most SEARCH_MAX_QUERY_CHARS characters).",
    )
    limit = serializers.IntegerField(
        required=False, min_value=1,
        help_text="How many products (default DEFAULT_LIMIT, capped at MAX_LIMIT).",
    )
    category = serializers.CharField(
        required=False, max_length=ID_CHARS, help_text="Only products of this category id.",
    )

    def validate_q(self, value: str) -> str:
        return _query(value)

    def validate_limit(self, value: int) -> int:
        return min(value, recs_settings.MAX_LIMIT)


class SuggestQuerySerializer(serializers.Serializer):
    q = serializers.CharField(trim_whitespace=False, allow_blank=True,
                              help_text="The start of a query.")
    limit = serializers.IntegerField(required=False, min_value=1,
                                     help_text="How many completions (capped at MAX_LIMIT).")

    def validate_q(self, value: str) -> str:
        return _query(value)

    def validate_limit(self, value: int) -> int:
        return min(value, recs_settings.MAX_LIMIT)


class SearchResultSerializer(ListSerializer):
    query = serializers.CharField(help_text="The query as received (spaces collapsed).")
    searched = serializers.CharField(help_text="What was searched, after spelling correction.")
    corrected = serializers.BooleanField(help_text="True when a misspelt word was corrected.")


class SuggestionsSerializer(serializers.Serializer):
    suggestions = serializers.ListField(child=serializers.CharField())


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class SearchView(RecsAPIView):
    """Products for a query, by words and meaning, re-ranked for the requester. Misspelt words
    are corrected (see ``searched``); each item has a click token like every list."""

    @extend_schema(parameters=[SearchQuerySerializer], responses=SearchResultSerializer,
                   summary="Search products (personalised for the requester)")
    def get(self, request: Request) -> Response:
        query = _validated(SearchQuerySerializer, request)
        results = search(Shopper.from_request(request), query["q"], query.get("limit"),
                         category=query.get("category"))
        record_search(request, results, channel="api")
        body: dict[str, Any] = ListSerializer.of(results.results)
        body.update(query=results.query, searched=results.searched, corrected=results.corrected)
        return Response(body)


class SuggestView(RecsAPIView):
    """Completions for a partly typed query: popular past queries, then product titles."""

    @extend_schema(parameters=[SuggestQuerySerializer], responses=SuggestionsSerializer,
                   summary="Query completions")
    def get(self, request: Request) -> Response:
        query = _validated(SuggestQuerySerializer, request)
        return Response({"suggestions": suggest(query["q"], query.get("limit"))})
