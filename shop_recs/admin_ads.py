"""Admin for ad campaigns: set them up, and see what each earned (CTR and spend).

The figures are sums of the campaign's daily rows (impressions, billed clicks, spend in cents),
computed in the list's own query; today's spend is shown beside the daily budget so that a
campaign that stopped showing because its budget is spent is easy to tell.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.db import models
from django.db.models import Q, QuerySet, Sum
from django.http import HttpRequest

from .models import AdCampaign, AdDailyStats
from .services.ads import local_day


def _money(cents: int | None) -> str:
    return f"{Decimal(cents or 0) / 100:.2f}"


class DailyStatsInline(admin.TabularInline):
    """The campaign's last days, read-only (they are counted, never typed in)."""

    model = AdDailyStats
    fields = ["day", "impressions", "clicks", "unbilled_clicks", "spend"]
    readonly_fields = fields
    ordering = ["-day"]
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "Daily figures"

    @admin.display(description="spend")
    def spend(self, stats: AdDailyStats) -> str:
        return _money(stats.spend_cents)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(AdCampaign)
class AdCampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "active", "bid", "daily_budget", "spent_today",
                    "impressions", "clicks", "ctr", "total_spend", "starts_at", "ends_at"]
    list_filter = ["active", "kind"]
    search_fields = ["name", "title", "product_id", "target_url"]
    inlines = [DailyStatsInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["name", "active", "kind"]}),
        ("What is shown", {"fields": ["product_id", "title", "text", "image_url",
                                      "target_url"]}),
        ("Money", {"fields": ["bid", "daily_budget"],
                   "description": "The bid is paid per click; a day's spend never exceeds "
                                  "the daily budget."}),
        ("When and to whom", {"fields": ["starts_at", "ends_at", "frequency_cap",
                                         "target_categories"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            total_impressions=Sum("daily_stats__impressions"),
            total_clicks=Sum("daily_stats__clicks"),
            total_spend_cents=Sum("daily_stats__spend_cents"),
            today_spend_cents=Sum("daily_stats__spend_cents",
                                  filter=Q(daily_stats__day=local_day())),
        )

    @admin.display(description="spent today")
    def spent_today(self, campaign: AdCampaign) -> str:
        return _money(campaign.today_spend_cents)

    @admin.display(description="impressions", ordering="total_impressions")
    def impressions(self, campaign: AdCampaign) -> int:
        return campaign.total_impressions or 0

    @admin.display(description="clicks", ordering="total_clicks")
    def clicks(self, campaign: AdCampaign) -> int:
        return campaign.total_clicks or 0

    @admin.display(description="CTR")
    def ctr(self, campaign: AdCampaign) -> str:
        shown = campaign.total_impressions or 0
        return f"{100 * (campaign.total_clicks or 0) / shown:.1f}%" if shown else "—"

    @admin.display(description="total spend", ordering="total_spend_cents")
    def total_spend(self, campaign: AdCampaign) -> str:
        return _money(campaign.total_spend_cents)
