"""The admin's view of the feedback loop: recommendation impressions and clicks.

A proxy of the event table (no table of its own): it gives the admin a "Recommendation feedback"
page, with its own view permission, that shows click-through rates per placement and per model
version (see ``shop_recs.admin_feedback``).
"""

from __future__ import annotations

from .events import Event


class RecommendationFeedback(Event):
    class Meta:
        proxy = True
        verbose_name = "recommendation feedback"
        verbose_name_plural = "recommendation feedback"
