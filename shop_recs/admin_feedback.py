"""Admin page "Recommendation feedback": click-through rates per placement and model version.

The numbers come from the impression and click events the lists record, so they compare what
each model version (and each fallback, shown as "no model") earned on each placement. Reading
it needs the proxy model's view permission (``shop_recs.view_recommendationfeedback``).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from .models import RecommendationFeedback
from .services.feedback import click_through_rates, totals_by

PERIODS_DAYS = (1, 7, 30, 90)
DEFAULT_DAYS = 30


@admin.register(RecommendationFeedback)
class RecommendationFeedbackAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            days = int(request.GET.get("days", DEFAULT_DAYS))
        except ValueError:
            days = DEFAULT_DAYS
        if days not in PERIODS_DAYS:
            days = DEFAULT_DAYS
        rows = click_through_rates(since=timezone.now() - timedelta(days=days))
        context = {
            **self.admin_site.each_context(request),
            "title": "Recommendation feedback",
            "opts": self.model._meta,
            "days": days,
            "periods": PERIODS_DAYS,
            "by_placement": totals_by(rows, "placement"),
            "by_version": totals_by(rows, "model_version"),
            "rows": rows,
            **(extra_context or {}),
        }
        return TemplateResponse(
            request, "admin/shop_recs/recommendationfeedback/change_list.html", context
        )
