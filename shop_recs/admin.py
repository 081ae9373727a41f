"""Admin: the event log (read-only) here; the model registry's admin in admin_training."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from . import (
    admin_ads,  # noqa: F401 - registers AdCampaign (with CTR and spend)
    admin_feedback,  # noqa: F401 - registers the recommendation feedback (CTR) page
    admin_training,  # noqa: F401 - registers TrainingRun and ModelVersion
)
from .models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Events are evidence of what shoppers did: they are looked at, never edited by hand."""

    list_display = ["timestamp", "kind", "user", "short_session", "product_id", "query", "quantity"]
    list_filter = ["kind", "timestamp"]
    search_fields = ["product_id", "query", "session_key", "idempotency_key"]
    list_select_related = ["user"]
    # The table grows large: skip the exact COUNT(*) of the unfiltered table on every page.
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description="guest session", ordering="session_key")
    def short_session(self, event: Event) -> str:
        return f"{event.session_key[:8]}…" if event.session_key else ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False
